//! What an experiment's name stands for: `experiments/<name>.json` in the working folder when
//! that file exists, else the config of that name shipped with resnext. The shipped configs (and
//! `comparisons.json`, which runs `plot` draws together, and `claims.json`, which `report`
//! checks) are built into the binary, so `resnext train demo` works from any folder, and a
//! checkout's own `experiments/` still takes precedence.
use crate::config::Experiment;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The folder of the working folder whose configs take precedence over the built-in ones.
pub const FOLDER: &str = "experiments";
const COMPARISONS: &str = "comparisons.json";
const CLAIMS: &str = "claims.json";
/// The files of `experiments/` that are not experiment configs.
const NOT_CONFIGS: [&str; 2] = [COMPARISONS, CLAIMS];

/// The shipped configs by name: the files of `experiments/` when this binary was built.
const BUILT_IN: [(&str, &str); 8] = [
    ("demo", include_str!("../experiments/demo.json")),
    ("demo_fast", include_str!("../experiments/demo_fast.json")),
    ("fast", include_str!("../experiments/fast.json")),
    ("my_resnext", include_str!("../experiments/my_resnext.json")),
    ("my_resnext_lr", include_str!("../experiments/my_resnext_lr.json")),
    ("my_resnext_lr_r", include_str!("../experiments/my_resnext_lr_r.json")),
    ("my_resnext_lr_v2", include_str!("../experiments/my_resnext_lr_v2.json")),
    ("resnext", include_str!("../experiments/resnext.json")),
];
const BUILT_IN_COMPARISONS: &str = include_str!("../experiments/comparisons.json");
const BUILT_IN_CLAIMS: &str = include_str!("../experiments/claims.json");

/// A config's text and where it came from (for error messages).
pub struct Source {
    pub origin: String,
    pub text: String,
}

impl Source {
    /// `file` when one is given, else `built_in` (a lookup as [`comparisons`] and [`claims`] do).
    pub fn file_or(file: Option<&Path>, built_in: fn() -> Result<Source>) -> Result<Source> {
        let Some(path) = file else { return built_in() };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Source { origin: path.display().to_string(), text })
    }
}

/// The experiment `name_or_path` (a name as above, or a path: anything with a `/` or ending in
/// `.json`) with `--set` overrides applied, checked.
pub fn load(name_or_path: &str, overrides: &[String]) -> Result<Experiment> {
    if name_or_path.contains('/') || name_or_path.ends_with(".json") {
        let path = Path::new(name_or_path);
        if !path.is_file() {
            bail!("experiment config {} does not exist", path.display());
        }
        return Experiment::load_file(path, overrides);
    }
    let local = local_path(&format!("{name_or_path}.json"));
    if local.is_file() {
        return Experiment::load_file(&local, overrides);
    }
    match BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
        Some((name, text)) => {
            Experiment::from_json(text, overrides).with_context(|| format!("in the built-in experiment config {name}"))
        }
        None => bail!(
            "no experiment named {name_or_path:?}: {} does not exist and no built-in config has that name (known: {})",
            local.display(),
            names().join(", ")
        ),
    }
}

/// The names of the built-in configs, sorted.
pub fn built_in_names() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|(name, _)| *name)
}

/// Every name [`load`] accepts: the working folder's configs and the built-in ones, sorted.
pub fn names() -> Vec<String> {
    let local = std::fs::read_dir(FOLDER).into_iter().flatten().filter_map(|entry| {
        let name = entry.ok()?.file_name().into_string().ok()?;
        let stem = name.strip_suffix(".json")?;
        (!NOT_CONFIGS.contains(&name.as_str())).then(|| stem.to_string())
    });
    let mut names: Vec<String> = local.chain(built_in_names().map(String::from)).collect();
    names.sort();
    names.dedup();
    names
}

/// The comparisons `plot` draws: `experiments/comparisons.json` in the working folder when it
/// exists, else the built-in one.
pub fn comparisons() -> Result<Source> {
    let local = local_path(COMPARISONS);
    if local.is_file() {
        let text = std::fs::read_to_string(&local).with_context(|| format!("cannot read {}", local.display()))?;
        return Ok(Source { origin: local.display().to_string(), text });
    }
    Ok(Source { origin: format!("the built-in {COMPARISONS}"), text: BUILT_IN_COMPARISONS.to_string() })
}

/// The claims `report` checks: `experiments/claims.json` in the working folder when it exists,
/// else the built-in one.
pub fn claims() -> Result<Source> {
    let local = local_path(CLAIMS);
    if local.is_file() {
        let text = std::fs::read_to_string(&local).with_context(|| format!("cannot read {}", local.display()))?;
        return Ok(Source { origin: local.display().to_string(), text });
    }
    Ok(Source { origin: format!("the built-in {CLAIMS}"), text: BUILT_IN_CLAIMS.to_string() })
}

fn local_path(file: &str) -> PathBuf {
    Path::new(FOLDER).join(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_configs_are_the_files_of_experiments() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join(FOLDER);
        let mut files: Vec<(String, String)> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| !NOT_CONFIGS.contains(&path.file_name().unwrap().to_str().unwrap()))
            .map(|path| {
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        files.sort();
        let built_in: Vec<(String, String)> =
            BUILT_IN.iter().map(|(name, text)| (name.to_string(), text.to_string())).collect();
        assert_eq!(built_in, files, "BUILT_IN must list every file of experiments/, in name order");
        assert_eq!(BUILT_IN_COMPARISONS, std::fs::read_to_string(folder.join(COMPARISONS)).unwrap());
        assert_eq!(BUILT_IN_CLAIMS, std::fs::read_to_string(folder.join(CLAIMS)).unwrap());
        for (name, text) in BUILT_IN {
            let experiment = Experiment::from_json(text, &[]).unwrap();
            assert_eq!(experiment.name, name, "a config's name is its file's");
        }
    }
}
