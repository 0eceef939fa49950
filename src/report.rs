//! `resnext report`: the study's verdict on a results folder (either layout of
//! [`crate::results`]). Per experiment: its runs and seeds, where each run is, and what their
//! test accuracy says (final, mean ± std and min-max over the finished runs; at the best
//! checkpoint; the mean of the last 10 epochs; epochs to 90, 93 and 95%), training time and
//! speed, hardware and precision. Per claim ([`crate::claims`]): its verdict and the numbers
//! behind it, by the rule the report states. The figures ([`crate::plot`]) are drawn into
//! `figures/` beside the report and linked relatively, so the folder reads the same anywhere.
//! Written as `report.md` (for people and code hosts) and `report.json` (the same for programs),
//! and summed up in a few lines on the terminal.
use crate::atomic_file;
use crate::claims::{self, Claim, Judgement, Verdict};
use crate::metrics::EpochRow;
use crate::plot::{self, XAxis};
use crate::results::{self, ExperimentDirs, RunState, RunStatus};
use crate::stats;
use crate::study::{self, Study};
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
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

/// The test accuracies (percent) at which the report counts the epochs a run took.
pub const MILESTONES: [f64; 3] = [90.0, 93.0, 95.0];
/// How many last epochs the report averages.
pub const LAST_EPOCHS: usize = 10;
const FIGURES: &str = "figures";

/// Everything the report says, as `report.json` holds it. Accuracies are in percent (100 times
/// the CSV's fractions), epochs are numbered from 1 (as the figures number them).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The folders reported on, as given.
    pub results: Vec<String>,
    /// The study judged: its name and where it was read from (none: no claims, every run in
    /// one figure).
    pub study: Option<StudyReport>,
    /// When the report was written (UTC).
    pub written: String,
    pub rule: String,
    /// How the runs' seeds were assigned.
    pub seeds: String,
    pub experiments: Vec<ExperimentReport>,
    pub claims: Vec<ClaimReport>,
}

/// The study a report judges.
#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub name: String,
    pub origin: String,
    pub description: String,
}

/// One experiment: its runs, their numbers, and the figures it is drawn in.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    pub name: String,
    pub runs: Vec<RunReport>,
    /// Over the finished runs (`None` when none is).
    pub finished_runs: usize,
    pub final_test_accuracy: Option<Spread>,
    pub best_checkpoint_test_accuracy: Option<Spread>,
    pub last_epochs_test_accuracy: Option<Spread>,
    /// Relative to the report's folder.
    pub figures: Vec<String>,
}

/// Mean, sample standard deviation (`None` for one run), lowest and highest of a few runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub std: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Self> {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!values.is_empty()).then(|| Spread {
            mean: stats::mean(values),
            std: stats::std_dev(values),
            min,
            max,
            runs: values.len(),
        })
    }

    /// "95.31% ± 0.12 (95.20-95.45)", or "95.31%" for one run.
    fn describe(&self) -> String {
        match self.std {
            Some(std) => format!("{:.2}% ± {std:.2} ({:.2}–{:.2})", self.mean, self.min, self.max),
            None => format!("{:.2}%", self.mean),
        }
    }
}

/// One run as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `demo`, or `demo/seed-1`.
    pub label: String,
    pub path: String,
    pub seed: Option<u64>,
    /// finished, training, stopped or failed.
    pub status: &'static str,
    /// Who trains it, or its error.
    pub detail: Option<String>,
    pub epochs_done: usize,
    pub epochs_planned: Option<usize>,
    /// Training images held out as validation data (0: the test set is the validation data).
    pub validation: Option<usize>,
    pub precision: Option<&'static str>,
    /// Where it trained (`hardware.txt`; empty for runs from before it was written).
    pub hardware: Vec<String>,
    pub final_test_accuracy: Option<f64>,
    /// The best checkpoint's epoch (the highest `val_accuracy`) and its test accuracy.
    pub best_checkpoint: Option<BestCheckpoint>,
    pub last_epochs_test_accuracy: Option<f64>,
    /// The first epoch at or above each of [`MILESTONES`] ("90", "93", "95").
    pub epochs_to_reach: BTreeMap<String, Option<usize>>,
    /// Training and evaluation, all epochs (the sum of `epoch_seconds`).
    pub seconds: f64,
    /// Training images per second, the mean of its epochs'.
    pub images_per_second: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BestCheckpoint {
    pub epoch: usize,
    /// `None` when the test set was not measured after that epoch (config `test_every`).
    pub test_accuracy: Option<f64>,
}

