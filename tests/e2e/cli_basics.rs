//! The first commands a user runs: `info` and `summary`, through the real binary, from the
//! checkout and from any other folder.
use crate::common::*;

#[test]
fn info_reports_libtorch_and_cuda() {
    let output = run_resnext(&["info"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    // The libtorch loaded (the build's, found by the rpath) and the one built against.
    let built = resnext::host::LIBTORCH_VERSION;
    let line = text.lines().find(|l| l.starts_with("libtorch: ")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with(&format!("libtorch: {built} loaded from ")), "{line}");
    assert!(line.ends_with(&format!(" (built against {built})")), "{line}");
    let folder = line.split(" loaded from ").nth(1).unwrap().split(" (built").next().unwrap();
    assert!(std::path::Path::new(folder).join("libtorch_cpu.so").is_file(), "{line}");
    let driver = resnext::gpus::driver();
    if driver.gpus.is_empty() {
        assert!(text.contains("CUDA available: false") && text.contains("GPU count: 0"), "{text}");
        assert_eq!(stdout(&run_resnext(&["info", "--gpus"])).trim(), "0");
    }
    if let Some(why) = &driver.unavailable {
        assert!(text.contains(&format!("NVIDIA driver: {why}")), "{text}");
    }
    // Each GPU in libtorch's order, and whether this CPU has native bf16.
    for gpu in &driver.gpus {
        assert!(text.contains(&format!("cuda:{}: {}", gpu.index, gpu.name)), "{text}");
    }
    assert!(text.contains("libtorch's CUDA runtime: ") && text.contains(", native bf16: "), "{text}");
    assert!(text.contains("CPU threads (intra-op): "), "{text}");
    // The binary tunes malloc for itself (unless the user chose their own tunables).
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        assert!(text.contains("mmap_threshold"), "{text}");
    }
}

#[test]
fn info_json_names_the_libtorch_the_devices_and_the_cpu_for_scripts() {
    let output = run_resnext(&["info", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let info: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("valid JSON");
    let built = resnext::host::LIBTORCH_VERSION;
    assert_eq!(info["libtorch"]["built_against"], built);
    assert_eq!(info["libtorch"]["loaded"], built, "the build's libtorch, found by the rpath");
    let folder = info["libtorch"]["loaded_from"].as_str().unwrap();
    assert!(std::path::Path::new(folder).join("libtorch_cpu.so").is_file(), "{info}");
    let driver = resnext::gpus::driver();
    assert_eq!(info["gpus"].as_array().unwrap().len(), driver.gpus.len());
    assert_eq!(info["cuda"]["device_count"], tch::Cuda::device_count());
    assert_eq!(info["cuda"]["driver_unavailable"].as_str(), driver.unavailable.as_deref());
    assert_eq!(info["cpu"]["cores"], resnext::host::cores());
    assert_eq!(info["cpu"]["model"].as_str(), resnext::host::cpu_model().as_deref());
    assert_eq!(info["cpu"]["native_bf16"].as_str(), resnext::host::cpu_native_bf16());
}

#[test]
fn summary_prints_the_keras_totals() {
    let output = run_resnext(&["summary", "my_resnext"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for line in ["Total params: 5,671,872", "Trainable params: 5,646,656", "Non-trainable params: 25,216"] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("stage2.block1.conv2") && text.contains("8 groups"), "{text}");
    let wide = stdout(&run_resnext(&["summary", "resnext", "--set", "model.width=64"]));
    assert!(wide.lines().any(|l| l == "Total params: 89,700,288"), "{wide}");
}
