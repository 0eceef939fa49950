//! Where and how tensors run: device choice and the settings that follow from it, CPU threads,
//! allocator tuning, `resnext info`.
use crate::cli::ComputeArgs;
use crate::config::Precision;
use crate::gpus;
use crate::torch_ext::{self, MemoryFormat};
use anyhow::{bail, ensure, Result};
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
                env!("LIBTORCH_VERSION")
            );
        }
    }
    Ok(device)
}

/// How a command's tensors run. Every setting whose best value depends on the device is a
/// field with that device's default, so the tests can run the CUDA-shaped code on a CPU.
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    pub precision: Precision,
    pub memory_format: MemoryFormat,
    /// cuDNN benchmark mode: the input shapes are fixed, so timing the algorithms once pays.
    pub cudnn_benchmark: bool,
    pub tf32: bool,
    /// Images per evaluation batch.
    pub eval_batch: usize,
    /// Training reads the losses back (a host sync) every this many steps.
    pub sync_every: usize,
}

impl Compute {
    /// The settings for `args` on a run whose config says `precision`; `eval_batch` and
    /// `sync_every` are the command's own options, when it has them.
    pub fn new(
        args: &ComputeArgs,
        precision: Precision,
        eval_batch: Option<u64>,
        sync_every: Option<u64>,
    ) -> Result<Self> {
        ensure!(!args.amp, "--amp is gone: use --precision bf16 (autocast to bfloat16 on the run's device)");
        let cuda = args.device.is_cuda();
        let compute = Compute {
            device: args.device,
            precision: args.precision.unwrap_or(precision),
            // CUDA keeps NCHW until channels-last is measured faster there (README, Performance).
            memory_format: args.memory_format.unwrap_or(if cuda {
                MemoryFormat::Contiguous
            } else {
                MemoryFormat::ChannelsLast
            }),
            cudnn_benchmark: args.cudnn_benchmark.unwrap_or(cuda),
            tf32: args.tf32,
            eval_batch: eval_batch.map(|n| n as usize).unwrap_or(if cuda { 1000 } else { 64 }),
            sync_every: sync_every.map(|n| n as usize).unwrap_or(if cuda { 50 } else { 1 }),
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
        match (self.precision, gpus::cpu_native_bf16()) {
            (Precision::Fp32, Some(flag)) => Some(format!(
                "note: this CPU computes bf16 natively ({flag}): --precision bf16 trained about 2x faster than fp32 \
                 on a 2-core AMX Xeon (README, Performance)"
            )),
            (Precision::Bf16, None) => Some(
                "note: this CPU has no native bf16 (no AMX or AVX512-BF16): bf16 is emulated here, 6x (demo) to 16x \
                 (my_resnext) slower than fp32 on a 2-core AMD EPYC (README, Performance)"
                    .into(),
            ),
            _ => None,
        }
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        let format = match self.memory_format {
            MemoryFormat::ChannelsLast => "channels-last",
            MemoryFormat::Contiguous => "NCHW",
        };
        format!(
            "{:?}, {}, {format}, eval batch {}, sync every {} step(s), cuDNN benchmark {}, TF32 {}",
            self.device,
            self.precision.name(),
            self.eval_batch,
            self.sync_every,
            self.cudnn_benchmark,
            self.tf32
        )
    }
}

/// One intra-op thread per core (libtorch's default may count hyper-threads or a cgroup's
/// quota differently), and a single inter-op thread: the network is one chain of operations.
pub fn configure_threads() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    tch::set_num_threads(cores as i32);
    tch::set_num_interop_threads(1);
}

/// glibc serves large allocations (>= 128 KiB by default, growing up to 32 MiB) with fresh
/// mmaps and gives them back every time: each training step then page-faults and zeroes
/// every activation buffer anew, which halves CPU speed. The tunables below keep such
/// buffers in the heap. They must be set before the process starts, so `main` re-executes
/// itself once with them (unless the user already set GLIBC_TUNABLES).
pub const MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295";
const REEXEC_MARK: &str = "RESNEXT_MALLOC_TUNED";

pub fn reexec_with_malloc_tuning() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() || std::env::var_os(REEXEC_MARK).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
        .env(REEXEC_MARK, "1")
        .exec();
    // exec only returns on failure: carry on untuned rather than fail.
    eprintln!("note: could not re-execute with malloc tuning ({error}); continuing without it");
}

/// The facts a user checks first: versions, CUDA and cuDNN, the GPUs in libtorch's order,
/// native bf16, threads.
pub fn info() -> Result<String> {
    let driver = gpus::driver();
    let (runtime, cudnn) = torch_ext::cuda_versions();
    let version = |v: Option<i64>, text: fn(i64) -> String| v.map(text).unwrap_or_else(|| "none".into());
    let mut lines = vec![
        format!("resnext {}", env!("CARGO_PKG_VERSION")),
        format!("libtorch: {}", env!("LIBTORCH_VERSION")),
        format!(
            "libtorch's CUDA runtime: {}, cuDNN: {}",
            version(runtime, |v| gpus::cuda_version_text(v as i32)),
            version(cudnn, |v| format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100))
        ),
        match (&driver.unavailable, &driver.release, driver.cuda_version) {
            (Some(why), _, _) => format!("NVIDIA driver: {why}"),
            (None, release, cuda) => format!(
                "NVIDIA driver: {} (supports CUDA {})",
                release.as_deref().unwrap_or("release unknown"),
                cuda.map(gpus::cuda_version_text).unwrap_or_else(|| "?".into())
            ),
        },
        format!("CUDA available: {}", tch::Cuda::is_available()),
        format!("cuDNN available: {}", tch::Cuda::cudnn_is_available()),
        format!("GPU count: {}", tch::Cuda::device_count()),
    ];
    for gpu in &driver.gpus {
        let (major, minor) = gpu.compute_capability;
        lines.push(format!(
            "  cuda:{}: {}, {:.1} GiB, compute capability {major}.{minor}, native bf16: {}",
            gpu.index,
            gpu.name,
            gpu.memory_bytes as f64 / (1u64 << 30) as f64,
            if gpu.native_bf16() { "yes" } else { "no (emulated: slower than fp32)" }
        ));
    }
    if !driver.gpus.is_empty() && !tch::Cuda::is_available() {
        lines.push(format!(
            "note: the driver sees {} GPU(s) but libtorch {} cannot use them: this build needs a driver for CUDA {}; \
             install a torch wheel for an older CUDA (README, Other wheels)",
            driver.gpus.len(),
            env!("LIBTORCH_VERSION"),
            version(runtime, |v| gpus::cuda_version_text(v as i32))
        ));
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    lines.push(format!(
        "CPU: {}, native bf16: {}",
        model.unwrap_or("unknown"),
        match gpus::cpu_native_bf16() {
            Some(flag) => format!("yes ({flag})"),
            None => "no (no AMX or AVX512-BF16: bf16 is emulated, much slower than fp32)".into(),
        }
    ));
    lines.push(format!("CPU threads (intra-op): {}", tch::get_num_threads()));
    lines.push(format!("CPU cores: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)));
    lines.push(format!(
        "MKL: {}, MKL-DNN: {}, OpenMP: {}",
        tch::utils::has_mkl(),
        tch::utils::has_mkldnn(),
        tch::utils::has_openmp()
    ));
    lines.push(format!(
        "malloc tuning: {}",
        std::env::var("GLIBC_TUNABLES").map(|v| format!("GLIBC_TUNABLES={v}")).unwrap_or_else(|_| "off".into())
    ));
    Ok(lines.join("\n"))
}