/// A claim, its verdict and the numbers behind it.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimReport {
    pub id: String,
    pub text: String,
    pub verdict: Verdict,
    pub reason: String,
    pub numbers: Option<claims::Numbers>,
    /// Whether any experiment it names has a run here (a report lists the others apart).
    pub checked_here: bool,
}

/// What `resnext report` wrote.
pub struct Written {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub figures: Vec<PathBuf>,
    pub report: Report,
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
    let mut figures = Vec::new();
    for root in &roots {
        if results::experiments(root)?.iter().any(|e| has_epochs(&e.name)) {
            figures.extend(plot::plot_results(root, comparisons, &figures_dir, XAxis::Epoch)?.figures);
        }
    }
    let direct: Vec<ExperimentDirs> = found
        .iter()
        .filter(|e| !roots.iter().any(|root| e.path.parent() == Some(root.as_path())) && has_epochs(&e.name))
        .cloned()
        .collect();
    if !direct.is_empty() {
        figures.push(plot::plot_together(&direct, &figures_dir, XAxis::Epoch)?);
    }
    let relative = |file: &Path| format!("{FIGURES}/{}", file.file_name().unwrap_or_default().to_string_lossy());
    let report = Report {
        results: request.paths.iter().map(|p| p.display().to_string()).collect(),
        study: study.as_ref().map(|study| StudyReport {
            name: study.name.clone(),
            origin: study.origin.clone(),
            description: study.description.clone(),
        }),
        written: utc_now(),
        rule: claims::RULE.to_string(),
        seeds: study::SEED_RULE.to_string(),
        experiments: experiments
            .iter()
            .map(|(name, runs)| {
                let drawn_in = figures.iter().filter(|f| f.experiments.contains(name));
                let files = distinct(drawn_in.flat_map(|f| f.files.iter().map(|file| relative(file))));
                experiment_report(name, runs, files)
            })
            .collect(),
        claims: claims
            .iter()
            .map(|claim| {
                let runs_of = |name: &str| -> &[RunState] {
                    experiments.iter().find(|(n, _)| n == name).map_or(&[], |(_, runs)| runs.as_slice())
                };
                claim_report(claim, claims::judge(&claim.check, runs_of), |name| !runs_of(name).is_empty())
            })
            .collect(),
    };
    atomic_file::write_bytes(&json, "report", serde_json::to_string_pretty(&report)?.as_bytes())?;
    let figure_list: Vec<(String, String)> =
        distinct(figures.iter().flat_map(|f| f.files.iter().map(move |file| (f.title.clone(), relative(file)))));
    atomic_file::write_bytes(&markdown, "report", to_markdown(&report, &figure_list).as_bytes())?;
    let figures = distinct(figures.into_iter().flat_map(|f| f.files));
    Ok(Written { markdown, json, figures, report })
}

fn claim_report(claim: &Claim, judgement: Judgement, has_runs: impl Fn(&str) -> bool) -> ClaimReport {
    ClaimReport {
        id: claim.id.clone(),
        text: claim.text.clone(),
        verdict: judgement.verdict,
        reason: judgement.reason,
        numbers: judgement.numbers,
        checked_here: claim.check.experiments().iter().any(|name| has_runs(name)),
    }
}

fn experiment_report(name: &str, runs: &[RunState], figures: Vec<String>) -> ExperimentReport {
    let runs: Vec<RunReport> = runs.iter().map(run_report).collect();
    let finished: Vec<&RunReport> = runs.iter().filter(|r| r.status == RunStatus::Finished.label()).collect();
    let spread = |value: fn(&RunReport) -> Option<f64>| {
        Spread::of(&finished.iter().filter_map(|r| value(r)).collect::<Vec<_>>())
    };
    ExperimentReport {
        name: name.to_string(),
        finished_runs: finished.len(),
        final_test_accuracy: spread(|r| r.final_test_accuracy),
        best_checkpoint_test_accuracy: spread(|r| r.best_checkpoint.and_then(|b| b.test_accuracy)),
        last_epochs_test_accuracy: spread(|r| r.last_epochs_test_accuracy),
        runs,
        figures,
    }
}

