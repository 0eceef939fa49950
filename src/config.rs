//! Experiment configs: one JSON object per run (the shipped ones are in the studies of
//! `experiments/`, found by name through [`crate::study::lookup`]).
//!
//! Every field of the blog's recipe is spelled out in the file, so a run folder's saved
//! `config.json` says exactly what was trained. Unknown fields are rejected (a typo must not
//! silently fall back to a default), and `--set key=value` edits any existing field.
use crate::data::TRAIN_IMAGES;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name; also the default results folder `results/<name>`.
    pub name: String,
    /// One line on what this run is and what the blog found.
    #[serde(default)]
    pub description: String,
    pub model: ModelConfig,
    pub epochs: usize,
    pub batch_size: usize,
    /// Steps of an epoch, Keras's `steps_per_epoch`. null, the blog's: one pass over the
    /// training images, ceil(images / batch_size). The batches run on across epochs: each pass
    /// over the training images is a fresh shuffle with fresh augmentation draws, and an epoch
    /// ends after this many steps, in the middle of a pass if need be. Every rule keeps its
    /// units: the step schedule and ReduceLROnPlateau count epochs, the per-step rules steps.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    /// Training images held out as the validation data, the last N of the 50,000 before any
    /// shuffling (Keras's `validation_split`): `val_*`, ReduceLROnPlateau and the best
    /// checkpoint follow them, and the test set gets columns of its own that nothing in training
    /// reads. 0, the blog's: the test set is the validation data.
    #[serde(default)]
    pub validation: usize,
    /// With a validation split, the test set is measured after every this many epochs and
    /// after the last one (1: every epoch); the CSV's test columns are empty in between.
    /// Without one, the test set is the validation data, measured every epoch.
    #[serde(default = "every_epoch")]
    pub test_every: usize,
    /// fp32 is Keras's precision (the blog's runs); bf16 trains under autocast.
    #[serde(default)]
    pub precision: Precision,
    pub optimizer: OptimizerConfig,
    pub lr_schedule: LrSchedule,
    /// A linear warmup in front of the lr rule (none in the blog).
    #[serde(default)]
    pub warmup: Option<Warmup>,
    pub augmentation: AugmentConfig,
    /// Label smoothing of the training loss (0 in the blog): the target puts 1 - e on the
    /// true class and e / 10 on every class.
    #[serde(default)]
    pub label_smoothing: f64,
    /// An exponential moving average of the weights and BatchNorm statistics, used for
    /// evaluation, `best.safetensors` and exports (none in the blog).
    #[serde(default)]
    pub ema: Option<EmaConfig>,
    /// Evaluate on each image and its mirror, averaging the logits (off in the blog).
    #[serde(default)]
    pub test_time_flip: bool,
    /// Log the training loss and lr to TensorBoard every this many steps as well as every
    /// epoch (0: epochs only, like Keras's callback with `update_freq='epoch'`).
    #[serde(default)]
    pub tensorboard_steps: usize,
    /// Seeds the weights, the shuffle of each pass over the images and the augmentation draws.
    pub seed: u64,
}

/// Run k of an experiment (`resnext train --repeat k`, run-all's `--seeds`) trains with its
/// config's seed + `SEED_STRIDE` k. A study keeps its configs' seeds distinct and below it
/// ([`crate::study`]), so no two runs of a study share a seed.
pub const SEED_STRIDE: u64 = 1000;

fn every_epoch() -> usize {
    1
}

/// Linear warmup: the lr starts at `start_factor` times the rule's and reaches it after
/// `epochs` epochs (fractions allowed), rising every step (PyTorch's `LinearLR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    pub epochs: f64,
    pub start_factor: f64,
}

/// The weight average: after every step `ema = d ema + (1 - d) w`, with `d = min(decay,
/// (1 + t) / (10 + t))` at step t (TensorFlow's `ExponentialMovingAverage` with
/// `num_updates`), so the first steps do not keep the random initialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    pub decay: f64,
}

/// The precision of the forward and backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// float32 throughout, as Keras trains.
    #[default]
    Fp32,
    /// libtorch autocast to bfloat16 on the run's device (PyTorch's op policy: convolutions and
    /// matrix products in bf16), with float32 master weights, velocities, BatchNorm statistics,
    /// losses and checkpoints.
    Bf16,
}

