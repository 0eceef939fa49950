//! The libtorch features tch 0.24 does not expose, from our C++ extension (`csrc/ext.cpp`,
//! compiled by `build.rs`): autocast for any device with a chosen dtype, the multi-tensor
//! (`_foreach_*`) ops, memory formats, TF32 switches, a recorder of dispatched ATen ops, and
//! our fused BatchNorm -> ReLU training op.
//! Every function here is safe: the C++ side catches its exceptions and returns them as
//! messages, which become panics naming the operation (like tch's own non-`f_` methods).
use std::ffi::{c_char, CStr};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

type Error = *mut c_char;

extern "C" {
    fn ext_free_error(message: Error);
    fn ext_autocast_enter(device_type: i32, dtype: i32, was_enabled: *mut bool, was_dtype: *mut i32) -> Error;
    fn ext_autocast_exit(device_type: i32, was_enabled: bool, was_dtype: i32) -> Error;
    fn ext_autocast_is_enabled(device_type: i32, enabled: *mut bool) -> Error;
    fn ext_foreach_add_(selfs: *const *mut C_tensor, others: *const *mut C_tensor, n: usize, alpha: f64) -> Error;
    fn ext_foreach_mul_(selfs: *const *mut C_tensor, n: usize, scalar: f64) -> Error;
    fn ext_foreach_lerp_(selfs: *const *mut C_tensor, ends: *const *mut C_tensor, n: usize, weight: f64) -> Error;
    fn ext_foreach_norm(inputs: *const *mut C_tensor, n: usize, outs: *mut *mut C_tensor) -> Error;
    fn ext_contiguous(input: *mut C_tensor, channels_last: i32, out: *mut *mut C_tensor) -> Error;
    fn ext_is_channels_last(input: *mut C_tensor, channels_last: *mut bool) -> Error;
    fn ext_set_tf32(enabled: bool) -> Error;
    fn ext_tf32(cudnn: *mut bool, cublas: *mut bool) -> Error;
    fn ext_cudnn_benchmark(enabled: *mut bool) -> Error;
    fn ext_cuda_versions(runtime: *mut i64, cudnn: *mut i64) -> Error;
    fn ext_batch_norm_relu(
        input: *mut C_tensor,
        gamma: *mut C_tensor,
        beta: *mut C_tensor,
        skip: *mut C_tensor,
        running_mean: *mut C_tensor,
        running_var: *mut C_tensor,
        momentum: f64,
        eps: f64,
        instruction_set: i64,
        out: *mut *mut C_tensor,
    ) -> Error;
    fn ext_op_recorder_start() -> Error;
    fn ext_op_recorder_stop(table: *mut *mut c_char) -> Error;
}

/// Panics with the C++ message, if there is one.
fn check(error: Error, what: &str) {
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

/// Whether autocast is on for `device` right now.
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

/// (cuDNN, cuBLAS) TF32 settings.
pub fn tf32() -> (bool, bool) {
    let (mut cudnn, mut cublas) = (false, false);
    check(unsafe { ext_tf32(&mut cudnn, &mut cublas) }, "TF32 switch");
    (cudnn, cublas)
}

/// Whether cuDNN benchmark mode is on (set with `tch::Cuda::cudnn_set_benchmark`).
pub fn cudnn_benchmark() -> bool {
    let mut enabled = false;
    check(unsafe { ext_cudnn_benchmark(&mut enabled) }, "cuDNN benchmark flag");
    enabled
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

/// The statistics and parameters of a BatchNorm in training, for [`batch_norm_relu`].
pub struct BatchNormState<'a> {
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    /// Updated in place: `moving = moving * momentum + batch * (1 - momentum)`.
    pub running_mean: &'a Tensor,
    /// The same, with the batch's unbiased variance.
    pub running_var: &'a Tensor,
    /// Keras's momentum (0.99 is torch's 0.01).
    pub momentum: f64,
    pub eps: f64,
    /// Which copy of the op's loops runs.
    pub instruction_set: InstructionSet,
}

/// The copies of the fused op's loops, one per instruction set (`csrc/bn_relu_kernels.cpp`).
/// Training uses the best the CPU has; the tests run each one the CPU can, so that a CPU without
/// AVX-512 runs tested loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstructionSet {
    Best = 0,
    Avx512 = 1,
    Avx2 = 2,
    Baseline = 3,
}