fn run_report(run: &RunState) -> RunReport {
    let rows = &run.rows;
    let percent = |row: &EpochRow| row.test_accuracy(run.test_set()).map(|accuracy| 100.0 * accuracy);
    // The best checkpoint is the first epoch with the highest val_accuracy (train::record keeps
    // a later epoch only when it is strictly better).
    let best = rows.iter().fold(None::<&EpochRow>, |best, row| match best {
        Some(b) if b.val_accuracy >= row.val_accuracy => Some(b),
        _ => Some(row),
    });
    let last: Vec<f64> = rows.iter().rev().take(LAST_EPOCHS).filter_map(percent).collect();
    let epochs_to_reach = MILESTONES
        .iter()
        .map(|&m| (format!("{m:.0}"), rows.iter().position(|row| percent(row) >= Some(m)).map(|i| i + 1)))
        .collect();
    let detail = match &run.status {
        RunStatus::Training { by } => Some(by.clone()),
        RunStatus::Failed { error } => Some(error.clone()),
        _ => None,
    };
    let speeds: Vec<f64> = rows.iter().map(|r| r.images_per_second).collect();
    RunReport {
        label: run.label.clone(),
        path: run.dir.path().display().to_string(),
        seed: run.experiment.as_ref().map(|e| e.seed),
        status: run.status.label(),
        detail,
        epochs_done: rows.len(),
        epochs_planned: run.planned(),
        validation: run.experiment.as_ref().map(|e| e.validation),
        precision: run.experiment.as_ref().map(|e| e.precision.name()),
        hardware: run.dir.load_hardware(),
        final_test_accuracy: rows.last().and_then(percent),
        best_checkpoint: best.map(|b| BestCheckpoint { epoch: b.epoch + 1, test_accuracy: percent(b) }),
        last_epochs_test_accuracy: (!last.is_empty()).then(|| stats::mean(&last)),
        epochs_to_reach,
        seconds: rows.iter().map(|r| r.epoch_seconds).sum(),
        images_per_second: (!speeds.is_empty()).then(|| stats::mean(&speeds)),
    }
}

/// Text in a Markdown table cell: no pipes or line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "–".to_string())
}

/// "1h02m", "3m05s", "12s".
fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Distinct values, in their first order.
fn distinct<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

/// "finished", "2 finished, 1 training", ...
fn statuses(runs: &[RunReport]) -> String {
    let labels = distinct(runs.iter().map(|r| r.status));
    let counts: Vec<String> = labels
        .iter()
        .map(|l| (l, runs.iter().filter(|r| r.status == *l).count()))
        .map(|(l, n)| format!("{n} {l}"))
        .collect();
    counts.join(", ")
}