impl Precision {
    /// The dtype autocast runs the forward pass in, if any.
    pub fn autocast_dtype(self) -> Option<tch::Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(tch::Kind::BFloat16),
        }
    }

    /// Its name, on the command line and in files.
    pub const fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Only "resnext" exists: the blog's network, parametrised like titu1994/Keras-ResNeXt.
    pub name: String,
    /// 29 gives three bottleneck blocks per stage: blocks per stage = (depth - 2) / 9.
    pub depth: usize,
    /// Number of groups in each grouped 3x3 convolution.
    pub cardinality: usize,
    /// Channels per group in the first stage; stage s has cardinality * width * 2^s channels.
    pub width: usize,
    pub num_classes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Only "sgd" exists (Keras SGD with momentum and Nesterov).
    pub name: String,
    /// The lr set on the optimizer; a step schedule overrides it from epoch 0.
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// Keras `l2(...)` factor on conv and dense kernels: loss += l2 * sum(w^2).
    pub l2: f64,
}

/// How the learning rate moves: the blog's two epoch rules (Keras's semantics, lr kept in
/// float32) and two per-step rules (PyTorch's `CosineAnnealingLR` and `OneCycleLR`, in f64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// Keras `LearningRateScheduler`: `values[k]` from epoch `boundaries[k-1]` on (0-based).
    Step { boundaries: Vec<usize>, values: Vec<f64> },
    /// Keras `ReduceLROnPlateau` on the monitored quantity (Keras-style `val_loss`).
    ReduceOnPlateau { monitor: String, factor: f64, patience: usize, cooldown: usize, min_delta: f64, min_lr: f64 },
    /// Every step, from `optimizer.lr` down to `min_lr` along half a cosine, over the steps
    /// after the warmup.
    Cosine { min_lr: f64 },
    /// One cycle over the steps after the warmup: linearly up from `optimizer.lr /
    /// div_factor` to `optimizer.lr` over the first `pct_start` of them, then `down`
    /// (linear or cosine) to `optimizer.lr / (div_factor * final_div_factor)`.
    OneCycle { pct_start: f64, div_factor: f64, final_div_factor: f64, down: Anneal },
}

/// The shape of a one-cycle rule's descent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anneal {
    Linear,
    Cosine,
}

impl LrSchedule {
    /// Rules whose lr changes every step (drawn as curves in the lr figure).
    pub fn per_step(&self) -> bool {
        matches!(self, LrSchedule::Cosine { .. } | LrSchedule::OneCycle { .. })
    }
}

/// Keras `ImageDataGenerator` arguments (fill_mode 'constant', cval 0 are fixed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    pub horizontal_flip: bool,
    /// Fraction of the width: shifts are uniform in +-range * W pixels, not rounded.
    pub width_shift_range: f64,
    pub height_shift_range: f64,
    /// Degrees: rotations are uniform in +-range.
    pub rotation_range: f64,
    /// Cutout (DeVries and Taylor 2017) square side in pixels, 0 for none: after the other
    /// augmentations a square of zeros in the normalised image, its centre uniform over the
    /// pixels, clipped at the border.
    #[serde(default)]
    pub cutout: usize,
}

