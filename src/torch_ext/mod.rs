//! The libtorch features tch 0.24 does not expose, from our C++ extension (`csrc/`, compiled by
//! `build.rs`): autocast for any device with a chosen dtype, the multi-tensor (`_foreach_*`)
//! ops, memory formats and TF32 switches (`csrc/torch_ext.cpp`, here); our fused BatchNorm ->
//! ReLU training op ([`fused`], `csrc/fused.cpp`); and a recorder of dispatched ATen ops
//! ([`recorder`], `csrc/recorder.cpp`).
//! Every function here is safe: the C++ side catches its exceptions and returns them as
//! messages, which become panics naming the operation (like tch's own non-`f_` methods).
pub mod fused;
pub mod recorder;

use std::ffi::{c_char, CStr};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

/// What the C++ side returns: null when the call succeeded, else its error message as a C string
/// (freed with `ext_free_error`).
type CppMessage = *mut c_char;

extern "C" {
    fn ext_free_error(message: CppMessage);
    fn ext_autocast_enter(device_type: i32, dtype: i32, was_enabled: *mut bool, was_dtype: *mut i32) -> CppMessage;
    fn ext_autocast_exit(device_type: i32, was_enabled: bool, was_dtype: i32) -> CppMessage;
    #[cfg(test)]
    fn ext_autocast_is_enabled(device_type: i32, enabled: *mut bool) -> CppMessage;
    fn ext_foreach_add_(selfs: *const *mut C_tensor, others: *const *mut C_tensor, n: usize, alpha: f64) -> CppMessage;
    fn ext_foreach_mul_(selfs: *const *mut C_tensor, n: usize, scalar: f64) -> CppMessage;
    fn ext_foreach_lerp_(selfs: *const *mut C_tensor, ends: *const *mut C_tensor, n: usize, weight: f64) -> CppMessage;
    fn ext_foreach_norm(inputs: *const *mut C_tensor, n: usize, outs: *mut *mut C_tensor) -> CppMessage;
    fn ext_contiguous(input: *mut C_tensor, channels_last: i32, out: *mut *mut C_tensor) -> CppMessage;
    #[cfg(test)]
    fn ext_is_channels_last(input: *mut C_tensor, channels_last: *mut bool) -> CppMessage;
    fn ext_set_tf32(enabled: bool) -> CppMessage;
    #[cfg(test)]
    fn ext_tf32(cudnn: *mut bool, cublas: *mut bool) -> CppMessage;
    fn ext_cuda_versions(runtime: *mut i64, cudnn: *mut i64) -> CppMessage;
}

/// Panics with the C++ message, if there is one.
fn check(error: CppMessage, what: &str) {
    if !error.is_null() {
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { ext_free_error(error) };
        panic!("{what}: {message}");
    }
}

fn handle(t: &Tensor) -> *mut C_tensor {
    t.as_ptr() as *mut C_tensor
}

fn handles(ts: &[Tensor]) -> Vec<*mut C_tensor> {
    ts.iter().map(handle).collect()
}

/// c10::DeviceType of a device.
fn device_type(device: Device) -> i32 {
    match device {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
        other => panic!("autocast is not available on {other:?}"),
    }
}

/// c10::ScalarType of the dtypes autocast is used with here.
fn scalar_type(kind: Kind) -> i32 {
    match kind {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::BFloat16 => 15,
        other => panic!("no autocast to {other:?}"),
    }
}

/// Runs `f` with autocast to `dtype` on `device` (PyTorch's `torch.autocast(device, dtype)`),
/// or plainly when `dtype` is None. Nesting is allowed; the previous state comes back after.
pub fn autocast<T>(device: Device, dtype: Option<Kind>, f: impl FnOnce() -> T) -> T {
    let Some(dtype) = dtype else { return f() };
    let device_type = device_type(device);
    let (mut was_enabled, mut was_dtype) = (false, 0);
    check(unsafe { ext_autocast_enter(device_type, scalar_type(dtype), &mut was_enabled, &mut was_dtype) }, "autocast");
    // Restored on unwinding too, so a panic inside `f` does not leave autocast on.
    struct Restore(i32, bool, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            check(unsafe { ext_autocast_exit(self.0, self.1, self.2) }, "autocast");
        }
    }
    let _restore = Restore(device_type, was_enabled, was_dtype);
    f()
}

/// Whether autocast is on for `device` right now (for the tests).
#[cfg(test)]
pub fn autocast_enabled(device: Device) -> bool {
    let mut enabled = false;
    check(unsafe { ext_autocast_is_enabled(device_type(device), &mut enabled) }, "autocast");
    enabled
}

/// `selfs[i] += alpha * others[i]` for all i, in one multi-tensor op.
pub fn foreach_add_(selfs: &[Tensor], others: &[Tensor], alpha: f64) {
    assert_eq!(selfs.len(), others.len(), "foreach_add_: list lengths differ");
    let (a, b) = (handles(selfs), handles(others));
    check(unsafe { ext_foreach_add_(a.as_ptr(), b.as_ptr(), a.len(), alpha) }, "_foreach_add_");
}

/// `selfs[i] *= scalar` for all i.
pub fn foreach_mul_(selfs: &[Tensor], scalar: f64) {
    let a = handles(selfs);
    check(unsafe { ext_foreach_mul_(a.as_ptr(), a.len(), scalar) }, "_foreach_mul_");
}

/// `selfs[i] += weight * (ends[i] - selfs[i])` for all i.
pub fn foreach_lerp_(selfs: &[Tensor], ends: &[Tensor], weight: f64) {
    assert_eq!(selfs.len(), ends.len(), "foreach_lerp_: list lengths differ");
    let (a, b) = (handles(selfs), handles(ends));
    check(unsafe { ext_foreach_lerp_(a.as_ptr(), b.as_ptr(), a.len(), weight) }, "_foreach_lerp_");
}

