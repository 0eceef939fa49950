//! `resnext info`: the facts a user checks first: versions, CUDA and cuDNN, the GPUs in
//! libtorch's order, native bf16, threads, malloc tuning.
use crate::{gpus, host, torch_ext};

pub fn report() -> String {
    let driver = gpus::driver();
    let (runtime, cudnn) = torch_ext::cuda_versions();
    let version = |v: Option<i64>, text: fn(i64) -> String| v.map(text).unwrap_or_else(|| "none".into());
    let mut lines = vec![
        format!("resnext {}", env!("CARGO_PKG_VERSION")),
        match host::loaded_libtorch() {
            Some((folder, version)) => format!(
                "libtorch: {} loaded from {} (built against {})",
                version.as_deref().unwrap_or("version unknown"),
                folder.display(),
                host::LIBTORCH_VERSION
            ),
            None => format!("libtorch: built against {}; where it was loaded from is unknown", host::LIBTORCH_VERSION),
        },
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
            host::LIBTORCH_VERSION,
            version(runtime, |v| gpus::cuda_version_text(v as i32))
        ));
    }
    lines.push(format!(
        "CPU: {}, native bf16: {}",
        host::cpu_model().as_deref().unwrap_or("unknown"),
        match host::cpu_native_bf16() {
            Some(flag) => format!("yes ({flag})"),
            None => "no (no AMX or AVX512-BF16: bf16 is emulated, much slower than fp32)".into(),
        }
    ));
    lines.push(format!("CPU threads (intra-op): {}", tch::get_num_threads()));
    lines.push(format!("CPU cores: {}", host::cores()));
    lines.push(format!(
        "MKL: {}, MKL-DNN: {}, OpenMP: {}",
        tch::utils::has_mkl(),
        tch::utils::has_mkldnn(),
        tch::utils::has_openmp()
    ));
    lines.push(format!("malloc tuning: {}", host::malloc_tuning().unwrap_or_else(|| "off".into())));
    lines.join("\n")
}