impl Experiment {
    /// Reads a JSON config file, applies `--set` overrides and checks the values.
    pub fn load_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read experiment config {}", path.display()))?;
        Self::from_json(&text, overrides).with_context(|| format!("in experiment config {}", path.display()))
    }

    /// Parses a config, applies `--set` overrides and checks the values.
    pub fn from_json(text: &str, overrides: &[String]) -> Result<Self> {
        let value: Value = serde_json::from_str(text).context("not valid JSON")?;
        let mut experiment = Self::deserialize_named(value)?;
        if !overrides.is_empty() {
            // Overrides edit the complete config, so fields the file leaves at their default
            // (e.g. `precision`) can be set too.
            let mut value = serde_json::to_value(&experiment)?;
            for item in overrides {
                apply_override(&mut value, item)?;
            }
            experiment = Self::deserialize_named(value)?;
        }
        experiment.validate()?;
        Ok(experiment)
    }

    /// Deserializes, naming the field of any error.
    fn deserialize_named(value: Value) -> Result<Self> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            anyhow::anyhow!("field `{field}`: {}", e.into_inner())
        })
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs > 0, "field `epochs` must be at least 1, got {}", self.epochs);
        ensure!(self.batch_size > 0, "field `batch_size` must be at least 1, got {}", self.batch_size);
        ensure!(
            self.steps_per_epoch != Some(0),
            "field `steps_per_epoch` must be at least 1 (or null: one pass over the training images), got 0"
        );
        ensure!(self.test_every > 0, "field `test_every` must be at least 1 (1: every epoch), got 0");
        ensure!(
            self.validation < TRAIN_IMAGES,
            "field `validation` holds out training images and must be below CIFAR-10's {TRAIN_IMAGES}, got {}",
            self.validation
        );
        let m = &self.model;
        ensure!(m.name == "resnext", "field `model.name`: unknown model {:?} (known: \"resnext\")", m.name);
        ensure!(
            m.depth >= 11 && (m.depth - 2).is_multiple_of(9),
            "field `model.depth` must be 9n+2 with n >= 1 (e.g. 29), got {}",
            m.depth
        );
        ensure!(m.cardinality > 0, "field `model.cardinality` must be at least 1");
        ensure!(m.width > 0, "field `model.width` must be at least 1");
        ensure!(m.num_classes == 10, "field `model.num_classes` must be 10 for CIFAR-10, got {}", m.num_classes);
        let o = &self.optimizer;
        ensure!(o.name == "sgd", "field `optimizer.name`: unknown optimizer {:?} (known: \"sgd\")", o.name);
        ensure!(o.lr > 0.0 && o.lr.is_finite(), "field `optimizer.lr` must be positive, got {}", o.lr);
        ensure!((0.0..1.0).contains(&o.momentum), "field `optimizer.momentum` must be in [0, 1), got {}", o.momentum);
        ensure!(o.l2 >= 0.0 && o.l2.is_finite(), "field `optimizer.l2` must be >= 0, got {}", o.l2);
        match &self.lr_schedule {
            LrSchedule::Step { boundaries, values } => {
                ensure!(
                    values.len() == boundaries.len() + 1,
                    "field `lr_schedule.values` needs one more entry than `boundaries` ({} vs {})",
                    values.len(),
                    boundaries.len()
                );
                ensure!(boundaries.windows(2).all(|w| w[0] < w[1]), "field `lr_schedule.boundaries` must increase");
                ensure!(
                    values.iter().all(|v| *v > 0.0 && v.is_finite()),
                    "field `lr_schedule.values` must be positive"
                );
            }
            LrSchedule::ReduceOnPlateau { monitor, factor, min_lr, min_delta, .. } => {
                ensure!(
                    monitor == "val_loss",
                    "field `lr_schedule.monitor`: only \"val_loss\" is supported, got {monitor:?}"
                );
                ensure!(*factor > 0.0 && *factor < 1.0, "field `lr_schedule.factor` must be in (0, 1), got {factor}");
                ensure!(*min_lr >= 0.0, "field `lr_schedule.min_lr` must be >= 0, got {min_lr}");
                ensure!(*min_delta >= 0.0, "field `lr_schedule.min_delta` must be >= 0, got {min_delta}");
            }
            LrSchedule::Cosine { min_lr } => {
                ensure!(
                    *min_lr >= 0.0 && *min_lr < o.lr,
                    "field `lr_schedule.min_lr` must be in [0, optimizer.lr), got {min_lr}"
                );
            }
            LrSchedule::OneCycle { pct_start, div_factor, final_div_factor, .. } => {
                ensure!(
                    *pct_start > 0.0 && *pct_start < 1.0,
                    "field `lr_schedule.pct_start` must be in (0, 1), got {pct_start}"
                );
                ensure!(*div_factor >= 1.0, "field `lr_schedule.div_factor` must be >= 1, got {div_factor}");
                ensure!(
                    *final_div_factor >= 1.0,
                    "field `lr_schedule.final_div_factor` must be >= 1, got {final_div_factor}"
                );
            }
        }
        if let Some(Warmup { epochs, start_factor }) = &self.warmup {
            ensure!(
                *epochs > 0.0 && *epochs < self.epochs as f64,
                "field `warmup.epochs` must be in (0, epochs = {}), got {epochs}",
                self.epochs
            );
            ensure!(
                (0.0..=1.0).contains(start_factor),
                "field `warmup.start_factor` must be in [0, 1], got {start_factor}"
            );
        }
        ensure!(
            (0.0..1.0).contains(&self.label_smoothing),
            "field `label_smoothing` must be in [0, 1), got {}",
            self.label_smoothing
        );
        if let Some(EmaConfig { decay }) = &self.ema {
            ensure!(*decay > 0.0 && *decay < 1.0, "field `ema.decay` must be in (0, 1), got {decay}");
        }
        let a = &self.augmentation;
        for (field, v) in [("width_shift_range", a.width_shift_range), ("height_shift_range", a.height_shift_range)] {
            ensure!((0.0..1.0).contains(&v), "field `augmentation.{field}` must be in [0, 1), got {v}");
        }
        ensure!(
            (0.0..=180.0).contains(&a.rotation_range),
            "field `augmentation.rotation_range` must be in [0, 180] degrees, got {}",
            a.rotation_range
        );
        ensure!(a.cutout <= 32, "field `augmentation.cutout` is a square side in pixels, at most 32, got {}", a.cutout);
        Ok(())
    }

    /// The seed of run `k` (from 0) of this experiment: the config's seed + [`SEED_STRIDE`] k.
    pub fn repeat_seed(&self, k: u64) -> u64 {
        self.seed + SEED_STRIDE * k
    }

    /// The training images of a run with this config and `--train-limit` `train_limit`:
    /// CIFAR-10's 50,000 less the held-out ones, then the first `train_limit` of those.
    pub fn training_images(&self, train_limit: Option<usize>) -> usize {
        let available = TRAIN_IMAGES - self.validation.min(TRAIN_IMAGES);
        train_limit.unwrap_or(available).min(available)
    }

    /// Steps of every epoch of a run that trains on `images` images: the config's
    /// `steps_per_epoch`, else one pass over them.
    pub fn steps_per_epoch(&self, images: usize) -> usize {
        self.steps_per_epoch.unwrap_or(self.steps_per_pass(images))
    }

    /// Steps of one pass over `images` images, the last batch smaller when they do not divide.
    pub fn steps_per_pass(&self, images: usize) -> usize {
        images.div_ceil(self.batch_size)
    }

    /// Whether the test set, when it is not the validation data, is measured after epoch
    /// `epoch` (0-based): every `test_every` epochs and after the last.
    pub fn tests_after(&self, epoch: usize) -> bool {
        (epoch + 1).is_multiple_of(self.test_every) || epoch + 1 == self.epochs
    }

    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an Experiment always serialises")
    }
}

