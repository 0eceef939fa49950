//! The process and the machine it runs on: the libtorch it was built against, CPU threads,
//! glibc's allocator tunables, and what the CPU is and computes natively.
use std::path::{Path, PathBuf};
/// The libtorch version this binary was built against (read from the wheel by `build.rs`).
pub const LIBTORCH_VERSION: &str = env!("LIBTORCH_VERSION");

/// The libtorch this process runs on: the folder it was loaded from (the build's rpath, or
/// wherever `LD_LIBRARY_PATH` pointed) and the version its wheel states there
/// (`torch/version.py` beside `torch/lib`), when that can be read.
pub fn loaded_libtorch() -> Option<(PathBuf, Option<String>)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let library = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| Path::new(path).file_name().is_some_and(|name| name == "libtorch_cpu.so"))?;
    let folder = Path::new(library).parent()?.to_path_buf();
    let version = std::fs::read_to_string(folder.join("../version.py")).ok().and_then(|text| {
        text.lines().find_map(|line| Some(line.strip_prefix("__version__ = ")?.trim_matches(['\'', '"']).to_string()))
    });
    Some((folder, version))
}

/// One intra-op thread per core (libtorch's default may count hyper-threads or a cgroup's
/// quota differently), and a single inter-op thread: the network is one chain of operations.
pub fn configure_threads() {
    tch::set_num_threads(cores() as i32);
    tch::set_num_interop_threads(1);
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
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

/// The malloc tuning in effect, for reports: `GLIBC_TUNABLES=...`, or `None` for glibc's defaults.
pub fn malloc_tuning() -> Option<String> {
    std::env::var("GLIBC_TUNABLES").ok().map(|v| format!("GLIBC_TUNABLES={v}"))
}

/// The CPU's model name, as /proc/cpuinfo says.
pub fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name"))?;
    Some(model.trim_start_matches([' ', '\t', ':']).to_string())
}

/// Whether this CPU computes bf16 natively (AMX or AVX512-BF16), as /proc/cpuinfo says: the
/// flag that says so.
pub fn cpu_native_bf16() -> Option<&'static str> {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> =
        flags.lines().find(|l| l.starts_with("flags")).map(|l| l.split_whitespace().collect()).unwrap_or_default();
    ["amx_bf16", "avx512_bf16"].into_iter().find(|flag| flags.contains(flag))
}
