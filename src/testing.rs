//! Helpers for the unit tests: the Keras golden vectors in `../shared/keras_reference/`.
use serde_json::Value;

/// One reference file, parsed.
pub fn keras_reference(name: &str) -> Value {
    let path = format!("{}/../shared/keras_reference/{name}", env!("CARGO_MANIFEST_DIR"));
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
