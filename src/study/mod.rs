//! Studies: a named set of experiment configs, with the claims `resnext report` judges and the
//! comparisons its figures draw, kept in one folder, `experiments/<study>/`: one JSON config per
//! experiment and `study.json` (a description, the claims, the comparisons). The folder's name is
//! the study's. The shipped studies are built into the binary; a folder of the working folder's
//! `experiments/` with a `study.json` is a study too, and takes precedence over a built-in one of
//! the same name. A user's own study is a copied folder with its JSON edited.
//!
//! **Seeds.** Run k of an experiment (`run-all --seeds`, `resnext train --repeat k`) trains with
//! its config's seed + [`SEED_STRIDE`] k ([`Experiment::repeat_seed`]). A study's configs have
//! distinct seeds below the stride (checked when it loads), so no two runs of a study share a
//! seed.
pub mod claims;
pub mod curves;
pub mod figures;
pub mod lookup;
pub mod report;
pub mod stats;

use crate::config::{Experiment, SEED_STRIDE};
use crate::study::claims::Claim;
use anyhow::{bail, ensure, Context, Result};
use include_dir::{include_dir, Dir};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The working folder's folder of studies (and the repository's, built into the binary).
pub const FOLDER: &str = "experiments";
/// A study's own file, beside its configs.
pub const STUDY_FILE: &str = "study.json";
/// How seeds are assigned, as the report states it.
pub const SEED_RULE: &str = "Run k of an experiment (k from 0: `scripts/run-all.sh --seeds N`, `resnext train \
--repeat k`) trains with its config's seed + 1000 k. The configs of a study have distinct seeds below 1000, so \
no two runs of a study share a seed; each run's seed is in its `config.json`.";

static BUILT_IN: Dir = include_dir!("$CARGO_MANIFEST_DIR/experiments");

/// A file's text and where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct Source {
    pub origin: String,
    pub text: String,
}

/// A named set of experiments drawn together in one figure.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub name: String,
    pub title: String,
    pub runs: Vec<String>,
}

/// `study.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    description: String,
    claims: Vec<Claim>,
    comparisons: Vec<Comparison>,
}

/// One experiment of a study: its config, checked, and the file it came from.
#[derive(Debug, Clone)]
pub struct Config {
    pub experiment: Experiment,
    pub source: Source,
}

/// A study, loaded and checked.
#[derive(Debug, Clone)]
pub struct Study {
    pub name: String,
    /// Where it was read from: its folder, or "the built-in study NAME".
    pub origin: String,
    pub description: String,
    /// Its experiments, by name.
    pub configs: Vec<Config>,
    pub claims: Vec<Claim>,
    pub comparisons: Vec<Comparison>,
}

/// Where a study's files are.
enum Folder {
    Local(PathBuf),
    BuiltIn(&'static Dir<'static>),
}

impl Folder {
    /// The study `name`: the working folder's `experiments/<name>/`, else the built-in one.
    fn named(name: &str) -> Option<Folder> {
        let local = Path::new(FOLDER).join(name);
        if local.join(STUDY_FILE).is_file() {
            return Some(Folder::Local(local));
        }
        BUILT_IN.get_dir(name).filter(|dir| dir.get_file(dir.path().join(STUDY_FILE)).is_some()).map(Folder::BuiltIn)
    }

    fn origin(&self, name: &str) -> String {
        match self {
            Folder::Local(path) => path.display().to_string(),
            Folder::BuiltIn(_) => format!("the built-in study {name}"),
        }
    }

    /// Its JSON files, sorted by file name: `study.json` and the configs.
    fn files(&self) -> Result<Vec<(String, Source)>> {
        let mut files = match self {
            Folder::Local(path) => {
                let entries = std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
                let mut files = Vec::new();
                for entry in entries {
                    let path = entry?.path();
                    let Some(file) = path.file_name().and_then(|f| f.to_str()).filter(|f| f.ends_with(".json")) else {
                        continue;
                    };
                    let text =
                        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    files.push((file.to_string(), Source { origin: path.display().to_string(), text }));
                }
                files
            }
            Folder::BuiltIn(dir) => dir
                .files()
                .filter_map(|file| {
                    let name = file.path().file_name()?.to_str()?.to_string();
                    let text = file.contents_utf8()?.to_string();
                    let origin = format!("the built-in {FOLDER}/{}", file.path().display());
                    name.ends_with(".json").then_some((name, Source { origin, text }))
                })
                .collect(),
        };
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }
}

/// The names of every study: the working folder's and the built-in ones, sorted.
pub fn names() -> Vec<String> {
    let local = std::fs::read_dir(FOLDER).into_iter().flatten().filter_map(|entry| {
        let path = entry.ok()?.path();
        path.join(STUDY_FILE).is_file().then(|| path.file_name()?.to_str().map(String::from))?
    });
    let built_in = BUILT_IN.dirs().filter_map(|dir| dir.path().file_name()?.to_str().map(String::from));
    let mut names: Vec<String> = local.chain(built_in).collect();
    names.sort();
    names.dedup();
    names
}

