//! Bad inputs get a clear error that names the file, field or value, exit non-zero and
//! change nothing; kill -9 at any moment loses at most the epoch in progress; a diverging
//! run stops with the epoch and step; downloads and archives are checked.
use crate::common::*;
use resnext::data::{META_FILE, TEST_FILE, TRAIN_FILES};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

fn assert_fails_with(output: &Output, needles: &[&str]) {
    let err = stderr(output);
    assert!(!output.status.success(), "expected failure, got success:\n{}", stdout(output));
    for needle in needles {
        assert!(err.contains(needle), "error should mention {needle:?}:\n{err}");
    }
}

/// A data folder of links to the real files, with `file` replaced by `bytes`.
fn data_with(dir: &Path, file: &str, bytes: Option<Vec<u8>>) -> PathBuf {
    let data = dir.join("cifar");
    std::fs::create_dir_all(&data).unwrap();
    for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
        if *name == file {
            if let Some(bytes) = &bytes {
                std::fs::write(data.join(name), bytes).unwrap();
            }
        } else {
            std::os::unix::fs::symlink(data_dir().join(name), data.join(name)).unwrap();
        }
    }
    data
}

/// A finished one-epoch run to protect.
fn existing_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let output = train_tiny(&run, &["--epochs", "1", "--train-limit", "320", "--test-limit", "100"]);
    assert!(output.status.success(), "{}", stderr(&output));
    run
}

#[test]
fn bad_data_files_are_named_and_change_nothing() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = existing_run(dir.path());
    let before = snapshot(&run);
    let real = std::fs::read(data_dir().join("data_batch_3.bin")).unwrap();
    let mut bad_label = std::fs::read(data_dir().join("data_batch_2.bin")).unwrap();
    bad_label[5 * 3073] = 11;
    // (file replaced, its new bytes or None for missing, what the error must name)
    type Case<'a> = (&'a str, Option<Vec<u8>>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        // A batch the run needs (its 320 images are in the first); one it does not need may be
        // missing (a_folder_with_some_training_batches_trains_within_them).
        ("data_batch_1.bin", None, vec!["data_batch_1.bin"]),
        ("data_batch_3.bin", Some(real[..1000].to_vec()), vec!["data_batch_3.bin", "1000 bytes"]),
        ("data_batch_3.bin", Some([real.clone(), vec![0; 10]].concat()), vec!["data_batch_3.bin", "30730010 bytes"]),
        ("data_batch_2.bin", Some(bad_label), vec!["data_batch_2.bin", "record 5", "label byte 11"]),
    ];
    for (i, (file, bytes, needles)) in cases.into_iter().enumerate() {
        let case_dir = dir.path().join(format!("case{i}"));
        let data = data_with(&case_dir, file, bytes);
        let data = data.display().to_string();
        assert_fails_with(&train_tiny(&run, &["--resume", "--epochs", "2", "--data-dir", &data]), &needles);
        assert_eq!(snapshot(&run), before, "case {i} changed the run folder");
    }
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.display().to_string();
    assert_fails_with(&train_tiny(&dir.path().join("new"), &["--data-dir", &empty]), &["data_batch_1.bin"]);
    assert_fails_with(&train_tiny(&dir.path().join("new"), &["--data-dir", "/no/such/folder"]), &["/no/such/folder"]);
    assert!(!dir.path().join("new").exists(), "a failed start must not create the run folder");
}

