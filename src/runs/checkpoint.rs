//! Checkpoints: one safetensors file of named float32 tensors plus, in its metadata, a JSON
//! state. Written atomically (see [`crate::atomic_file`]), so a crash leaves either the old or
//! the new checkpoint, never half of one. What the tensors and the state are is up to the
//! writer ([`crate::train::record`] for the training state, the best weights for inference).
//!
//! Tensor names: `model.<variable>` (e.g. `model.stage1.block1.conv2.weight`, shape
//! `[out, in/groups, kh, kw]`; `model.stem.bn.running_mean`), `velocity.<variable>` for each
//! trainable variable, and `ema.<variable>` for the weight average when the recipe has one
//! (inference then uses those). Metadata keys: `format` ([`FORMAT`]) and `state`. All tensors
//! are float32 in the standard (NCHW) layout, whatever memory format or device trained them.
use crate::atomic_file;
use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// The format this build writes and reads. `resnext-rs/1` checkpoints came from older builds
/// whose training state lacked fields this one needs: they are refused by name, not guessed.
pub const FORMAT: &str = "resnext-rs/2";
/// The network's variables.
pub const MODEL: &str = "model.";
/// The SGD velocity of each trainable variable.
pub const VELOCITY: &str = "velocity.";
/// The weight average's variables.
pub const EMA: &str = "ema.";

/// Named tensors plus a JSON state, as read from or written to disk.
pub struct Checkpoint {
    pub tensors: HashMap<String, Tensor>,
    pub state: serde_json::Value,
}

/// A tensor as safetensors stores it: dtype, shape, little-endian bytes.
type RawTensor = (Dtype, Vec<usize>, Vec<u8>);

