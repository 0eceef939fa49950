//! The fused BatchNorm -> (+ shortcut) -> ReLU training op (`csrc/fused.cpp`, its loops in
//! `csrc/bn_relu_kernels.cpp`), safe.
use super::{check, handle, CppMessage};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
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
    ) -> CppMessage;
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
/// See `csrc/fused.cpp` for what it fuses and why.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{relative_difference, UnitBatchNorm};
    use crate::torch_ext::{contiguous, is_channels_last, MemoryFormat};
    use tch::{Device, Kind};

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
}
