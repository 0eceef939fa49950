//! `resnext info`: the facts a user checks first: versions, CUDA and cuDNN, the GPUs in
//! libtorch's order, native bf16, threads, malloc tuning. As text for people, or as JSON for
//! scripts (`--json`), from the one [`Info`].
use crate::{gpus, host, torch_ext};
use serde::Serialize;

/// What `resnext info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub resnext: String,
    pub libtorch: Libtorch,
    pub cuda: Cuda,
    pub gpus: Vec<Gpu>,
    pub cpu: Cpu,
}

#[derive(Debug, Clone, Serialize)]
pub struct Libtorch {
    /// The version resnext was built against, e.g. "2.11.0+cu130".
    pub built_against: String,
    /// The version of the libtorch this process loaded, when its folder says.
    pub loaded: Option<String>,
    /// The folder it was loaded from, when known.
    pub loaded_from: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cuda {
    /// libtorch's CUDA runtime, e.g. "13.0" (none in a CPU build).
    pub runtime: Option<String>,
    /// libtorch's cuDNN, e.g. "9.10.2".
    pub cudnn: Option<String>,
    /// The NVIDIA driver's release, e.g. "580.95.05".
    pub driver: Option<String>,
    /// The CUDA version the driver supports.
    pub driver_cuda: Option<String>,
    /// Why the driver could not be asked (no NVIDIA driver on this machine).
    pub driver_unavailable: Option<String>,
    /// Whether libtorch can use CUDA, and cuDNN.
    pub available: bool,
    pub cudnn_available: bool,
    /// How many CUDA devices libtorch sees (after CUDA_VISIBLE_DEVICES).
    pub device_count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    /// libtorch's index: `--device cuda:N`.
    pub index: usize,
    pub name: String,
    pub memory_gib: f64,
    pub compute_capability: String,
    pub native_bf16: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub model: Option<String>,
    /// The instruction set that computes bf16 natively (amx_bf16 or avx512_bf16), if any.
    pub native_bf16: Option<&'static str>,
    pub threads: i32,
    pub cores: usize,
    pub mkl: bool,
    pub mkldnn: bool,
    pub openmp: bool,
    /// The glibc malloc tunables resnext runs with.
    pub malloc_tuning: Option<String>,
}

impl Info {
    /// Asks libtorch, the CUDA driver and the machine.
    pub fn gather() -> Info {
        let driver = gpus::driver();
        let (runtime, cudnn) = torch_ext::cuda_versions();
        let loaded = host::loaded_libtorch();
        Info {
            resnext: env!("CARGO_PKG_VERSION").to_string(),
            libtorch: Libtorch {
                built_against: host::LIBTORCH_VERSION.to_string(),
                loaded: loaded.as_ref().and_then(|(_, version)| version.clone()),
                loaded_from: loaded.map(|(folder, _)| folder.display().to_string()),
            },
            cuda: Cuda {
                runtime: runtime.map(|v| gpus::cuda_version_text(v as i32)),
                cudnn: cudnn.map(|v| format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)),
                driver: driver.release.clone(),
                driver_cuda: driver.cuda_version.map(gpus::cuda_version_text),
                driver_unavailable: driver.unavailable.clone(),
                available: tch::Cuda::is_available(),
                cudnn_available: tch::Cuda::cudnn_is_available(),
                device_count: tch::Cuda::device_count(),
            },
            gpus: driver
                .gpus
                .iter()
                .map(|gpu| Gpu {
                    index: gpu.index,
                    name: gpu.name.clone(),
                    memory_gib: gpu.memory_bytes as f64 / (1u64 << 30) as f64,
                    compute_capability: format!("{}.{}", gpu.compute_capability.0, gpu.compute_capability.1),
                    native_bf16: gpu.native_bf16(),
                })
                .collect(),
            cpu: Cpu {
                model: host::cpu_model(),
                native_bf16: host::cpu_native_bf16(),
                threads: tch::get_num_threads(),
                cores: host::cores(),
                mkl: tch::utils::has_mkl(),
                mkldnn: tch::utils::has_mkldnn(),
                openmp: tch::utils::has_openmp(),
                malloc_tuning: host::malloc_tuning(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("Info always serialises")
    }

    /// The text for people.
    pub fn to_text(&self) -> String {
        let or = |value: &Option<String>, none: &str| value.clone().unwrap_or_else(|| none.to_string());
        let (libtorch, cuda, cpu) = (&self.libtorch, &self.cuda, &self.cpu);
        let mut lines = vec![
            format!("resnext {}", self.resnext),
            match &libtorch.loaded_from {
                Some(folder) => format!(
                    "libtorch: {} loaded from {folder} (built against {})",
                    or(&libtorch.loaded, "version unknown"),
                    libtorch.built_against
                ),
                None => {
                    format!("libtorch: built against {}; where it was loaded from is unknown", libtorch.built_against)
                }
            },
            format!("libtorch's CUDA runtime: {}, cuDNN: {}", or(&cuda.runtime, "none"), or(&cuda.cudnn, "none")),
            match &cuda.driver_unavailable {
                Some(why) => format!("NVIDIA driver: {why}"),
                None => format!(
                    "NVIDIA driver: {} (supports CUDA {})",
                    or(&cuda.driver, "release unknown"),
                    or(&cuda.driver_cuda, "?")
                ),
            },
            format!("CUDA available: {}", cuda.available),
            format!("cuDNN available: {}", cuda.cudnn_available),
            format!("GPU count: {}", cuda.device_count),
        ];
        for gpu in &self.gpus {
            lines.push(format!(
                "  cuda:{}: {}, {:.1} GiB, compute capability {}, native bf16: {}",
                gpu.index,
                gpu.name,
                gpu.memory_gib,
                gpu.compute_capability,
                if gpu.native_bf16 { "yes" } else { "no (emulated: slower than fp32)" }
            ));
        }
        if !self.gpus.is_empty() && !cuda.available {
            lines.push(format!(
                "note: the driver sees {} GPU(s) but libtorch {} cannot use them: this build needs a driver for CUDA {}; \
                 install a torch wheel for an older CUDA (docs/gpu.md)",
                self.gpus.len(),
                libtorch.built_against,
                or(&cuda.runtime, "none")
            ));
        }
        lines.push(format!(
            "CPU: {}, native bf16: {}",
            or(&cpu.model, "unknown"),
            match cpu.native_bf16 {
                Some(flag) => format!("yes ({flag})"),
                None => "no (no AMX or AVX512-BF16: bf16 is emulated, much slower than fp32)".into(),
            }
        ));
        lines.push(format!("CPU threads (intra-op): {}", cpu.threads));
        lines.push(format!("CPU cores: {}", cpu.cores));
        lines.push(format!("MKL: {}, MKL-DNN: {}, OpenMP: {}", cpu.mkl, cpu.mkldnn, cpu.openmp));
        lines.push(format!("malloc tuning: {}", or(&cpu.malloc_tuning, "off")));
        lines.join("\n")
    }
}