impl Study {
    /// The study `reference`: a name (see the module's doc), or a path to a study's folder
    /// (anything with a `/`).
    pub fn find(reference: &str) -> Result<Study> {
        if reference.contains('/') {
            let path = Path::new(reference);
            ensure!(
                path.join(STUDY_FILE).is_file(),
                "{} is not a study folder: it has no {STUDY_FILE}",
                path.display()
            );
            let name = path.file_name().map_or(reference.to_string(), |n| n.to_string_lossy().to_string());
            return Study::load(&name, &Folder::Local(path.to_path_buf()));
        }
        match Folder::named(reference) {
            Some(folder) => Study::load(reference, &folder),
            None => bail!(
                "no study named {reference:?}: {} does not exist and no built-in study has that name (known: {})",
                Path::new(FOLDER).join(reference).join(STUDY_FILE).display(),
                names().join(", ")
            ),
        }
    }

    /// Reads and checks a study's folder: every config valid, names and seeds distinct (seeds
    /// below [`SEED_STRIDE`]), and every claim and comparison naming experiments of the study.
    fn load(name: &str, folder: &Folder) -> Result<Study> {
        let origin = folder.origin(name);
        let (study_files, config_files): (Vec<_>, Vec<_>) =
            folder.files()?.into_iter().partition(|(file, _)| file == STUDY_FILE);
        let study_file =
            study_files.first().map(|(_, source)| source).with_context(|| format!("{origin} has no {STUDY_FILE}"))?;
        let value: serde_json::Value = serde_json::from_str(&study_file.text)
            .with_context(|| format!("{} is not valid JSON", study_file.origin))?;
        let file: StudyFile = serde_path_to_error::deserialize(value)
            .map_err(|e| anyhow::anyhow!("{}: field `{}`: {}", study_file.origin, e.path(), e.inner()))?;
        claims::check(&file.claims).with_context(|| format!("in {}", study_file.origin))?;
        let mut configs: Vec<Config> = Vec::new();
        for (_, source) in config_files {
            let experiment = Experiment::from_json(&source.text, &[])
                .with_context(|| format!("in experiment config {}", source.origin))?;
            if let Some(other) = configs.iter().find(|c| c.experiment.name == experiment.name) {
                bail!(
                    "{} and {} both have the `name` {:?}: the experiments of a study need names of their own",
                    other.source.origin,
                    source.origin,
                    experiment.name
                );
            }
            ensure!(
                experiment.seed < SEED_STRIDE,
                "{}: field `seed` is {}; the seeds of a study's configs must be below {SEED_STRIDE} (run k trains \
                 with seed + {SEED_STRIDE} k)",
                source.origin,
                experiment.seed
            );
            if let Some(other) = configs.iter().find(|c| c.experiment.seed == experiment.seed) {
                bail!(
                    "{} and {} both have the `seed` {}: each experiment of a study needs a seed of its own, so that \
                     no two runs share one",
                    other.source.origin,
                    source.origin,
                    experiment.seed
                );
            }
            configs.push(Config { experiment, source });
        }
        ensure!(!configs.is_empty(), "{origin} has no experiment config beside its {STUDY_FILE}");
        configs.sort_by(|a, b| a.experiment.name.cmp(&b.experiment.name));
        let study = Study {
            name: name.to_string(),
            origin,
            description: file.description,
            configs,
            claims: file.claims,
            comparisons: file.comparisons,
        };
        study.check_names(&study_file.origin)?;
        Ok(study)
    }

    /// Every experiment a claim or comparison names is one of the study's.
    fn check_names(&self, file: &str) -> Result<()> {
        let named = self.claims.iter().enumerate().flat_map(|(i, claim)| {
            let check = &claim.check;
            let fields = ["experiment", "than"];
            check
                .experiments()
                .into_iter()
                .zip(fields)
                .map(move |(name, field)| (format!("claims[{i}].check.{field}"), name))
        });
        let drawn = self.comparisons.iter().enumerate().flat_map(|(i, comparison)| {
            comparison
                .runs
                .iter()
                .enumerate()
                .map(move |(j, name)| (format!("comparisons[{i}].runs[{j}]"), name.as_str()))
        });
        for (field, name) in named.chain(drawn) {
            ensure!(
                self.config(name).is_some(),
                "{file}: field `{field}` names {name:?}, which is not an experiment of the study {} (its experiments: {})",
                self.name,
                self.experiment_names().join(", ")
            );
        }
        Ok(())
    }

    /// The experiment named `name`, if the study has it.
    pub fn config(&self, name: &str) -> Option<&Config> {
        self.configs.iter().find(|c| c.experiment.name == name)
    }

    pub fn experiment_names(&self) -> Vec<&str> {
        self.configs.iter().map(|c| c.experiment.name.as_str()).collect()
    }

    /// The one study whose experiments include every one of `names` (a results folder's), if
    /// exactly one does; an error names them when several do.
    pub fn holding(names: &[String]) -> Result<Option<Study>> {
        match &names_of_studies_holding(names)?[..] {
            [] => Ok(None),
            [one] => Study::find(one).map(Some),
            several => bail!(
                "the experiments {} are in the studies {}: name one with --study",
                names.join(", "),
                several.join(", ")
            ),
        }
    }
}