/// `relu(batch_norm(x) + skip)` (without `+ skip` when it is None) in training, in one op with
/// its own backward: BatchNorm with the batch's statistics (biased variance), the moving
/// statistics updated, and gradients for `x`, gamma, beta and `skip`. CPU only, float32 or
/// bfloat16 activations (statistics and parameters in float32); fastest on channels-last `x`.
/// See `csrc/ext.cpp` for what it fuses and why.
pub fn batch_norm_relu(x: &Tensor, skip: Option<&Tensor>, bn: &BatchNormState) -> Tensor {
    let mut out = std::ptr::null_mut();
    let skip = skip.map_or(std::ptr::null_mut(), handle);
    let error = unsafe {
        ext_batch_norm_relu(
            handle(x),
            handle(bn.gamma),
            handle(bn.beta),
            skip,
            handle(bn.running_mean),
            handle(bn.running_var),
            bn.momentum,
            bn.eps,
            bn.instruction_set as i64,
            &mut out,
        )
    };
    check(error, "fused BatchNorm-ReLU");
    unsafe { Tensor::from_ptr(out) }
}

/// One operator's share of the work [`record_ops`] watched.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRecord {
    /// ATen's name (`aten::convolution_backward`), or ours (`resnext::batch_norm_relu`).
    pub name: String,
    pub calls: u64,
    /// Calls not made from inside another operator.
    pub outermost: u64,
    /// Its own time: its calls' time less that of the operators they called (torch.profiler's
    /// "self CPU").
    pub self_time: Duration,
}

/// Records the operators `f` dispatches, on this thread and on the threads the autograd engine
/// runs its backward on (other threads' work is not recorded), sorted by self time, longest
/// first. Recordings run one at a time.
pub fn record_ops<T>(f: impl FnOnce() -> T) -> (T, Vec<OpRecord>) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    check(unsafe { ext_op_recorder_start() }, "op recorder");
    let result = f();
    let mut table = std::ptr::null_mut();
    check(unsafe { ext_op_recorder_stop(&mut table) }, "op recorder");
    let text = unsafe { CStr::from_ptr(table) }.to_string_lossy().into_owned();
    unsafe { ext_free_error(table) };
    let mut records: Vec<OpRecord> = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let number = |i: usize| fields[i].parse::<u64>().expect("the recorder writes whole numbers");
            OpRecord {
                name: fields[0].to_string(),
                calls: number(1),
                outermost: number(2),
                self_time: Duration::from_nanos(number(3)),
            }
        })
        .collect();
    records.sort_by(|a, b| b.self_time.cmp(&a.self_time).then_with(|| a.name.cmp(&b.name)));
    (result, records)
}

