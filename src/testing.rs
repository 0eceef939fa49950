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
