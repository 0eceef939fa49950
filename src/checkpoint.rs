//! Checkpoints: one safetensors file holding the weights, BatchNorm statistics, SGD
//! velocities and, in its metadata, the training state as JSON. Written to a temporary file
//! and renamed, so a crash leaves either the old or the new checkpoint, never half of one.
//!
//! Tensor names: `model.<variable>` (e.g. `model.stage1.block1.conv2.weight`, shape
//! `[out, in/groups, kh, kw]`; `model.stem.bn.running_mean`), `velocity.<variable>` for each
//! trainable variable. Metadata keys: `format` and `state`.
use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

pub const FORMAT: &str = "resnext-rs/1";
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";

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
        let tmp = path.with_extension("safetensors.tmp");
        safetensors::serialize_to_file(views, &Some(metadata), &tmp)
            .with_context(|| format!("cannot write checkpoint {}", tmp.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot move checkpoint into place at {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let parsed = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("checkpoint {} is corrupt: {e:?}", path.display()))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("checkpoint {} is corrupt: {e:?}", path.display()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        ensure!(
            metadata.get("format").map(String::as_str) == Some(FORMAT),
            "{} is not a resnext-rs checkpoint (metadata format {:?}, expected {FORMAT:?})",
            path.display(),
            metadata.get("format")
        );
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

    /// Copies `model.*` tensors into the VarStore. Every variable must be present with the
    /// same shape, so a checkpoint of another architecture is refused by name.
    pub fn restore_model(&self, vs: &nn::VarStore, origin: &Path) -> Result<()> {
        let variables = vs.variables();
        let mut expected: Vec<&String> = variables.keys().collect();
        expected.sort();
        for name in expected {
            let mut var = variables[name].shallow_clone();
            let Some(saved) = self.tensors.get(&format!("model.{name}")) else {
                bail!(
                    "checkpoint {} has no tensor model.{name}: it was written for another model config",
                    origin.display()
                );
            };
            ensure!(
                saved.size() == var.size(),
                "checkpoint {}: model.{name} has shape {:?}, the model needs {:?} (another model config?)",
                origin.display(),
                saved.size(),
                var.size()
            );
            tch::no_grad(|| var.copy_(saved));
        }
        let extra = self
            .tensors
            .keys()
            .filter(|k| k.starts_with("model.") && !variables.contains_key(&k["model.".len()..]))
            .count();
        ensure!(
            extra == 0,
            "checkpoint {} has {extra} model tensors this model does not have (another model config?)",
            origin.display()
        );
        Ok(())
    }

    /// `model.<name>` for every variable of the VarStore.
    pub fn model_tensors(vs: &nn::VarStore) -> HashMap<String, Tensor> {
        vs.variables().into_iter().map(|(name, t)| (format!("model.{name}"), t.detach())).collect()
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
        let err = format!("{:#}", loaded.restore_model(&vs, &path).unwrap_err());
        assert!(err.contains("model.a.weight") && err.contains("shape"), "{err}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let err = format!("{:#}", Checkpoint::load(&path).err().unwrap());
        assert!(err.contains("corrupt") && err.contains("c.safetensors"), "{err}");
    }
}
