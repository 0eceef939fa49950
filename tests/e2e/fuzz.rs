//! Bounded fuzzing: the CIFAR record reader, the config parser and the checkpoint reader
//! return errors, never panic, on arbitrary bytes.
use proptest::prelude::*;
use resnext::config::Experiment;
use resnext::data::{parse_records, RECORD_BYTES};

fn valid_config() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny.json")).unwrap()
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
    }

    #[test]
    fn config_parser_never_panics_on_arbitrary_text(text in ".{0,400}") {
        let _ = Experiment::from_json(&text, &[]);
    }

    #[test]
    fn config_parser_never_panics_on_mutated_configs(position in 0usize..2000, replacement in ".{0,12}", set in "[a-z_.]{0,20}=[-0-9a-z.\\[\\]{}\"]{0,12}") {
        let mut text = valid_config();
        let at = text.char_indices().map(|(i, _)| i).nth(position % text.chars().count()).unwrap_or(0);
        text.replace_range(at..(at + 1).min(text.len()), &replacement);
        let _ = Experiment::from_json(&text, &[]);
        let _ = Experiment::from_json(&valid_config(), &[set]);
    }

    #[test]
    fn checkpoint_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(resnext::checkpoint::Checkpoint::load(&path).is_err() || bytes.len() >= 8);
    }
}
