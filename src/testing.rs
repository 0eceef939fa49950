//! Helpers for the unit tests: the Keras golden vectors in `tests/golden/keras/`, a tiny
//! experiment, the CPU's compute settings, and how far apart two tensors are.
use serde_json::Value;

/// One Keras reference file, parsed.
pub fn keras_reference(name: &str) -> Value {
    let path = format!("{}/tests/golden/keras/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// A JSON array of numbers.
pub fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
}

/// A JSON array of numbers as f32.
pub fn floats(v: &Value) -> Vec<f32> {
    numbers(v).into_iter().map(|x| x as f32).collect()
}

/// The largest difference between two tensors, relative to the largest value of `want`.
pub fn relative_difference(got: &tch::Tensor, want: &tch::Tensor) -> f64 {
    let (got, want) = (got.to_kind(tch::Kind::Double), want.to_kind(tch::Kind::Double));
    let scale = want.abs().max().double_value(&[]).max(1e-30);
    (got - want).abs().max().double_value(&[]) / scale
}

/// tests/fixtures/tiny.json, with `overrides`.
pub fn tiny_experiment(overrides: &[&str]) -> crate::config::Experiment {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny.json");
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    crate::config::Experiment::load_file(std::path::Path::new(path), &overrides).unwrap()
}

/// fp32 on the CPU with its defaults.
pub fn cpu_compute() -> crate::compute::Compute {
    crate::compute::Compute::new(&crate::compute::ComputeRequest::cpu(), crate::config::Precision::Fp32).unwrap()
}

/// A run's curves as a CSV would give them: `epochs` rows of tiny.json with `lr_schedule`, each
/// a minute long, in an epoch of `steps_per_epoch` steps.
pub fn run_curves(lr_schedule: &str, epochs: usize, steps_per_epoch: usize) -> crate::study::curves::RunCurves {
    let mut experiment = tiny_experiment(&[&format!("lr_schedule={lr_schedule}")]);
    experiment.epochs = epochs;
    let row = |epoch| crate::runs::metrics::EpochRow {
        epoch,
        loss: 1.0,
        accuracy: 0.5,
        val_loss: 1.0,
        val_accuracy: 0.5,
        lr: 0.0,
        ce_loss: 1.0,
        val_ce_loss: 1.0,
        epoch_seconds: 60.0,
        images_per_second: 100.0,
        test_loss: None,
        test_accuracy: None,
    };
    crate::study::curves::RunCurves {
        name: lr_schedule.to_string(),
        rows: (0..epochs).map(row).collect(),
        experiment,
        steps_per_epoch,
    }
}

/// A one-cycle rule and a step rule, as `lr_schedule` JSON.
pub const ONE_CYCLE: &str =
    r#"{"rule": "one_cycle", "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100, "down": "linear"}"#;
pub const STEP: &str = r#"{"rule": "step", "boundaries": [3], "values": [0.05, 0.01]}"#;

/// A fresh Keras BatchNorm's variables: gamma 1, beta 0, moving mean 0 and variance 1.
pub struct UnitBatchNorm([tch::Tensor; 4]);

impl UnitBatchNorm {
    pub fn new(channels: i64) -> Self {
        let ones = || tch::Tensor::ones([channels], (tch::Kind::Float, tch::Device::Cpu));
        let zeros = || tch::Tensor::zeros([channels], (tch::Kind::Float, tch::Device::Cpu));
        UnitBatchNorm([ones(), zeros(), zeros(), ones()])
    }

    pub fn state(&self) -> crate::torch_ext::fused::BatchNormState<'_> {
        let [gamma, beta, running_mean, running_var] = &self.0;
        let instruction_set = crate::torch_ext::fused::InstructionSet::Best;
        crate::torch_ext::fused::BatchNormState {
            gamma,
            beta,
            running_mean,
            running_var,
            momentum: 0.99,
            eps: 1e-3,
            instruction_set,
        }
    }
}