/// Applies one `key.path=value` override. The key must already exist (so a typo is an
/// error, not a new field); the value is parsed as JSON, else taken as a string.
pub fn apply_override(config: &mut Value, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .with_context(|| format!("--set {item:?}: expected key=value, e.g. lr_schedule.patience=2"))?;
    let mut node = &mut *config;
    for part in key.split('.') {
        let Value::Object(map) = node else {
            bail!("--set {key}: `{part}` is inside a value that is not an object");
        };
        let known: Vec<String> = map.keys().cloned().collect();
        node = map
            .get_mut(part)
            .with_context(|| format!("--set {key}: no field `{part}` here (fields: {})", known.join(", ")))?;
    }
    *node = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny_experiment;

    #[test]
    fn the_test_set_is_measured_every_test_every_epochs_and_after_the_last() {
        let measured = |overrides: &[&str]| -> Vec<usize> {
            let experiment = tiny_experiment(overrides);
            (0..experiment.epochs).filter(|&epoch| experiment.tests_after(epoch)).collect()
        };
        assert_eq!(measured(&["epochs=10", "test_every=4"]), [3, 7, 9]);
        assert_eq!(measured(&["epochs=8", "test_every=4"]), [3, 7]);
        assert_eq!(measured(&["epochs=3"]), [0, 1, 2], "every epoch by default");
    }

    fn shipped(name: &str) -> Experiment {
        let text =
            std::fs::read_to_string(format!("{}/experiments/blog/{name}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        Experiment::from_json(&text, &[]).unwrap()
    }

    #[test]
    fn every_blog_experiment_parses_with_the_spec_values() {
        for name in ["my_resnext", "resnext", "my_resnext_lr", "my_resnext_lr_v2", "my_resnext_lr_r"] {
            let e = shipped(name);
            assert_eq!(e.name, name);
            assert_eq!((e.epochs, e.batch_size), (300, 64));
            assert_eq!((e.model.depth, e.model.cardinality, e.model.width), (29, 8, 16));
            assert_eq!((e.optimizer.momentum, e.optimizer.nesterov, e.optimizer.l2), (0.9, true, 5e-4));
            assert!(e.augmentation.horizontal_flip);
            assert_eq!((e.augmentation.width_shift_range, e.augmentation.height_shift_range), (0.125, 0.125));
            let rotation = if name == "my_resnext_lr_r" { 15.0 } else { 0.0 };
            assert_eq!(e.augmentation.rotation_range, rotation);
        }
        let step = LrSchedule::Step { boundaries: vec![100, 200], values: vec![0.01, 0.001, 0.0001] };
        assert_eq!(shipped("my_resnext").lr_schedule, step);
        assert_eq!(shipped("resnext").lr_schedule, step);
        assert_eq!(shipped("my_resnext_lr").optimizer.lr, 0.1);
        let LrSchedule::ReduceOnPlateau { patience, min_delta, .. } = shipped("my_resnext_lr").lr_schedule else {
            panic!("my_resnext_lr must use ReduceLROnPlateau")
        };
        assert_eq!((patience, min_delta), (10, 1e-4));
        for name in ["my_resnext_lr_v2", "my_resnext_lr_r"] {
            assert_eq!(shipped(name).optimizer.lr, 0.01);
            let LrSchedule::ReduceOnPlateau { factor, patience, cooldown, min_delta, min_lr, .. } =
                shipped(name).lr_schedule
            else {
                panic!("{name} must use ReduceLROnPlateau")
            };
            assert_eq!((factor, patience, cooldown, min_delta, min_lr), (0.1f64.sqrt(), 5, 0, 0.001, 1e-6));
        }
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let text =
            std::fs::read_to_string(format!("{}/experiments/demo/demo.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let bad = text.replacen("\"epochs\"", "\"epoch_count\": 3, \"epochs\"", 1);
        let err = format!("{:#}", Experiment::from_json(&bad, &[]).unwrap_err());
        assert!(err.contains("epoch_count"), "{err}");
        let plateau =
            std::fs::read_to_string(format!("{}/experiments/blog/my_resnext_lr.json", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let bad_rule = plateau.replacen("\"patience\"", "\"patienc\": 1, \"patience\"", 1);
        assert_ne!(bad_rule, plateau);
        let err = format!("{:#}", Experiment::from_json(&bad_rule, &[]).unwrap_err());
        assert!(err.contains("lr_schedule") && err.contains("patienc"), "{err}");
    }

    #[test]
    fn overrides_edit_existing_fields_and_reject_new_ones() {
        let text =
            std::fs::read_to_string(format!("{}/experiments/blog/my_resnext_lr_v2.json", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let e = Experiment::from_json(&text, &["lr_schedule.patience=2".into(), "epochs=7".into()]).unwrap();
        assert_eq!(e.epochs, 7);
        assert!(matches!(e.lr_schedule, LrSchedule::ReduceOnPlateau { patience: 2, .. }));
        let err = format!("{:#}", Experiment::from_json(&text, &["lr_schedule.patiense=2".into()]).unwrap_err());
        assert!(err.contains("patiense") && err.contains("patience"), "{err}");
        let err = format!("{:#}", Experiment::from_json(&text, &["epochs=many".into()]).unwrap_err());
        assert!(err.contains("epochs") || err.contains("invalid type"), "{err}");
        let err = format!("{:#}", Experiment::from_json(&text, &["epochs=0".into()]).unwrap_err());
        assert!(err.contains("epochs"), "{err}");
        let err = format!("{:#}", Experiment::from_json(&text, &["lr_schedule.rule=exponential".into()]).unwrap_err());
        assert!(err.contains("exponential") && err.contains("one_cycle"), "{err}");
        // Switching the rule names the fields the new one lacks or does not know.
        let err = format!("{:#}", Experiment::from_json(&text, &["lr_schedule.rule=cosine".into()]).unwrap_err());
        assert!(err.contains("lr_schedule") && err.contains("min_lr"), "{err}");
        // Fields a file leaves at their default can be set too.
        let e = Experiment::from_json(&text, &["label_smoothing=0.1".into(), "augmentation.cutout=8".into()]).unwrap();
        assert_eq!((e.label_smoothing, e.augmentation.cutout), (0.1, 8));
        let err = format!("{:#}", Experiment::from_json(&text, &["model.name=vgg".into()]).unwrap_err());
        assert!(err.contains("vgg"), "{err}");
        // Values the code could not honour are refused by name rather than ignored.
        for (set, needle) in [
            ("lr_schedule.monitor=val_accuracy", "lr_schedule.monitor"),
            ("optimizer.name=adam", "optimizer.name"),
            ("model.num_classes=100", "model.num_classes"),
            ("optimizer.momentum=1.5", "optimizer.momentum"),
        ] {
            let err = format!("{:#}", Experiment::from_json(&text, &[set.into()]).unwrap_err());
            assert!(err.contains(needle), "{set}: {err}");
        }
    }
}
