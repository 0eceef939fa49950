//! Checkpoints: one safetensors file holding the weights, BatchNorm statistics, SGD
//! velocities and, in its metadata, the training state as JSON; saving and restoring that
//! state. Written atomically (see [`crate::run_dir::write_atomic`]), so a crash leaves either
//! the old or the new checkpoint, never half of one.
//!
//! Tensor names: `model.<variable>` (e.g. `model.stage1.block1.conv2.weight`, shape
//! `[out, in/groups, kh, kw]`; `model.stem.bn.running_mean`), `velocity.<variable>` for each
//! trainable variable, and `ema.<variable>` for the weight average when the recipe has one
//! (inference then uses those). Metadata keys: `format` and `state`. All tensors are float32 in the
//! standard (NCHW) layout, whatever memory format or device trained them.
use crate::config::Experiment;
use crate::learner::Learner;
use crate::metrics::EpochRow;
use crate::run_dir;
use crate::schedule::LrRule;
use crate::tensorboard::{self, StepScalars};
use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

pub const FORMAT: &str = "resnext-rs/1";
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
const MODEL: &str = "model.";
const VELOCITY: &str = "velocity.";
const EMA: &str = "ema.";

/// Named tensors plus a JSON state, as read from or written to disk.
pub struct Checkpoint {
    pub tensors: HashMap<String, Tensor>,
    pub state: serde_json::Value,
}

/// What the training loop remembers between steps; the state of every `last.safetensors`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress (0-based), or the next one at an epoch boundary.
    pub epoch: usize,
    /// Steps of `epoch` already done (non-zero only after an interruption).
    pub step: usize,
    pub partial: EpochSums,
    pub lr_rule: LrRule,
    pub best_val_accuracy: Option<f64>,
    pub history: Vec<EpochRow>,
    /// When each epoch of `history` was recorded (Unix seconds), for the TensorBoard log.
    #[serde(default)]
    pub wall_times: Vec<f64>,
    /// The per-step scalars logged so far (config `tensorboard_steps`).
    #[serde(default)]
    pub step_scalars: Vec<StepScalars>,
}

impl TrainState {
    /// The state before the first step of `experiment`.
    pub fn new(experiment: &Experiment) -> Self {
        TrainState {
            epoch: 0,
            step: 0,
            partial: EpochSums::default(),
            lr_rule: LrRule::new(experiment.lr_schedule.clone(), experiment.warmup.clone(), experiment.optimizer.lr),
            best_val_accuracy: None,
            history: vec![],
            wall_times: vec![],
            step_scalars: vec![],
        }
    }

    /// The recorded wall time of each epoch of `history`; for a checkpoint written before
    /// they were recorded, times spaced by the epochs' durations and ending now.
    pub fn epoch_wall_times(&self) -> Vec<f64> {
        match self.wall_times.len() == self.history.len() {
            true => self.wall_times.clone(),
            false => tensorboard::wall_times_ending_at(&self.history, tensorboard::now()),
        }
    }
}

/// Running sums over the steps of the epoch in progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochSums {
    pub loss: f64,
    pub ce: f64,
    pub correct: f64,
    pub seen: usize,
    pub seconds: f64,
}

/// Writes the training state: weights, BN statistics, velocities, the weight average and
/// `state`.
pub fn save_training(path: &Path, state: &TrainState, learner: &Learner) -> Result<()> {
    let mut tensors = Checkpoint::tensors_of(&learner.network.vs, MODEL);
    for (name, velocity) in learner.sgd.velocities() {
        tensors.insert(format!("{VELOCITY}{name}"), velocity.shallow_clone());
    }
    if let Some(ema) = &learner.ema {
        tensors.extend(Checkpoint::tensors_of(&ema.network().vs, EMA));
    }
    let had_one = path.exists();
    Checkpoint { tensors, state: serde_json::to_value(state)? }.save(path).map_err(|error| {
        let hint = if had_one { "the previous checkpoint is intact" } else { "no checkpoint was kept" };
        anyhow::anyhow!("{error:#}; {hint}: free space and run again with --resume")
    })
}

/// Loads a `last.safetensors` into the learner and returns its training state.
pub fn restore_training(path: &Path, learner: &mut Learner) -> Result<TrainState> {
    let checkpoint = Checkpoint::load(path)?;
    checkpoint.restore(&learner.network.vs, MODEL, path)?;
    for (name, velocity) in learner.sgd.velocities_mut() {
        let key = format!("{VELOCITY}{name}");
        let saved =
            checkpoint.tensors.get(&key).with_context(|| format!("checkpoint {} has no {key}", path.display()))?;
        ensure!(saved.size() == velocity.size(), "checkpoint {}: {key} has the wrong shape", path.display());
        tch::no_grad(|| velocity.copy_(saved));
    }
    if let Some(ema) = &learner.ema {
        checkpoint.restore(&ema.network().vs, EMA, path)?;
    }
    serde_json::from_value(checkpoint.state)
        .with_context(|| format!("checkpoint {}: training state is malformed", path.display()))
}

/// Writes the weights of the epoch `row` as the run's best: those it was evaluated with (the
/// average, when the recipe has one).
pub fn save_best(path: &Path, learner: &Learner, experiment: &Experiment, row: &EpochRow) -> Result<()> {
    let state =
        serde_json::json!({"epoch": row.epoch, "val_accuracy": row.val_accuracy, "experiment": experiment.name});
    Checkpoint { tensors: Checkpoint::tensors_of(&learner.inference_network().vs, MODEL), state }.save(path)
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
        run_dir::write_bytes(path, "checkpoint", &bytes)
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
}