fn to_markdown(report: &Report, figures: &[(String, String)]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let folders: Vec<String> = report.results.iter().map(|r| format!("`{r}`")).collect();
    let _ = writeln!(w, "# Report of {}\n", folders.join(", "));
    let _ = writeln!(
        w,
        "Written by `resnext report` on {}. Accuracies are test-set accuracies in percent: the `test_accuracy` \
         column of runs that held out a validation split (config `validation`), else `val_accuracy` (the blog's \
         runs validate on the test set, and their best checkpoint is chosen on it). Epochs are numbered from 1. \
         The same numbers are in `report.json` beside this file.\n",
        report.written
    );

    match &report.study {
        Some(study) => {
            let _ = writeln!(w, "**Study `{}`** ({}): {}\n", study.name, study.origin, cell(&study.description));
        }
        None => {
            let _ = writeln!(w, "No study has every experiment here: no claims are judged (`--study` names one).\n");
        }
    }
    let _ = writeln!(w, "## Claims\n");
    let (checked, unchecked): (Vec<&ClaimReport>, Vec<&ClaimReport>) =
        report.claims.iter().partition(|c| c.checked_here);
    if checked.is_empty() {
        let _ = writeln!(w, "No claim names an experiment that has a run here.\n");
    } else {
        let _ = writeln!(w, "| claim | verdict | the numbers |\n|---|---|---|");
        for claim in &checked {
            let _ = writeln!(
                w,
                "| `{}`: {} | **{}** | {} |",
                claim.id,
                cell(&claim.text),
                claim.verdict.words(),
                cell(&claim.reason)
            );
        }
        let _ = writeln!(w);
    }
    if !unchecked.is_empty() {
        let ids: Vec<String> = unchecked.iter().map(|c| format!("`{}`", c.id)).collect();
        let _ = writeln!(w, "Not checked here, no experiment they name has a run: {}.\n", ids.join(", "));
    }
    let _ = writeln!(w, "**The verdict rule.** {}\n", report.rule);
    let _ = writeln!(w, "**Seeds.** {}\n", report.seeds);

    let _ = writeln!(w, "## Experiments\n");
    let _ = writeln!(
        w,
        "Final, at the best checkpoint and last {LAST_EPOCHS} epochs: mean ± standard deviation (lowest–highest) \
         over the finished runs.\n"
    );
    let _ = writeln!(
        w,
        "| experiment | runs (seeds) | status | epochs done | final test accuracy | at best checkpoint | last {LAST_EPOCHS} \
         epochs |\n|---|---|---|---|---|---|---|"
    );
    for e in &report.experiments {
        let seeds: Vec<String> = e.runs.iter().map(|r| r.seed.map_or("?".into(), |s| s.to_string())).collect();
        let epochs: Vec<String> = e
            .runs
            .iter()
            .map(|r| format!("{} of {}", r.epochs_done, r.epochs_planned.map_or("?".into(), |p| p.to_string())))
            .collect();
        let epochs = distinct(epochs).join(", ");
        let _ = writeln!(
            w,
            "| {} | {} ({}) | {} | {} | {} | {} | {} |",
            e.name,
            e.runs.len(),
            seeds.join(", "),
            statuses(&e.runs),
            epochs,
            or_dash(e.final_test_accuracy.map(|s| s.describe())),
            or_dash(e.best_checkpoint_test_accuracy.map(|s| s.describe())),
            or_dash(e.last_epochs_test_accuracy.map(|s| s.describe())),
        );
    }
    let _ = writeln!(w);
    for e in &report.experiments {
        experiment_section(w, e);
    }
    if !figures.is_empty() {
        let _ = writeln!(w, "## Figures\n");
        for (title, file) in figures {
            let _ = writeln!(w, "![{} ({})]({file})\n", cell(title), file.trim_start_matches("figures/"));
        }
    }
    md
}

