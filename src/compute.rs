//! Where and how a command's tensors run: the device, the precision, the memory format and
//! libtorch's process-wide switches (cuDNN benchmark, TF32). Every setting whose best value
//! depends on the device is a field with that device's default, so the tests can run the
//! CUDA-shaped code on a CPU.
use crate::config::{Experiment, Precision};
use crate::gpus;
use crate::host;
use crate::torch_ext::{self, MemoryFormat};
use anyhow::{bail, Result};
use tch::Device;

/// `auto` (CUDA 0 when present, else CPU), `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let device = match spec {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Device::Cuda(n),
            _ => bail!("--device {other:?}: expected auto, cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(n) = device {
        let count = tch::Cuda::device_count() as usize;
        if n >= count {
            bail!(
                "--device {spec}: this machine has {count} CUDA device(s) visible to libtorch {}",
                host::LIBTORCH_VERSION
            );
        }
    }
    Ok(device)
}

/// What a command was asked for; `None` leaves the choice to the device's default (or, for the
/// precision, to the experiment's config: [`ComputeRequest::precision_for`]).
#[derive(Debug, Clone)]
pub struct ComputeRequest {
    pub device: Device,
    pub precision: Option<Precision>,
    pub memory_format: Option<MemoryFormat>,
    pub cudnn_benchmark: Option<bool>,
    pub tf32: bool,
    pub fused_batch_norm: Option<bool>,
}

impl ComputeRequest {
    /// The precision a run of `experiment` computes in: the one asked for, else its config's.
    /// (Resolved here only: `train` records it in the run's config, the other commands pass it
    /// to [`Compute::new`].)
    pub fn precision_for(&self, experiment: &Experiment) -> Precision {
        self.precision.unwrap_or(experiment.precision)
    }

    /// The CPU with every default.
    pub fn cpu() -> Self {
        ComputeRequest {
            device: Device::Cpu,
            precision: None,
            memory_format: None,
            cudnn_benchmark: None,
            tf32: false,
            fused_batch_norm: None,
        }
    }
}

/// How a command's tensors run.
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    pub precision: Precision,
    pub memory_format: MemoryFormat,
    /// cuDNN benchmark mode: the input shapes are fixed, so timing the algorithms once pays.
    pub cudnn_benchmark: bool,
    pub tf32: bool,
    /// Training's BatchNorm -> ReLU and BatchNorm -> + shortcut -> ReLU as one op each, with
    /// its own backward (`torch_ext::fused::batch_norm_relu`): the same function in fewer passes over
    /// the activations. CPU only; CUDA keeps libtorch's kernels until the op is measured there.
    pub fused_batch_norm: bool,
}

impl Compute {
    /// The settings `request` resolves to, computing in `precision` (see
    /// [`ComputeRequest::precision_for`]); sets libtorch's process-wide switches to them.
    pub fn new(request: &ComputeRequest, precision: Precision) -> Result<Self> {
        let cuda = request.device.is_cuda();
        if cuda && request.fused_batch_norm == Some(true) {
            bail!("--fused true: the fused BatchNorm-ReLU op runs on the CPU only (use --fused false on CUDA)");
        }
        let compute = Compute {
            device: request.device,
            precision,
            // CUDA keeps NCHW until channels-last is measured faster there (docs/performance.md).
            memory_format: request.memory_format.unwrap_or(if cuda {
                MemoryFormat::Contiguous
            } else {
                MemoryFormat::ChannelsLast
            }),
            cudnn_benchmark: request.cudnn_benchmark.unwrap_or(cuda),
            tf32: request.tf32,
            fused_batch_norm: request.fused_batch_norm.unwrap_or(!cuda),
        };
        compute.apply();
        Ok(compute)
    }

    /// Sets libtorch's process-wide switches to these settings.
    fn apply(&self) {
        tch::Cuda::cudnn_set_benchmark(self.cudnn_benchmark);
        torch_ext::set_tf32(self.tf32);
    }

    /// Runs `f` under autocast when the precision asks for it.
    pub fn autocast<T>(&self, f: impl FnOnce() -> T) -> T {
        torch_ext::autocast(self.device, self.precision.autocast_dtype(), f)
    }

    /// A one-line note when the precision does not suit this CPU: fp32 on a CPU with native
    /// bf16, or bf16 on one without (where it is emulated).
    pub fn cpu_precision_note(&self) -> Option<String> {
        if self.device != Device::Cpu {
            return None;
        }
        match (self.precision, host::cpu_native_bf16()) {
            (Precision::Fp32, Some(flag)) => Some(format!(
                "note: this CPU computes bf16 natively ({flag}): --precision bf16 trained about 2.5x faster than \
                 fp32 on a 2-core AMX Xeon (docs/performance.md)"
            )),
            (Precision::Bf16, None) => Some(
                "note: this CPU has no native bf16 (no AMX or AVX512-BF16): bf16 is emulated here, 6x (demo) to 16x \
                 (my_resnext) slower than fp32 on a 2-core AMD EPYC (docs/performance.md)"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The machine the tensors run on, for a run's record: the GPU's name, or the CPU's model
    /// and the threads libtorch uses.
    pub fn machine(&self) -> String {
        match self.device {
            Device::Cuda(n) => {
                let name = gpus::driver().gpus.into_iter().find(|gpu| gpu.index == n).map(|gpu| gpu.name);
                format!("{} (cuda:{n})", name.unwrap_or_else(|| "unknown GPU".into()))
            }
            _ => format!(
                "{} ({} threads)",
                host::cpu_model().unwrap_or_else(|| "unknown CPU".into()),
                tch::get_num_threads()
            ),
        }
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        let format = match self.memory_format {
            MemoryFormat::ChannelsLast => "channels-last",
            MemoryFormat::Contiguous => "NCHW",
        };
        format!(
            "{:?}, {}, {format}, cuDNN benchmark {}, TF32 {}, fused BatchNorm-ReLU {}",
            self.device,
            self.precision.name(),
            self.cudnn_benchmark,
            self.tf32,
            self.fused_batch_norm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fused_batch_norm_is_on_by_default_on_the_cpu_can_be_turned_off_and_is_refused_on_cuda() {
        let on = Compute::new(&ComputeRequest::cpu(), Precision::Fp32).unwrap();
        assert!(on.fused_batch_norm);
        assert!(on.describe().ends_with("fused BatchNorm-ReLU true"), "{}", on.describe());
        let request = ComputeRequest { fused_batch_norm: Some(false), ..ComputeRequest::cpu() };
        assert!(!Compute::new(&request, Precision::Fp32).unwrap().fused_batch_norm);
        // Refused before anything touches the device, so this runs without a GPU.
        let cuda = ComputeRequest { device: Device::Cuda(0), fused_batch_norm: Some(true), ..ComputeRequest::cpu() };
        let error = Compute::new(&cuda, Precision::Fp32).unwrap_err().to_string();
        assert!(error.contains("--fused true") && error.contains("CPU only"), "{error}");
    }
}