#[test]
fn a_folder_with_some_training_batches_trains_within_them_and_names_the_missing_ones() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    // The test batch and the first training batch, xz-compressed, as `data pack` writes them.
    let packed = dir.path().join("packed");
    let (from, to) = (data_dir().display().to_string(), packed.display().to_string());
    let output =
        run_resnext(&["data", "pack", "--data-dir", &from, "--to", &to, "--train-batches", "1", "--level", "0"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut names: Vec<String> =
        std::fs::read_dir(&packed).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    assert_eq!(names, [META_FILE, "data_batch_1.bin.xz", "test_batch.bin.xz"]);
    // Within the batch there: the same run as on the plain folder, to the last digit.
    let (plain, small) = (dir.path().join("plain"), dir.path().join("small"));
    for (run, data) in [(&plain, &from), (&small, &to)] {
        let output = train_tiny(run, &["--epochs", "1", "--data-dir", data]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let rows = |run: &Path| metrics_rows(run).iter().map(without_timings).collect::<Vec<_>>();
    assert_eq!(rows(&small), rows(&plain));
    // Beyond it, or without a limit, the missing files are named, with the limit that would fit.
    let beyond = train_tiny(&dir.path().join("beyond"), &["--train-limit", "15000", "--data-dir", &to]);
    assert_fails_with(&beyond, &["data_batch_2.bin", "--train-limit 10000 or less"]);
    assert!(!stderr(&beyond).contains("data_batch_3.bin"), "only what 15,000 images need: {}", stderr(&beyond));
    let out = dir.path().join("all").display().to_string();
    let all = bin().args(["train", &tiny(), "--out", &out, "--device", "cpu", "--data-dir", &to]).output().unwrap();
    assert_fails_with(&all, &["data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin"]);
    // A validation split holds out the last images: it needs every batch, and says so.
    let split = train_tiny(&dir.path().join("split"), &["--set", "validation=1000", "--data-dir", &to]);
    assert_fails_with(&split, &["validation = 1000 holds out the last training images", "data_batch_5.bin"]);
    // Commands that train nothing need the test batch only; `data check` says what is there.
    let check = run_resnext(&["data", "check", "--data-dir", &to]);
    assert!(
        stdout(&check).contains("10000 train and 10000 test images (1 of 5 training batches)"),
        "{}",
        stdout(&check)
    );
    let eval =
        run_resnext(&["eval", &small.display().to_string(), "--data-dir", &to, "--device", "cpu", "--limit", "100"]);
    assert!(eval.status.success(), "{}", stderr(&eval));
}

#[test]
fn malformed_configs_and_overrides_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(tiny()).unwrap();
    let cases: [(&str, String, &[&str]); 7] = [
        ("unknown_field", base.replacen("\"seed\"", "\"sead\": 3, \"seed\"", 1), &["sead"]),
        ("wrong_type", base.replacen("\"epochs\": 2", "\"epochs\": \"two\"", 1), &["field `epochs`", "invalid type"]),
        ("zero_epochs", base.replacen("\"epochs\": 2", "\"epochs\": 0", 1), &["epochs", "0"]),
        ("negative_batch", base.replacen("\"batch_size\": 32", "\"batch_size\": -4", 1), &["-4"]),
        ("zero_batch", base.replacen("\"batch_size\": 32", "\"batch_size\": 0", 1), &["batch_size"]),
        ("unknown_rule", base.replacen("reduce_on_plateau", "cosine_annealing", 1), &["cosine_annealing"]),
        (
            "unknown_model",
            base.replacen("\"name\": \"resnext\"", "\"name\": \"densenet\"", 1),
            &["model.name", "densenet"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        let output = run_resnext(&["summary", &path.display().to_string()]);
        let named = format!("{name}.json");
        assert_fails_with(&output, &[needles, &[named.as_str()]].concat());
    }
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    assert_fails_with(&run_resnext(&["summary", &broken.display().to_string()]), &["broken.json", "not valid JSON"]);
    assert_fails_with(&run_resnext(&["summary", "no_such_experiment"]), &["no_such_experiment", "my_resnext"]);
    assert_fails_with(
        &run_resnext(&["summary", &tiny(), "--set", "lr_schedule.patiense=2"]),
        &["patiense", "patience"],
    );
    assert_fails_with(&run_resnext(&["summary", &tiny(), "--set", "epochs"]), &["key=value"]);
    assert_fails_with(&run_resnext(&["train", &tiny(), "--device", "tpu", "--out", "/tmp/never"]), &["tpu"]);
}

#[test]
fn unwritable_output_and_existing_runs_are_refused() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a_file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("run");
    assert_fails_with(&train_tiny(&out, &["--epochs", "1"]), &["a_file/run"]);
    let run = existing_run(dir.path());
    let before = snapshot(&run);
    assert_fails_with(&train_tiny(&run, &["--epochs", "1"]), &["already holds a run", "--resume", "--force"]);
    assert_eq!(snapshot(&run), before);
}

#[test]
fn corrupt_and_mismatched_checkpoints_are_refused() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = existing_run(dir.path());
    let last = run.join("last.safetensors");
    let good = std::fs::read(&last).unwrap();

    std::fs::write(&last, &good[..good.len() / 2]).unwrap();
    let before = snapshot(&run);
    assert_fails_with(&train_tiny(&run, &["--resume", "--epochs", "2"]), &["last.safetensors", "corrupt"]);
    assert_fails_with(&run_eval(&run, "last"), &["last.safetensors", "corrupt"]);
    assert_eq!(snapshot(&run), before);

    std::fs::write(&last, b"not a checkpoint at all").unwrap();
    assert_fails_with(&run_eval(&run, "last"), &["last.safetensors"]);

    // A checkpoint of a wider network in this run's folder.
    let other = dir.path().join("other");
    let output =
        train_tiny(&other, &["--epochs", "1", "--train-limit", "64", "--test-limit", "10", "--set", "model.width=8"]);
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::copy(other.join("best.safetensors"), run.join("best.safetensors")).unwrap();
    assert_fails_with(&run_eval(&run, "best"), &["best.safetensors", "shape"]);
    std::fs::copy(other.join("last.safetensors"), &last).unwrap();
    let before = snapshot(&run);
    assert_fails_with(&train_tiny(&run, &["--resume", "--epochs", "2"]), &["last.safetensors", "shape"]);
    assert_eq!(snapshot(&run), before);
}

#[test]
fn a_checkpoint_of_an_older_format_is_refused_by_name_and_changes_nothing() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = existing_run(dir.path());
    for name in ["last.safetensors", "best.safetensors"] {
        let path = run.join(name);
        let bytes = std::fs::read(&path).unwrap();
        let format = resnext::runs::checkpoint::FORMAT.as_bytes();
        let at = bytes.windows(format.len()).position(|w| w == format).unwrap();
        let mut older = bytes.clone();
        older[at..at + format.len()].copy_from_slice(b"resnext-rs/1");
        std::fs::write(&path, older).unwrap();
    }
    let before = snapshot(&run);
    let needles = ["format \"resnext-rs/1\"", "older resnext", "reads \"resnext-rs/2\" only"];
    assert_fails_with(
        &train_tiny(&run, &["--resume", "--epochs", "2"]),
        &[&["last.safetensors"][..], &needles].concat(),
    );
    assert_fails_with(&run_eval(&run, "best"), &[&["best.safetensors"][..], &needles].concat());
    assert_eq!(snapshot(&run), before);
}

#[test]
fn a_checkpoint_that_cannot_be_written_is_named_and_the_previous_one_kept() {
    use std::os::unix::process::CommandExt;
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = existing_run(dir.path());
    let last = run.join("last.safetensors");
    let before = std::fs::read(&last).unwrap();
    // The next checkpoint is as large as this one: a file-size limit one byte below it makes
    // the kernel refuse the write part-way (EFBIG), as a full disk would (ENOSPC).
    let limit = before.len() as libc::rlim_t - 1;
    let out = run.display().to_string();
    let mut command = bin();
    command.args(["train", &tiny(), "--out", &out, "--train-limit", "320", "--test-limit", "100", "--device", "cpu"]);
    command.args(["--resume", "--epochs", "2"]);
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            match libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let output = command.output().unwrap();
    let message = format!("cannot write checkpoint {}: File too large (os error 27)", last.display());
    assert_fails_with(
        &output,
        &[&message, "the previous checkpoint is intact: free space and run again with --resume"],
    );
    assert_eq!(std::fs::read(&last).unwrap(), before, "the previous checkpoint is untouched");
    let leftovers: Vec<_> =
        snapshot(&run).into_iter().map(|(name, _)| name).filter(|name| name.ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
    assert_eq!(metrics_rows(&run).len(), 1);
    let output = train_tiny(&run, &["--resume", "--epochs", "2", "--train-limit", "320", "--test-limit", "100"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(metrics_rows(&run).len(), 2);
}

#[test]
fn a_resume_takes_the_same_overrides_again_and_refuses_changed_ones() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = existing_run(dir.path());
    let limits = ["--train-limit", "320", "--test-limit", "100", "--resume", "--epochs", "2"];
    let changed = train_tiny(&run, &[&limits[..], &["--set", "lr_schedule.patience=4"]].concat());
    assert_fails_with(&changed, &["--resume continues", "cannot change it"]);
    assert_fails_with(&train_tiny(&run, &[&limits[..], &["--seed", "7"]].concat()), &["cannot change it"]);
    // tiny.json's own values: a script rerunning its command resumes.
    let same = train_tiny(&run, &[&limits[..], &["--set", "lr_schedule.patience=1", "--seed", "1"]].concat());
    assert!(same.status.success(), "{}", stderr(&same));
    assert_eq!(metrics_rows(&run).len(), 2);
}

fn run_eval(run_dir: &Path, which: &str) -> Output {
    run_resnext(&["eval", &run_dir.display().to_string(), "--checkpoint", which, "--device", "cpu", "--limit", "50"])
}

#[test]
fn a_diverging_run_names_the_epoch_and_step_and_keeps_the_last_good_checkpoint() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let schedule = r#"lr_schedule={"rule": "step", "boundaries": [1], "values": [0.05, 1e30]}"#;
    let output = train_tiny(&run, &["--epochs", "2", "--train-limit", "640", "--test-limit", "100", "--set", schedule]);
    assert_fails_with(&output, &["not finite at epoch 1 step", "last.safetensors"]);
    assert_eq!(checkpoint_state(&run.join("last.safetensors")).epoch, 1, "the epoch-0 checkpoint stays");
    assert_eq!(metrics_rows(&run).len(), 1);
}

/// Tiny deterministic random numbers for the kill moments (no extra crate).
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = run_dir.display().to_string();
    let tiny = tiny();
    let args = [
        "train",
        &tiny,
        "--out",
        &out,
        "--train-limit",
        "960",
        "--test-limit",
        "200",
        "--epochs",
        "4",
        "--device",
        "cpu",
    ];
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for attempt in 0..4 {
        let mut command = bin();
        command.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        if attempt > 0 {
            command.arg("--resume");
        }
        let mut child = command.spawn().unwrap();
        let wait_ms = 300 + next(&mut seed) % 2500;
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        if run_dir.join("metrics.csv").exists() {
            let rows = metrics_rows_allowing_partial(&run_dir);
            eprintln!("attempt {attempt}: killed after {wait_ms} ms with {rows} complete rows");
        }
    }
    let mut finish = bin();
    finish.args(args).arg("--resume");
    let output = finish.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = metrics_rows(&run_dir);
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [0, 1, 2, 3], "every epoch exactly once");
    assert_eq!(checkpoint_state(&run_dir.join("last.safetensors")).epoch, 4);
    assert_events_match_csv(&run_dir);
    let output = run_eval(&run_dir, "last");
    assert!(output.status.success(), "the checkpoint loads: {}", stderr(&output));
}