/// The 2-norm of each tensor, as 0-dim tensors.
pub fn foreach_norm(tensors: &[Tensor]) -> Vec<Tensor> {
    let a = handles(tensors);
    let mut outs = vec![std::ptr::null_mut(); a.len()];
    check(unsafe { ext_foreach_norm(a.as_ptr(), a.len(), outs.as_mut_ptr()) }, "_foreach_norm");
    outs.into_iter().map(|t| unsafe { Tensor::from_ptr(t) }).collect()
}

/// How a 4-D tensor's values are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryFormat {
    /// NCHW, libtorch's default.
    Contiguous,
    /// NHWC strides under NCHW sizes: what oneDNN's CPU convolutions prefer.
    ChannelsLast,
}

/// `x` in `format` (itself when it already is).
pub fn contiguous(x: &Tensor, format: MemoryFormat) -> Tensor {
    let mut out = std::ptr::null_mut();
    let channels_last = (format == MemoryFormat::ChannelsLast) as i32;
    check(unsafe { ext_contiguous(handle(x), channels_last, &mut out) }, "contiguous");
    unsafe { Tensor::from_ptr(out) }
}

/// Whether `x` is channels-last (for the tests).
#[cfg(test)]
pub fn is_channels_last(x: &Tensor) -> bool {
    let mut channels_last = false;
    check(unsafe { ext_is_channels_last(handle(x), &mut channels_last) }, "is_contiguous");
    channels_last
}

/// TensorFloat-32 for float32 convolutions (cuDNN) and matrix products (cuBLAS): faster on
/// Ampere and newer GPUs, with a 10-bit mantissa in the products. libtorch's own defaults differ
/// (on for cuDNN convolutions, off for cuBLAS), so `Compute` always sets both, to the same value.
pub fn set_tf32(enabled: bool) {
    check(unsafe { ext_set_tf32(enabled) }, "TF32 switch");
}

/// (cuDNN, cuBLAS) TF32 settings (for the tests).
#[cfg(test)]
pub fn tf32() -> (bool, bool) {
    let (mut cudnn, mut cublas) = (false, false);
    check(unsafe { ext_tf32(&mut cudnn, &mut cublas) }, "TF32 switch");
    (cudnn, cublas)
}

/// The CUDA runtime and cuDNN versions libtorch uses (e.g. 13000 and 91002), if it has them.
pub fn cuda_versions() -> (Option<i64>, Option<i64>) {
    let (mut runtime, mut cudnn) = (0, 0);
    let error = unsafe { ext_cuda_versions(&mut runtime, &mut cudnn) };
    if !error.is_null() {
        unsafe { ext_free_error(error) };
        return (None, None);
    }
    let known = |v: i64| (v > 0).then_some(v);
    (known(runtime), known(cudnn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_autocast_runs_convolutions_in_bf16_and_is_restored_after() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let conv = || x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert!(!autocast_enabled(Device::Cpu));
        let (inside, added) = autocast(Device::Cpu, Some(Kind::BFloat16), || {
            assert!(autocast_enabled(Device::Cpu));
            (conv(), &x + &x)
        });
        assert_eq!(inside.kind(), Kind::BFloat16, "conv2d is on autocast's lower-precision list");
        assert_eq!(added.kind(), Kind::Float, "an addition keeps its inputs' dtype");
        assert!(!autocast_enabled(Device::Cpu));
        assert_eq!(conv().kind(), Kind::Float);
        assert_eq!(autocast(Device::Cpu, None, conv).kind(), Kind::Float);
        let difference = (inside.to_kind(Kind::Float) - conv()).abs().max().double_value(&[]);
        assert!(difference < 0.1, "bf16 keeps about 3 significant digits: {difference}");
    }

    #[test]
    fn foreach_ops_match_their_one_tensor_forms() {
        let a = [Tensor::from_slice(&[1.0f32, 2.0]), Tensor::from_slice(&[3.0f32])];
        let b = [Tensor::from_slice(&[10.0f32, 20.0]), Tensor::from_slice(&[30.0f32])];
        foreach_add_(&a, &b, 0.5);
        foreach_mul_(&a, 2.0);
        assert_eq!(Vec::<f32>::try_from(&a[0]).unwrap(), [12.0, 24.0]);
        assert_eq!(Vec::<f32>::try_from(&a[1]).unwrap(), [36.0]);
        foreach_lerp_(&a, &b, 0.25);
        assert_eq!(Vec::<f32>::try_from(&a[0]).unwrap(), [11.5, 23.0]);
        let norms: Vec<f64> = foreach_norm(&b).iter().map(|n| n.double_value(&[])).collect();
        assert!((norms[0] - 500f64.sqrt()).abs() < 1e-4 && (norms[1] - 30.0).abs() < 1e-6, "{norms:?}");
    }

    #[test]
    fn contiguous_switches_memory_format_without_changing_values() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        assert!(!is_channels_last(&x));
        let nhwc = contiguous(&x, MemoryFormat::ChannelsLast);
        assert!(is_channels_last(&nhwc));
        assert_eq!(nhwc.stride(), [60, 1, 15, 3]);
        assert!(nhwc.equal(&x));
        let back = contiguous(&nhwc, MemoryFormat::Contiguous);
        assert_eq!(back.stride(), [60, 20, 5, 1]);
    }

    #[test]
    fn tf32_switches_round_trip() {
        let before = tf32();
        set_tf32(true);
        assert_eq!(tf32(), (true, true));
        set_tf32(false);
        assert_eq!(tf32(), (false, false));
        set_tf32(before.0);
    }
}
