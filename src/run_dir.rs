//! A run folder (`results/<run>/`): where each file lives, and small atomic writes.
use crate::checkpoint;
use crate::config::Experiment;
use crate::metrics;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the data and device were chosen; saved as `run.json` next to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub amp: bool,
}

/// Files of a run folder.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn settings(&self) -> PathBuf {
        self.0.join("run.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join(metrics::FILE)
    }
    pub fn last(&self) -> PathBuf {
        self.0.join(checkpoint::LAST)
    }
    pub fn best(&self) -> PathBuf {
        self.0.join(checkpoint::BEST)
    }
    pub fn holds_run(&self) -> bool {
        self.metrics().exists() || self.last().exists() || self.config().exists()
    }
    pub fn load_experiment(&self) -> Result<Experiment> {
        Experiment::load(&self.config().to_string_lossy(), &[])
    }
    pub fn load_settings(&self) -> Result<RunSettings> {
        let text = std::fs::read_to_string(self.settings())
            .with_context(|| format!("cannot read {}", self.settings().display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is malformed", self.settings().display()))
    }
}

pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
