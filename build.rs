//! Link libtorch so that CUDA is found at run time, remember where it lives, and compile the
//! small C++ extension (`csrc/`: the wrappers, the fused op and the op recorder) against the same
//! libtorch headers.
//!
//! torch-sys finds libtorch through `LIBTORCH` (the venv's `torch` package folder) and
//! `LIBTORCH_CXX11_ABI`, which `make setup` writes into `.cargo/config.toml`, so that plain
//! `cargo` works in any shell.
//!
//! The linker's default `--as-needed` drops `libtorch.so` (our code calls no symbol of it
//! directly), and with it `libtorch_cuda.so`: the binary would then never see a GPU. We force
//! it in with `--no-as-needed` and add an rpath to torch's lib folder so the binary runs
//! without `LD_LIBRARY_PATH`.
use std::path::Path;

/// The extension's sources, one per concept, mirrored by `src/torch_ext/`.
const EXTENSION: [&str; 3] = ["csrc/torch_ext.cpp", "csrc/fused.cpp", "csrc/recorder.cpp"];

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    for source in EXTENSION.iter().chain(&["csrc/torch_ext.h", "csrc/bn_relu_kernels.cpp", "csrc/bn_relu_kernels.h"]) {
        println!("cargo:rerun-if-changed={source}");
    }
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys reports where libtorch is (DEP_TCH_LIBTORCH_LIB); run `make setup` first");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib_dir}");
    println!("cargo:rustc-link-arg=-ltorch");
    // fused.cpp's at::parallel_for is OpenMP in the wheel's libtorch (an inline template, compiled
    // here with -fopenmp): it must run on the same OpenMP runtime as libtorch, the libgomp.so.1
    // beside it (the compiler's otherwise), so that both share one thread pool and thread count.
    let gomp = if Path::new(&lib_dir).join("libgomp.so.1").exists() { "-l:libgomp.so.1" } else { "-lgomp" };
    println!("cargo:rustc-link-arg={gomp}");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");

    // torch/lib sits next to torch/include (the wheel's layout, as torch-sys finds it).
    let torch = Path::new(&lib_dir).join("..");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi())
        .flag_if_supported("-Wno-unused-parameter")
        .flag("-fopenmp")
        .files(EXTENSION)
        .compile("resnext_ext");
    compile_bn_relu_kernels();

    // torch/version.py sits next to torch/lib: report it in `resnext info`. torch-sys checks the
    // version only when Python finds libtorch; a LIBTORCH folder is checked here.
    println!("cargo:rerun-if-changed={}", torch.join("version.py").display());
    let version = std::fs::read_to_string(torch.join("version.py"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("__version__ = ").map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    let release = version.split('+').next().unwrap_or_default();
    assert!(
        release == TORCH_VERSION,
        "tch 0.24 needs libtorch {TORCH_VERSION}, found {version} in {}: run `make setup`",
        torch.display()
    );
    println!("cargo:rustc-env=LIBTORCH_VERSION={version}");
}

/// The fused BatchNorm-ReLU loops (csrc/bn_relu_kernels.cpp), once per instruction set (x86-64:
/// AVX-512, AVX2 and the baseline; elsewhere the baseline); fused.cpp picks the one the CPU has at
/// run time. Always optimised: a test build at -O0 would time and test loops nobody runs.
fn compile_bn_relu_kernels() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut instruction_sets: Vec<(&str, &[&str])> = vec![("baseline", &[])];
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        instruction_sets.push((
            "avx512",
            &["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mprefer-vector-width=512"],
        ));
        instruction_sets.push(("avx2", &["-mavx2", "-mfma"]));
    }
    for (name, flags) in instruction_sets {
        let mut build = cc::Build::new();
        build.cpp(true).pic(true).std("c++17").opt_level(3).out_dir(out.join(name)).define("KERNELS", name);
        for flag in flags {
            build.flag(flag);
        }
        build.file("csrc/bn_relu_kernels.cpp").compile(&format!("resnext_bn_relu_{name}"));
    }
}

/// The libtorch release tch 0.24 is written against.
const TORCH_VERSION: &str = "2.11.0";

/// The C++ ABI libtorch was built with: `LIBTORCH_CXX11_ABI` as torch-sys reads it, else asked
/// of Python's torch, as torch-sys asks it (PyPI's 2.x wheels use the new one, so that is the
/// answer when neither can say).
fn cxx11_abi() -> &'static str {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let asked = std::env::var("LIBTORCH_CXX11_ABI").ok().or_else(|| {
        std::process::Command::new("python3")
            .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    match asked.as_deref() {
        Some("0") => "0",
        _ => "1",
    }
}