fn metrics_rows_allowing_partial(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count().saturating_sub(1)
}

/// Serves `body` once over HTTP on a loopback port; returns the URL.
fn serve_once(body: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-10-binary.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

#[test]
fn a_download_with_the_wrong_md5_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("cifar-10-binary.tar.gz");
    let url = serve_once(b"this is not the CIFAR-10 archive".to_vec());
    let err = format!(
        "{:#}",
        resnext::data::download::fetch_checked(&url, &target, resnext::data::download::ARCHIVE_MD5).unwrap_err()
    );
    assert!(err.contains("md5") && err.contains(resnext::data::download::ARCHIVE_MD5), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing is left behind");
}

fn tar_gz(path: &Path, members: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        // set_path refuses "..", so write the raw name the way a hostile archive would.
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn archive_members_outside_the_expected_set_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = TRAIN_FILES.iter().chain([&TEST_FILE, &META_FILE]).copied().collect();
    let good: Vec<(String, &[u8])> =
        names.iter().map(|n| (format!("cifar-10-batches-bin/{n}"), &b"data"[..])).collect();
    let mut members: Vec<(&str, &[u8])> = good.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    members.push(("cifar-10-batches-bin/readme.html", b"extra"));

    let ok = dir.path().join("ok.tar.gz");
    tar_gz(&ok, &members);
    let to = dir.path().join("ok");
    let out = resnext::data::download::extract(&ok, &to).unwrap();
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 7, "only the expected files");
    assert!(!out.join("readme.html").exists());

    members.push(("../escaped.txt", b"evil"));
    let evil = dir.path().join("evil.tar.gz");
    tar_gz(&evil, &members);
    let to = dir.path().join("target");
    let err = format!("{:#}", resnext::data::download::extract(&evil, &to).unwrap_err());
    assert!(err.contains("../escaped.txt") && err.contains("refusing"), "{err}");
    assert!(!dir.path().join("escaped.txt").exists());
    assert!(!to.exists(), "nothing is written from a refused archive");
}