fn experiment_section(w: &mut String, e: &ExperimentReport) {
    let _ = writeln!(w, "### {}\n", e.name);
    let milestones: Vec<String> = MILESTONES.iter().map(|m| format!("{m:.0}%")).collect();
    let _ = writeln!(
        w,
        "| run | seed | status | epochs | final | best checkpoint (epoch) | last {LAST_EPOCHS} | epochs to {} | time | \
         images/s |\n|---|---|---|---|---|---|---|---|---|---|",
        milestones.join(" / ")
    );
    for r in &e.runs {
        let status = match &r.detail {
            Some(detail) => format!("{}: {}", r.status, cell(detail)),
            None => r.status.to_string(),
        };
        let reach: Vec<String> = r.epochs_to_reach.values().map(|e| or_dash(e.map(|e| e.to_string()))).collect();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} of {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.seed.map_or("?".into(), |s| s.to_string()),
            status,
            r.epochs_done,
            r.epochs_planned.map_or("?".into(), |p| p.to_string()),
            or_dash(r.final_test_accuracy.map(|a| format!("{a:.2}%"))),
            or_dash(r.best_checkpoint.map(|b| match b.test_accuracy {
                Some(accuracy) => format!("{accuracy:.2}% ({})", b.epoch),
                None => format!("test not measured ({})", b.epoch),
            })),
            or_dash(r.last_epochs_test_accuracy.map(|a| format!("{a:.2}%"))),
            reach.join(" / "),
            duration(r.seconds),
            or_dash(r.images_per_second.map(|s| format!("{s:.0}"))),
        );
    }
    let _ = writeln!(w);
    let validation: Vec<String> = distinct(e.runs.iter().filter_map(|r| r.validation))
        .iter()
        .map(|&n| match n {
            0 => "the test set (config `validation` 0, as in the blog)".to_string(),
            n => format!(
                "the last {n} training images (config `validation` {n}); the test set is read by nothing in training"
            ),
        })
        .collect();
    if !validation.is_empty() {
        let _ = writeln!(w, "- Validation data: {}.", validation.join("; "));
    }
    let precision = distinct(e.runs.iter().filter_map(|r| r.precision));
    if !precision.is_empty() {
        let _ = writeln!(w, "- Precision: {}.", precision.join(", "));
    }
    let hardware = distinct(e.runs.iter().flat_map(|r| r.hardware.iter().cloned()));
    match hardware.is_empty() {
        true => {
            let _ = writeln!(w, "- Hardware: not recorded (runs from before `hardware.txt`).");
        }
        false => {
            let _ = writeln!(
                w,
                "- Hardware: {}.",
                hardware.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join("; ")
            );
        }
    }
    let seeds: Vec<u64> = e.runs.iter().filter_map(|r| r.seed).collect();
    if distinct(seeds.iter()).len() < seeds.len() {
        let _ = writeln!(w, "- Note: some runs share a seed: they repeat one another rather than sample the spread.");
    }
    if !e.figures.is_empty() {
        let links: Vec<String> =
            e.figures.iter().map(|f| format!("[{}]({f})", f.trim_start_matches("figures/"))).collect();
        let _ = writeln!(w, "- Figures: {}.", links.join(", "));
    }
    let _ = writeln!(w);
}

/// A few lines for the terminal: each experiment, each claim checked here, the files.
pub fn summary(written: &Written) -> String {
    let report = &written.report;
    let mut out = String::new();
    let width = report.experiments.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &report.experiments {
        let final_accuracy = e.final_test_accuracy.map_or("no finished run".to_string(), |s| {
            let std = s.std.map_or(String::new(), |std| format!(" ± {std:.2}"));
            format!("final test accuracy {:.2}%{std}", s.mean)
        });
        let _ = writeln!(out, "{:width$}  {} run(s), {}: {final_accuracy}", e.name, e.runs.len(), statuses(&e.runs));
    }
    let checked: Vec<&ClaimReport> = report.claims.iter().filter(|c| c.checked_here).collect();
    for claim in &checked {
        let _ = writeln!(out, "{:<16} {}: {}", claim.verdict.words(), claim.id, claim.reason);
    }
    let unchecked = report.claims.len() - checked.len();
    if unchecked > 0 {
        let _ = writeln!(out, "({unchecked} claim(s) not checked: no experiment they name has a run here)");
    }
    let figures = match written.figures.len() {
        0 => String::new(),
        n => format!(" and {n} figure(s) in {}", written.markdown.with_file_name(FIGURES).display()),
    };
    let _ = write!(out, "wrote {} and {}{figures}", written.markdown.display(), written.json.display());
    out
}

/// Now as "2026-12-02 17:40 UTC".
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc(seconds)
}

/// Unix seconds as "YYYY-MM-DD HH:MM UTC" (the civil calendar from days since 1970, by Howard
/// Hinnant's `civil_from_days`).
fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let minutes = seconds % 86_400 / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        // From Python's datetime.fromtimestamp(s, UTC).
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_872_461), "2000-03-01 01:01 UTC");
        assert_eq!(utc(1_796_290_000), "2026-12-03 09:26 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00 UTC");
    }

    #[test]
    fn a_spread_and_a_duration_read_as_the_report_prints_them() {
        let spread = Spread::of(&[95.2, 95.4, 95.6]).unwrap();
        assert_eq!(spread.describe(), "95.40% ± 0.20 (95.20–95.60)");
        assert_eq!(Spread::of(&[31.0]).unwrap().describe(), "31.00%");
        assert_eq!(Spread::of(&[]), None);
        assert_eq!((duration(12.4), duration(185.0), duration(3725.0)), ("12s".into(), "3m05s".into(), "1h02m".into()));
        assert_eq!(cell("a | b\nc"), "a \\| b c");
    }
}
