//! The op recorder (`csrc/recorder.cpp`): what operators a piece of work dispatches, how often,
//! and their self time, as torch.profiler's "self CPU" column counts it.
use super::{check, ext_free_error, CppMessage};
use std::ffi::{c_char, CStr};
use std::time::Duration;

extern "C" {
    fn ext_op_recorder_start() -> CppMessage;
    fn ext_op_recorder_stop(table: *mut *mut c_char) -> CppMessage;
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
    use crate::testing::UnitBatchNorm;
    use crate::torch_ext::fused::batch_norm_relu;
    use crate::torch_ext::{contiguous, MemoryFormat};
    use tch::{Device, Kind, Tensor};

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
