//! Link libtorch so that CUDA is found at run time, and remember where it lives.
//!
//! The linker's default `--as-needed` drops `libtorch.so` (our code calls no symbol of it
//! directly), and with it `libtorch_cuda.so`: the binary would then never see a GPU. We force
//! it in with `--no-as-needed` and add an rpath to torch's lib folder so the binary runs
//! without `LD_LIBRARY_PATH`.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report DEP_TCH_LIBTORCH_LIB; CUDA may not be found at run time");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib_dir}");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");

    // torch/version.py sits next to torch/lib: report it in `resnext info`.
    let version_py = Path::new(&lib_dir).join("../version.py");
    let version = std::fs::read_to_string(&version_py)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("__version__ = ").map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LIBTORCH_VERSION={version}");
}