/// The number of operator calls `f` makes that no other operator made (an op's nested calls,
/// such as `conv2d` -> `convolution` -> `mkldnn_convolution`, count once).
pub fn count_ops<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let (result, records) = record_ops(f);
    (result, records.iter().map(|r| r.outermost).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::relative_difference;

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

    /// What the fused op replaces: libtorch's BatchNorm in training, the addition, ReLU.
    fn unfused(x: &Tensor, skip: Option<&Tensor>, bn: &BatchNormState) -> Tensor {
        let (gamma, beta) = (Some(bn.gamma), Some(bn.beta));
        let (mean, var) = (Some(bn.running_mean), Some(bn.running_var));
        let y = x.batch_norm(gamma, beta, mean, var, true, 1.0 - bn.momentum, bn.eps, false);
        match skip {
            Some(skip) => y + skip,
            None => y,
        }
        .relu()
    }

    /// One BatchNorm's inputs, run through `op`: the output, the moving statistics after, and
    /// the gradients of input, gamma, beta and skip (when there is one) for an upstream
    /// gradient `dy`.
    fn run(
        op: impl Fn(&Tensor, Option<&Tensor>, &BatchNormState) -> Tensor,
        x: &Tensor,
        skip: Option<&Tensor>,
        dy: &Tensor,
        instruction_set: InstructionSet,
    ) -> Vec<(&'static str, Tensor)> {
        let channels = x.size()[1];
        let leaf = |t: &Tensor| t.detach().copy().set_requires_grad(true);
        let (x, skip) = (leaf(x), skip.map(leaf));
        let gamma = (Tensor::arange(channels, (Kind::Float, Device::Cpu)) * 0.1 + 0.5).set_requires_grad(true);
        let beta = (Tensor::arange(channels, (Kind::Float, Device::Cpu)) * -0.05 + 0.2).set_requires_grad(true);
        let running_mean = Tensor::full([channels], 0.3, (Kind::Float, Device::Cpu));
        let running_var = Tensor::full([channels], 2.0, (Kind::Float, Device::Cpu));
        let bn = BatchNormState {
            gamma: &gamma,
            beta: &beta,
            running_mean: &running_mean,
            running_var: &running_var,
            momentum: 0.99,
            eps: 1e-3,
            instruction_set,
        };
        let y = op(&x, skip.as_ref(), &bn);
        let loss = (y.to_kind(Kind::Float) * dy).sum(Kind::Float);
        let mut inputs = vec![&x, &gamma, &beta];
        inputs.extend(skip.as_ref());
        let grads = Tensor::run_backward(&[&loss], &inputs, false, false);
        let mut out = vec![("output", y.detach()), ("moving mean", running_mean), ("moving variance", running_var)];
        out.extend(["d input", "d gamma", "d beta", "d skip"].into_iter().zip(grads));
        out
    }

    /// Every copy of the fused op's loops this CPU can run.
    fn instruction_sets() -> Vec<InstructionSet> {
        let mut sets = vec![InstructionSet::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                sets.push(InstructionSet::Avx2);
            }
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
                sets.push(InstructionSet::Avx512);
            }
        }
        sets
    }

    #[test]
    fn fused_batch_norm_relu_matches_libtorch_forward_statistics_and_every_gradient() {
        tch::manual_seed(5);
        // Odd channel counts, a row count that is no multiple of the 128-row blocks, more
        // channels than the kernels' 512-channel tile, and inputs in NCHW, channels-last or
        // neither (a slice), with a broadcast upstream gradient.
        let cases: [(&str, [i64; 4], bool); 4] = [
            ("odd channels, skip", [3, 5, 7, 6], true),
            ("396 rows, NCHW input", [4, 24, 9, 11], false),
            ("600 channels, skip", [2, 600, 3, 3], true),
            ("sliced input", [3, 7, 8, 5], true),
        ];
        for (kind, tolerances) in [
            // float32: both sum in float64 (libtorch: two passes; ours: float32 blocks of 128 rows
            // around the first row, then float64), so only the last bits differ.
            (Kind::Float, [1e-5, 1e-5, 1e-4]),
            // bfloat16 values carry 8 significant bits (an ulp is at most 2^-7 of a value):
            // libtorch rounds the BatchNorm output before adding the shortcut and the sum after,
            // the fused op only the sum, so an output may differ by half an ulp of the BatchNorm
            // output and one of the sum (up to 1.5 * 2^-7 of the largest); input gradients are
            // rounded once each way. Statistics and the parameters' gradients are float32 and
            // float64 sums of the same bf16 values.
            (Kind::BFloat16, [1.0 / 64.0, 1e-5, 1.0 / 64.0]),
        ] {
            let [output_tolerance, statistics_tolerance, gradient_tolerance] = tolerances;
            for (name, shape, with_skip) in cases {
                let x = (Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 2.0 + 1.5).to_kind(kind);
                let x = match name {
                    "sliced input" => {
                        let wide = Tensor::randn([3, 7, 8, 9], (Kind::Float, Device::Cpu)).to_kind(kind);
                        contiguous(&wide, MemoryFormat::ChannelsLast).narrow(3, 2, 5)
                    }
                    "396 rows, NCHW input" => x,
                    _ => contiguous(&x, MemoryFormat::ChannelsLast),
                };
                let skip = with_skip.then(|| Tensor::randn(shape, (Kind::Float, Device::Cpu)).to_kind(kind));
                let dy = match name {
                    "sliced input" => {
                        Tensor::randn([shape[0], shape[1], 1, 1], (Kind::Float, Device::Cpu)).expand(shape, false)
                    }
                    _ => Tensor::randn(shape, (Kind::Float, Device::Cpu)),
                };
                // Where the output is within rounding of 0, the two may clamp differently (libtorch
                // rounds before adding the shortcut): such values are few and tiny, and the
                // upstream gradient is zero there, so that the gradients compare what the
                // arithmetic decides.
                let fused_output = &run(batch_norm_relu, &x, skip.as_ref(), &dy, InstructionSet::Best)[0].1;
                let reference_output = &run(unfused, &x, skip.as_ref(), &dy, InstructionSet::Best)[0].1;
                let clamped_differently = fused_output.gt(0.0).logical_xor(&reference_output.gt(0.0));
                let differently = clamped_differently.sum(Kind::Int64).int64_value(&[]);
                assert!(
                    differently * 100 <= fused_output.numel() as i64,
                    "{kind:?}, {name}: {differently} clamped differently"
                );
                if differently > 0 {
                    let largest = reference_output.abs().max().double_value(&[]);
                    let there = reference_output.masked_select(&clamped_differently).abs().max().double_value(&[]);
                    assert!(there <= output_tolerance * largest, "{kind:?}, {name}: clamped differently at {there}");
                }
                let dy = dy.masked_fill(&clamped_differently, 0.0);
                let reference = run(unfused, &x, skip.as_ref(), &dy, InstructionSet::Best);
                for set in instruction_sets() {
                    let fused = run(batch_norm_relu, &x, skip.as_ref(), &dy, set);
                    assert_eq!(fused.len(), if with_skip { 7 } else { 6 });
                    for ((what, got), (_, want)) in fused.iter().zip(&reference) {
                        assert_eq!(got.kind(), want.kind(), "{kind:?}, {name}, {set:?}: {what}");
                        assert_eq!(got.size(), want.size(), "{kind:?}, {name}, {set:?}: {what}");
                        let tolerance = match *what {
                            "output" => output_tolerance,
                            "moving mean" | "moving variance" => statistics_tolerance,
                            _ => gradient_tolerance,
                        };
                        let difference = relative_difference(got, want);
                        assert!(
                            difference <= tolerance,
                            "{kind:?}, {name}, {set:?}: {what} differs by {difference:e} > {tolerance:e}"
                        );
                    }
                }
            }
        }
    }

    /// A fresh Keras BatchNorm's variables: gamma 1, beta 0, moving mean 0 and variance 1.
    struct UnitBatchNorm([Tensor; 4]);

    impl UnitBatchNorm {
        fn new(channels: i64) -> Self {
            let ones = || Tensor::ones([channels], (Kind::Float, Device::Cpu));
            let zeros = || Tensor::zeros([channels], (Kind::Float, Device::Cpu));
            UnitBatchNorm([ones(), zeros(), zeros(), ones()])
        }

        fn state(&self) -> BatchNormState<'_> {
            let [gamma, beta, running_mean, running_var] = &self.0;
            let instruction_set = InstructionSet::Best;
            BatchNormState { gamma, beta, running_mean, running_var, momentum: 0.99, eps: 1e-3, instruction_set }
        }
    }

    #[test]
    fn fused_batch_norm_relu_gives_channels_last_output_and_refuses_what_it_cannot_do() {
        let unit = UnitBatchNorm::new(4);
        let bn = unit.state();
        let y = batch_norm_relu(&Tensor::randn([2, 4, 3, 3], (Kind::Float, Device::Cpu)), None, &bn);
        assert!(is_channels_last(&y));
        assert!(y.min().double_value(&[]) >= 0.0);
        let refused = |x: Tensor| {
            let error = std::panic::catch_unwind(|| batch_norm_relu(&x, None, &bn)).expect_err("refused");
            error.downcast_ref::<String>().cloned().unwrap_or_default()
        };
        let message = refused(Tensor::randn([2, 4, 3, 3], (Kind::Double, Device::Cpu)));
        assert!(message.contains("float32 or bfloat16") && message.contains("Double"), "{message}");
        let message = refused(Tensor::randn([2, 5, 3, 3], (Kind::Float, Device::Cpu)));
        assert!(message.contains("of 5 values"), "{message}");
        let message = refused(Tensor::randn([1, 4, 1, 1], (Kind::Float, Device::Cpu)));
        assert!(message.contains("more than one value per channel"), "{message}");
    }

    #[test]
    fn the_op_counter_counts_outermost_calls_forward_and_backward() {
        let x = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([2, 3, 3, 3], (Kind::Float, Device::Cpu));
        // conv2d calls convolution and a backend kernel inside: one op.
        let (_, conv) = count_ops(|| x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1));
        assert_eq!(conv, 1);
        let (_, two) = count_ops(|| (&x * 2.0).sum(Kind::Float));
        assert_eq!(two, 2);
        // The backward of sum(x * 2): the engine's seed gradient and two backward kernels at most.
        let loss = (&x * 2.0).sum(Kind::Float);
        let (grads, backward) = count_ops(|| Tensor::run_backward(&[&loss], &[&x], false, false));
        assert!((1..=6).contains(&backward), "{backward}");
        assert!(grads[0].equal(&(x.ones_like() * 2.0)));
        let (_, nothing) = count_ops(|| ());
        assert_eq!(nothing, 0);
    }

    #[test]
    fn the_op_recorder_gives_nested_calls_and_self_times_and_the_fused_op_is_one_op() {
        let x = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([2, 3, 3, 3], (Kind::Float, Device::Cpu));
        let start = std::time::Instant::now();
        let (_, records) = record_ops(|| x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1));
        let elapsed = start.elapsed();
        let find = |name: &str| records.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{records:?}"));
        assert_eq!((find("aten::conv2d").calls, find("aten::conv2d").outermost), (1, 1));
        assert_eq!(find("aten::convolution").outermost, 0, "called from conv2d");
        let total: Duration = records.iter().map(|r| r.self_time).sum();
        assert!(total <= elapsed, "self times {total:?} within the {elapsed:?} the call took");
        assert!(records.windows(2).all(|w| w[0].self_time >= w[1].self_time), "longest first");

        let unit = UnitBatchNorm::new(3);
        let x = contiguous(&x, MemoryFormat::ChannelsLast);
        let (_, fused) = count_ops(|| batch_norm_relu(&x, None, &unit.state()));
        assert_eq!(fused, 1, "the op's own allocations are inside it");
    }
}
