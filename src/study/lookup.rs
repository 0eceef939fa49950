//! What an experiment reference stands for: a config file's path (anything ending in `.json`),
//! `STUDY/NAME` (the experiment NAME of a study; STUDY a name or a study's folder), or a bare NAME
//! (the experiment of that name in the one study that has it). Studies are found in the working
//! folder's `experiments/` and among the ones built into the binary ([`crate::study`]), so `resnext
//! train demo` works from any folder.
use crate::config::Experiment;
use crate::study::{self, Source, Study};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The experiment `reference` with `--set` overrides applied, checked.
pub fn load(reference: &str, overrides: &[String]) -> Result<Experiment> {
    if reference.ends_with(".json") {
        let path = Path::new(reference);
        if !path.is_file() {
            bail!("experiment config {} does not exist", path.display());
        }
        return Experiment::load_file(path, overrides);
    }
    let source = match reference.rsplit_once('/') {
        Some((study, name)) => {
            let study = Study::find(study)?;
            match study.config(name) {
                Some(config) => config.source.clone(),
                None => bail!(
                    "the study {} has no experiment named {name:?} (its experiments: {})",
                    study.name,
                    study.experiment_names().join(", ")
                ),
            }
        }
        None => study::experiment_named(reference)?.1,
    };
    from_source(&source, overrides)
}

/// A config's text with `--set` overrides applied, checked; errors name its origin.
pub fn from_source(source: &Source, overrides: &[String]) -> Result<Experiment> {
    Experiment::from_json(&source.text, overrides).with_context(|| format!("in experiment config {}", source.origin))
}
