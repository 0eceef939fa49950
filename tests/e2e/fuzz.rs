//! Bounded fuzzing of every reader of a file a user hands us: CIFAR-10 batch files, experiment
//! configs (and `--set`), checkpoints, metrics.csv and TensorBoard event files. For every input
//! each returns a value that holds what its format promises, or an error that names the file
//! (or the `--set` / field at fault); none panics.
use proptest::prelude::*;
use resnext::config::Experiment;
use resnext::data::{parse_records, read_batches, RECORD_BYTES};
use resnext::runs::checkpoint::Checkpoint;
use resnext::runs::{event_log, metrics};
use std::path::{Path, PathBuf};

fn valid_config() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny.json")).unwrap()
}

/// Writes `bytes` to `name` in a fresh folder; the folder lives as long as the returned guard.
fn file_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn names(error: &anyhow::Error, path: &Path) -> bool {
    format!("{error:#}").contains(&path.display().to_string())
}

/// A config that parsed: its values pass validation and it survives a round trip.
fn holds(experiment: &Experiment) -> Result<(), TestCaseError> {
    prop_assert!(experiment.validate().is_ok());
    let again = Experiment::from_json(&experiment.to_pretty_json(), &[]).ok();
    prop_assert_eq!(again.as_ref(), Some(experiment));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn record_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3 * RECORD_BYTES + 7)) {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        match parse_records(&bytes, &mut images, &mut labels) {
            Ok(()) => {
                prop_assert_eq!(bytes.len() % RECORD_BYTES, 0);
                prop_assert!(labels.iter().all(|&l| l <= 9));
                prop_assert_eq!(images.len(), labels.len() * (RECORD_BYTES - 1));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // A batch file holds exactly 10,000 records: anything shorter is refused by name.
        let (_dir, path) = file_with("data_batch_1.bin", &bytes);
        let error = read_batches(std::slice::from_ref(&path)).err();
        prop_assert!(error.as_ref().is_some_and(|e| names(e, &path)), "{:?}", error);
    }

    #[test]
    fn config_parser_never_panics_on_arbitrary_text(text in ".{0,400}") {
        let (_dir, path) = file_with("x.json", text.as_bytes());
        match Experiment::load_file(&path, &[]) {
            Ok(experiment) => holds(&experiment)?,
            Err(error) => prop_assert!(names(&error, &path), "{error:#}"),
        }
    }

    #[test]
    fn config_parser_never_panics_on_mutated_configs(position in 0usize..2000, replacement in ".{0,12}", set in "[a-z_.]{0,20}=[-0-9a-z.\\[\\]{}\"]{0,12}") {
        let mut text = valid_config();
        let at = text.char_indices().map(|(i, _)| i).nth(position % text.chars().count()).unwrap_or(0);
        text.replace_range(at..(at + 1).min(text.len()), &replacement);
        let (_dir, path) = file_with("mutated.json", text.as_bytes());
        match Experiment::load_file(&path, &[]) {
            Ok(experiment) => holds(&experiment)?,
            Err(error) => prop_assert!(names(&error, &path), "{error:#}"),
        }
        match Experiment::from_json(&valid_config(), std::slice::from_ref(&set)) {
            Ok(experiment) => holds(&experiment)?,
            Err(error) => {
                let message = format!("{error:#}");
                prop_assert!(message.contains("--set") || message.contains("field `"), "{set}: {message}");
            }
        }
    }

    #[test]
    fn checkpoint_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (_dir, path) = file_with("last.safetensors", &bytes);
        let error = Checkpoint::load(&path).err();
        prop_assert!(error.as_ref().is_some_and(|e| names(e, &path)), "{:?}", error);
    }

    #[test]
    fn metrics_and_event_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), text in "[0-9a-z_.,\n-]{0,200}") {
        let (_dir, csv) = file_with("metrics.csv", format!("{}\n{text}", metrics::HEADER.join(",")).as_bytes());
        if let Err(error) = metrics::read(&csv) {
            prop_assert!(names(&error, &csv), "{error:#}");
        }
        let (_dir, events) = file_with("events.out.tfevents.1.host.resnext", &bytes);
        match event_log::read(&events) {
            Ok(file) => prop_assert!(file.truncated_at.is_none_or(|at| at <= bytes.len() as u64)),
            Err(error) => prop_assert!(names(&error, &events), "{error:#}"),
        }
    }
}