fn to_bytes(tensor: &Tensor) -> Result<RawTensor> {
    let tensor = tensor.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let numel = tensor.numel();
    let mut bytes = vec![0u8; numel * 4];
    tensor.f_copy_data_u8(&mut bytes, numel)?;
    Ok((Dtype::F32, tensor.size().iter().map(|&d| d as usize).collect(), bytes))
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let owned: Vec<(String, RawTensor)> =
            names.into_iter().map(|name| Ok((name.clone(), to_bytes(&self.tensors[name])?))).collect::<Result<_>>()?;
        let views: Vec<(String, TensorView)> = owned
            .iter()
            .map(|(name, (dtype, shape, bytes))| Ok((name.clone(), TensorView::new(*dtype, shape.clone(), bytes)?)))
            .collect::<Result<_>>()?;
        let metadata =
            HashMap::from([("format".to_string(), FORMAT.to_string()), ("state".to_string(), self.state.to_string())]);
        let bytes = safetensors::serialize(views, &Some(metadata))?;
        atomic_file::write_bytes(path, "checkpoint", &bytes)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let parsed = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("checkpoint {} is corrupt: {e:?}", path.display()))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("checkpoint {} is corrupt: {e:?}", path.display()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        match metadata.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            Some(older) if older.starts_with("resnext-rs/") => bail!(
                "checkpoint {} has format {older:?}, written by an older resnext; this one reads {FORMAT:?} only: \
                 train the run again (or use the resnext that wrote it)",
                path.display()
            ),
            other => bail!(
                "{} is not a resnext-rs checkpoint (metadata format {other:?}, expected {FORMAT:?})",
                path.display()
            ),
        }
        let state = serde_json::from_str(metadata.get("state").map(String::as_str).unwrap_or("null"))
            .with_context(|| format!("checkpoint {}: its training state is not valid JSON", path.display()))?;
        let mut tensors = HashMap::new();
        for (name, view) in parsed.tensors() {
            ensure!(
                view.dtype() == Dtype::F32,
                "checkpoint {}: tensor {name} is {:?}, expected F32",
                path.display(),
                view.dtype()
            );
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            tensors.insert(name, Tensor::f_from_data_size(view.data(), &shape, Kind::Float)?);
        }
        Ok(Checkpoint { tensors, state })
    }

    /// Loads the weights inference should use: the average (`ema.*`) when the checkpoint has
    /// one, else `model.*`.
    pub fn restore_inference(&self, vs: &nn::VarStore, origin: &Path) -> Result<()> {
        let averaged = self.tensors.keys().any(|k| k.starts_with(EMA));
        self.restore(vs, if averaged { EMA } else { MODEL }, origin)
    }

    /// Copies the `<prefix><variable>` tensors into the VarStore. Every variable must be
    /// present with the same shape, so a checkpoint of another architecture is refused by name.
    pub fn restore(&self, vs: &nn::VarStore, prefix: &str, origin: &Path) -> Result<()> {
        let variables = vs.variables();
        let mut expected: Vec<&String> = variables.keys().collect();
        expected.sort();
        for name in expected {
            let mut var = variables[name].shallow_clone();
            let Some(saved) = self.tensors.get(&format!("{prefix}{name}")) else {
                bail!(
                    "checkpoint {} has no tensor {prefix}{name}: it was written for another model config",
                    origin.display()
                );
            };
            ensure!(
                saved.size() == var.size(),
                "checkpoint {}: {prefix}{name} has shape {:?}, the model needs {:?} (another model config?)",
                origin.display(),
                saved.size(),
                var.size()
            );
            tch::no_grad(|| var.copy_(saved));
        }
        let extra = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix) && !variables.contains_key(&k[prefix.len()..]))
            .count();
        ensure!(
            extra == 0,
            "checkpoint {} has {extra} model tensors this model does not have (another model config?)",
            origin.display()
        );
        Ok(())
    }

    /// `<prefix><name>` for every variable of the VarStore.
    pub fn tensors_of(vs: &nn::VarStore, prefix: &str) -> HashMap<String, Tensor> {
        vs.variables().into_iter().map(|(name, t)| (format!("{prefix}{name}"), t.detach())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn round_trips_tensors_and_state_and_refuses_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let tensors =
            HashMap::from([("model.a.weight".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([3, 1]))]);
        let checkpoint = Checkpoint { tensors, state: serde_json::json!({"epoch": 3}) };
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded.state["epoch"], 3);
        assert_eq!(Vec::<f32>::try_from(loaded.tensors["model.a.weight"].flatten(0, -1)).unwrap(), vec![1.0, 2.0, 3.0]);

        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().sub("a").var("weight", &[2, 1], nn::Init::Const(0.0));
        let err = format!("{:#}", loaded.restore(&vs, MODEL, &path).unwrap_err());
        assert!(err.contains("model.a.weight") && err.contains("shape"), "{err}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let err = format!("{:#}", Checkpoint::load(&path).err().unwrap());
        assert!(err.contains("corrupt") && err.contains("c.safetensors"), "{err}");
    }

    #[test]
    fn a_checkpoint_of_an_older_format_is_refused_naming_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let tensors = HashMap::from([("model.a".to_string(), Tensor::from_slice(&[1.0f32]))]);
        Checkpoint { tensors, state: serde_json::json!({}) }.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(FORMAT.len()).position(|w| w == FORMAT.as_bytes()).expect("the format is in the header");
        for (format, needles) in [
            ("resnext-rs/1", ["format \"resnext-rs/1\"", "older resnext", "reads \"resnext-rs/2\" only"]),
            ("someone/2!!1", ["is not a resnext-rs checkpoint", "\"someone/2!!1\"", "expected \"resnext-rs/2\""]),
        ] {
            let mut older = bytes.clone();
            older[at..at + FORMAT.len()].copy_from_slice(format.as_bytes());
            std::fs::write(&path, &older).unwrap();
            let err = format!("{:#}", Checkpoint::load(&path).err().unwrap());
            assert!(err.contains("last.safetensors"), "{err}");
            for needle in needles {
                assert!(err.contains(needle), "{needle:?} in {err}");
            }
        }
    }
}