/// Every study, a line each: its name, where it is and its experiments.
pub fn list() -> Result<String> {
    let mut out = String::new();
    for name in names() {
        let folder = Folder::named(&name).expect("a listed study exists");
        let experiments: Vec<String> = experiment_names_in(&folder)?.into_iter().map(|(name, _)| name).collect();
        out.push_str(&format!("{name:12} {} ({})\n", experiments.join(", "), folder.origin(&name)));
    }
    out.push_str("resnext study NAME shows one; scripts/run-all.sh --study NAME trains one\n");
    Ok(out)
}

impl Study {
    /// What `resnext study NAME` prints: the description, each experiment with its seed, the
    /// claims and the figures.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "study {} ({})\n{}\n\nexperiments (name, seed, description):\n",
            self.name, self.origin, self.description
        );
        for config in &self.configs {
            let e = &config.experiment;
            out.push_str(&format!("  {} (seed {}): {}\n", e.name, e.seed, e.description));
        }
        out.push_str("claims:\n");
        for claim in &self.claims {
            out.push_str(&format!("  {}: {}\n", claim.id, claim.text));
        }
        out.push_str("figures:\n");
        for comparison in &self.comparisons {
            out.push_str(&format!("  {}: {}\n", comparison.name, comparison.runs.join(", ")));
        }
        out
    }
}

/// The studies whose experiment names include all of `names`, by name. Reads only the `name`
/// of each config, so a broken config elsewhere does not stop the search.
fn names_of_studies_holding(names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for study in self::names() {
        let folder = Folder::named(&study).expect("a listed study exists");
        let experiments = experiment_names_in(&folder)?;
        if names.iter().all(|name| experiments.iter().any(|(n, _)| n == name)) {
            found.push(study);
        }
    }
    Ok(found)
}

/// The `name` of each config in `folder`, with its file. A config that does not parse is an
/// error naming it: skipped, it would turn into "no experiment named ...".
fn experiment_names_in(folder: &Folder) -> Result<Vec<(String, Source)>> {
    (folder.files()?.into_iter().filter(|(file, _)| file != STUDY_FILE))
        .map(|(_, source)| {
            let value: serde_json::Value =
                serde_json::from_str(&source.text).with_context(|| format!("{}: not valid JSON", source.origin))?;
            let name = (value.get("name").and_then(|name| name.as_str()))
                .with_context(|| format!("{}: field `name` is missing or not a string", source.origin))?;
            Ok((name.to_string(), source))
        })
        .collect()
}

/// The config of the experiment `name` and the study it is in, found in every study: an
/// error when none has it, or when several do (it then lists them as `STUDY/NAME`).
pub fn experiment_named(name: &str) -> Result<(String, Source)> {
    let mut found = Vec::new();
    for study in names() {
        let folder = Folder::named(&study).expect("a listed study exists");
        for (experiment, source) in experiment_names_in(&folder)? {
            if experiment == name {
                found.push((study.clone(), source));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no experiment named {name:?} in any study (known: {}); a config file is named by its path (ending in .json)",
            all_experiment_names()?.join(", ")
        ),
        _ => bail!(
            "{name:?} is an experiment of several studies: name one as {}",
            found.iter().map(|(study, _)| format!("{study}/{name}")).collect::<Vec<_>>().join(" or ")
        ),
    }
}

/// Every experiment of every study, as `NAME` (or `STUDY/NAME` where several studies have
/// it), sorted.
pub fn all_experiment_names() -> Result<Vec<String>> {
    let mut all: Vec<(String, String)> = Vec::new();
    for study in names() {
        let folder = Folder::named(&study).expect("a listed study exists");
        all.extend(experiment_names_in(&folder)?.into_iter().map(|(name, _)| (name, study.clone())));
    }
    let mut names: Vec<String> = all
        .iter()
        .map(|(name, study)| match all.iter().filter(|(other, _)| other == name).count() {
            1 => name.clone(),
            _ => format!("{study}/{name}"),
        })
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_study_loads_and_its_configs_are_named_after_their_files() {
        for dir in BUILT_IN.dirs() {
            let name = dir.path().to_str().unwrap();
            let study = Study::load(name, &Folder::BuiltIn(dir)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            for config in &study.configs {
                let file = Path::new(&config.source.origin).file_stem().unwrap().to_str().unwrap();
                assert_eq!(config.experiment.name, file, "in {name}");
            }
        }
        let names: Vec<&str> = BUILT_IN.dirs().map(|d| d.path().to_str().unwrap()).collect();
        assert_eq!(names.len(), BUILT_IN.entries().len(), "experiments/ holds study folders only");
    }

    #[test]
    fn the_built_in_studies_have_distinct_experiment_names() {
        let mut all: Vec<String> = Vec::new();
        for dir in BUILT_IN.dirs() {
            all.extend(experiment_names_in(&Folder::BuiltIn(dir)).unwrap().into_iter().map(|(name, _)| name));
        }
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "a bare name finds one experiment: {all:?}");
    }
}
