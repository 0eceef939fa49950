//! `resnext report`: the study's verdict on a results folder (either layout of
//! [`crate::runs::results`]). Per experiment: its runs and seeds, where each run is, and what
//! their test accuracy says (final, mean ± std and min-max over the finished runs; at the best
//! checkpoint; the mean of the last 10 epochs; epochs to 90, 93 and 95%), training time and
//! speed, hardware and precision. Per claim ([`crate::study::claims`]): its verdict and the
//! numbers behind it, by the rule the report states. The figures ([`crate::study::figures`]) are
//! drawn into `figures/` beside the report and linked relatively, so the folder reads the same
//! anywhere. Written as `report.md` (for people and code hosts: [`markdown`]) and `report.json`
//! (the same for programs: [`model`]), and summed up in a few lines on the terminal.
pub mod markdown;
pub mod model;

use crate::atomic_file;
use crate::clock;
use crate::runs::results::{self, ExperimentDirs, RunState};
use crate::study::claims;
use crate::study::curves::XAxis;
use crate::study::figures;
use crate::study::{self, Study};
use anyhow::{bail, ensure, Context, Result};
use model::{distinct, Report, StudyReport};
use std::path::{Path, PathBuf};

/// What `resnext report` is asked to do.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// Results folders (all their experiments), or experiment folders (a run folder, or one
    /// holding `seed-<k>` run folders) reported together.
    pub paths: Vec<PathBuf>,
    /// The Markdown report [default: <results>/report.md for one results folder]; the JSON goes
    /// beside it, the figures into `figures/` beside it.
    pub out: Option<PathBuf>,
    /// The study whose claims are judged and whose comparisons are drawn: a name or a study's
    /// folder [default: the one study that has every experiment found, if one does].
    pub study: Option<String>,
}

const FIGURES: &str = "figures";

/// What `resnext report` wrote.
pub struct Written {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub figures: Vec<PathBuf>,
    pub report: Report,
}

impl Written {
    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let figures_dir = self.markdown.with_file_name(FIGURES);
        markdown::terminal_summary(&self.report, &self.markdown, &self.json, self.figures.len(), &figures_dir)
    }
}

/// The experiments of `paths`: each results folder's, and each experiment folder given
/// directly. Two of the same name are refused (their claims would be ambiguous).
fn find_experiments(paths: &[PathBuf]) -> Result<(Vec<ExperimentDirs>, Vec<&PathBuf>)> {
    let mut found: Vec<ExperimentDirs> = Vec::new();
    let mut roots = Vec::new();
    for path in paths {
        let experiments = match results::experiment_at(path) {
            Some(experiment) => vec![experiment],
            None => {
                ensure!(
                    path.is_dir(),
                    "{} is not a results folder: it does not exist or is not a folder",
                    path.display()
                );
                let experiments = results::experiments(path)?;
                ensure!(
                    !experiments.is_empty(),
                    "{} holds no run: no folder in it is a run folder or holds seed-<k> run folders",
                    path.display()
                );
                roots.push(path);
                experiments
            }
        };
        for experiment in experiments {
            if let Some(same) = found.iter().find(|e| e.name == experiment.name) {
                bail!(
                    "two experiments named {}: {} and {} (report them separately)",
                    experiment.name,
                    same.path.display(),
                    experiment.path.display()
                );
            }
            found.push(experiment);
        }
    }
    Ok((found, roots))
}

/// Reads the experiments, judges the claims, draws the figures, writes both files.
pub fn run(request: &ReportRequest) -> Result<Written> {
    let (found, roots) = find_experiments(&request.paths)?;
    let study = match &request.study {
        Some(reference) => Some(Study::find(reference)?),
        None => Study::holding(&found.iter().map(|e| e.name.clone()).collect::<Vec<_>>())?,
    };
    let (claims, comparisons) = match &study {
        Some(study) => (study.claims.as_slice(), study.comparisons.as_slice()),
        None => (&[][..], &[][..]),
    };
    let markdown = match (&request.out, &request.paths[..]) {
        (Some(out), _) => out.clone(),
        (None, [root]) if roots.len() == 1 => root.join("report.md"),
        (None, _) => {
            bail!("--out is needed to report on experiment folders or several folders: where does report.md go?")
        }
    };
    let experiments: Vec<(String, Vec<RunState>)> = found
        .iter()
        .map(|e| Ok((e.name.clone(), e.runs.iter().map(RunState::load).collect::<Result<Vec<_>>>()?)))
        .collect::<Result<_>>()?;
    let folder = markdown.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let json = markdown.with_extension("json");

    // The figures: each results folder's comparisons (their notes on comparisons without runs
    // here are left out: the report lists what it found), and the experiments given directly
    // drawn together.
    let figures_dir = folder.join(FIGURES);
    let has_epochs =
        |name: &str| experiments.iter().any(|(n, runs)| n == name && runs.iter().any(|r| !r.rows.is_empty()));
    let in_root = |e: &ExperimentDirs, root: &Path| e.path.parent() == Some(root);
    let mut figures = Vec::new();
    for root in &roots {
        if found.iter().any(|e| in_root(e, root) && has_epochs(&e.name)) {
            figures.extend(figures::plot_results(root, comparisons, &figures_dir, XAxis::Epoch)?.figures);
        }
    }
    let direct: Vec<ExperimentDirs> =
        found.iter().filter(|e| !roots.iter().any(|root| in_root(e, root)) && has_epochs(&e.name)).cloned().collect();
    if !direct.is_empty() {
        figures.push(figures::plot_together(&direct, &figures_dir, XAxis::Epoch)?);
    }
    let relative = |file: &Path| format!("{FIGURES}/{}", file.file_name().unwrap_or_default().to_string_lossy());
    let report = Report {
        results: request.paths.iter().map(|p| p.display().to_string()).collect(),
        study: study.as_ref().map(|study| StudyReport {
            name: study.name.clone(),
            origin: study.origin.clone(),
            description: study.description.clone(),
        }),
        written: clock::utc_now(),
        rule: claims::RULE.to_string(),
        seeds: study::SEED_RULE.to_string(),
        experiments: experiments
            .iter()
            .map(|(name, runs)| {
                let drawn_in = figures.iter().filter(|f| f.experiments.contains(name));
                let files = distinct(drawn_in.flat_map(|f| f.files.iter().map(|file| relative(file))));
                model::experiment_report(name, runs, files)
            })
            .collect(),
        claims: claims
            .iter()
            .map(|claim| {
                let runs_of = |name: &str| -> &[RunState] {
                    experiments.iter().find(|(n, _)| n == name).map_or(&[], |(_, runs)| runs.as_slice())
                };
                model::claim_report(claim, claims::judge(&claim.check, runs_of), |name| !runs_of(name).is_empty())
            })
            .collect(),
    };
    atomic_file::write_bytes(&json, "report", serde_json::to_string_pretty(&report)?.as_bytes())?;
    let figure_list: Vec<(String, String)> =
        distinct(figures.iter().flat_map(|f| f.files.iter().map(move |file| (f.title.clone(), relative(file)))));
    atomic_file::write_bytes(&markdown, "report", markdown::to_markdown(&report, &figure_list).as_bytes())?;
    let figures = distinct(figures.into_iter().flat_map(|f| f.files));
    Ok(Written { markdown, json, figures, report })
}
