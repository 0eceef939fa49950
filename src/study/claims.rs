//! A study's claims and their verdicts. A claim is data: an id, a sentence and a check of the
//! runs' test accuracy (each study's `study.json` holds its claims, [`crate::study`]; a user
//! writes their own about their own recipes with the same kinds of check). A verdict reads
//! every run of the experiments a claim names, one number per run, and follows one rule
//! ([`RULE`]), so the same runs always give the same verdict.
use crate::runs::metrics::EpochRow;
use crate::runs::results::{RunState, RunStatus};
use crate::study::stats::{self, Spread, TTest};
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// The significance level of every test.
pub const ALPHA: f64 = 0.05;

/// The verdict rule, as the report states it.
pub const RULE: &str = "Each run gives one number: its final test accuracy (the last epoch's), or for a \
\"reaches\" claim its best test accuracy within the claim's first epochs. The test accuracy is the \
`test_accuracy` column when the run held out a validation split, else `val_accuracy` (the blog's runs \
validate on the test set). A claim needs every run of the experiments it names to be done (finished, or \
past the claim's epochs): otherwise it is **incomplete**, naming the runs still training, stopped or \
failed; an experiment without runs, or with one run only, gives **not enough runs**, with the difference \
one run each shows. With at least two runs on each side, a comparison of two experiments is Welch's \
t-test (two-sided, unequal variances) and a threshold the one-sample t-test, both at the 5% level: the \
claim **holds** when the difference is significant in its direction, **does not hold** when it is \
significant the other way, and is **cannot tell** (within run-to-run spread) otherwise. A \"same as\" \
claim holds when no difference is significant and does not hold when one is; with few runs that is weak \
evidence of sameness, since the test rarely detects a small difference. Runs with no spread at all \
(identical numbers) differ with certainty when their means differ.";

/// A claim about the runs of one or two experiments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// A short name for programs, e.g. `plateau_below_step`.
    pub id: String,
    /// The claim as a sentence.
    pub text: String,
    pub check: Check,
}

/// What a claim says of the experiments' test accuracy (in percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The experiment's final test accuracy is above `percent`.
    EndsAbove { experiment: String, percent: f64 },
    /// Its best test accuracy within its first `within_epochs` epochs is above `percent`.
    Reaches { experiment: String, percent: f64, within_epochs: usize },
    /// Its final test accuracy is above `than`'s.
    Beats { experiment: String, than: String },
    /// Its final test accuracy is below `than`'s.
    EndsBelow { experiment: String, than: String },
    /// Its final test accuracy does not differ from `than`'s beyond run-to-run spread.
    SameAs { experiment: String, than: String },
}

impl Check {
    /// The experiments the check reads: the claim's subject, then the one it is compared with.
    pub fn experiments(&self) -> Vec<&str> {
        match self {
            Check::EndsAbove { experiment, .. } | Check::Reaches { experiment, .. } => vec![experiment],
            Check::Beats { experiment, than }
            | Check::EndsBelow { experiment, than }
            | Check::SameAs { experiment, than } => {
                vec![experiment, than]
            }
        }
    }

    /// The number a run gives, and what it is.
    fn metric(&self) -> &'static str {
        match self {
            Check::Reaches { .. } => "best test accuracy within the claim's epochs (%)",
            _ => "final test accuracy (%)",
        }
    }
}

/// Checks a study's claims: ids unique, percentages in (0, 100], epochs at least 1, a
/// comparison of two different experiments.
pub fn check(claims: &[Claim]) -> Result<()> {
    for (i, claim) in claims.iter().enumerate() {
        let id = &claim.id;
        ensure!(!id.is_empty(), "claims[{i}]: `id` is empty");
        ensure!(claims[..i].iter().all(|other| &other.id != id), "claims[{i}]: the id {id:?} is used twice");
        match &claim.check {
            Check::EndsAbove { percent, .. } | Check::Reaches { percent, .. } => {
                ensure!(
                    *percent > 0.0 && *percent <= 100.0,
                    "claim {id:?}: `check.percent` is a test accuracy in percent, in (0, 100], got {percent}"
                );
            }
            Check::Beats { experiment, than }
            | Check::EndsBelow { experiment, than }
            | Check::SameAs { experiment, than } => {
                ensure!(experiment != than, "claim {id:?}: `check.than` names the claim's own experiment {than:?}");
            }
        }
        if let Check::Reaches { within_epochs, .. } = &claim.check {
            ensure!(*within_epochs >= 1, "claim {id:?}: `check.within_epochs` must be at least 1");
        }
    }
    Ok(())
}

/// A claim's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    DoesNotHold,
    /// The difference is within run-to-run spread.
    CannotTell,
    /// An experiment has no run, or one only.
    NotEnoughRuns,
    /// A run is still training, stopped or failed before the epochs the claim reads, or its test
    /// set was not measured in them.
    Incomplete,
}

impl Verdict {
    /// The verdict in words, for the report.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::CannotTell => "cannot tell",
            Verdict::NotEnoughRuns => "not enough runs",
            Verdict::Incomplete => "runs incomplete",
        }
    }
}

/// One side of a claim: an experiment's runs and the number each gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub experiment: String,
    pub runs: Vec<String>,
    /// Percent, one per run, in the order of `runs`.
    pub values: Vec<f64>,
    pub spread: Spread,
}

impl Side {
    /// A side of at least one run.
    fn new(experiment: &str, runs: Vec<String>, values: Vec<f64>) -> Self {
        let spread = Spread::of(&values).expect("a side has a run");
        Side { experiment: experiment.to_string(), runs, values, spread }
    }

    /// "95.31% ± 0.12 (3 runs)" or "95.31% (1 run)".
    fn describe(&self) -> String {
        match self.spread.std {
            Some(std) => format!("{:.2}% ± {std:.2} ({} runs)", self.spread.mean, self.spread.runs),
            None => format!("{:.2}% (1 run)", self.spread.mean),
        }
    }
}

/// The numbers behind a verdict (absent when runs are missing or incomplete).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Numbers {
    /// What each run's number is.
    pub metric: String,
    pub experiment: Side,
    /// The experiment compared with, for comparisons.
    pub other: Option<Side>,
    /// The threshold in percent, for threshold claims.
    pub threshold: Option<f64>,
    /// In points: the experiment's mean minus the other's, or minus the threshold.
    pub difference: f64,
    /// Welch's t-test (comparisons) or the one-sample t-test (thresholds); `None` with one run
    /// on a side.
    pub test: Option<TTest>,
    pub alpha: f64,
}

/// A claim's verdict, a line saying why, and the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
    pub numbers: Option<Numbers>,
}

/// The verdict of `check` on the runs `runs_of` gives for each experiment name (see [`RULE`]).
pub fn judge<'a>(check: &Check, runs_of: impl Fn(&str) -> &'a [RunState]) -> Judgement {
    let no_numbers = |verdict, reason: String| Judgement { verdict, reason, numbers: None };
    let names = check.experiments();
    if let Some(missing) = names.iter().find(|name| runs_of(name).is_empty()) {
        return no_numbers(Verdict::NotEnoughRuns, format!("no run of {missing}"));
    }
    let within = match check {
        Check::Reaches { within_epochs, .. } => Some(*within_epochs),
        _ => None,
    };
    let pending: Vec<(String, String)> =
        names.iter().flat_map(|name| runs_of(name)).filter_map(|run| not_done(run, within)).collect();
    if !pending.is_empty() {
        // Runs in the same state are named together, so that one error shared by many runs is
        // said once.
        let mut states: Vec<&str> = Vec::new();
        for (_, state) in &pending {
            if !states.contains(&state.as_str()) {
                states.push(state);
            }
        }
        let groups: Vec<String> = states
            .iter()
            .map(|state| {
                let runs: Vec<&str> = pending.iter().filter(|(_, s)| s == state).map(|(run, _)| run.as_str()).collect();
                format!("{}, {state}", runs.join(", "))
            })
            .collect();
        return no_numbers(Verdict::Incomplete, groups.join("; "));
    }
    let unmeasured: Vec<&str> = (names.iter().flat_map(|name| runs_of(name)))
        .filter(|run| run_value(run, within).is_none())
        .map(|run| run.label.as_str())
        .collect();
    if !unmeasured.is_empty() {
        let when =
            within.map_or_else(|| "at its last epoch".to_string(), |epochs| format!("in its first {epochs} epochs"));
        return no_numbers(
            Verdict::Incomplete,
            format!("{}: the test set was not measured {when}", unmeasured.join(", ")),
        );
    }
    let side = |name: &str| {
        let runs = runs_of(name);
        let values = runs.iter().map(|run| 100.0 * run_value(run, within).expect("measured: checked above")).collect();
        Side::new(name, runs.iter().map(|run| run.label.clone()).collect(), values)
    };
    let subject = side(names[0]);
    let other = names.get(1).map(|name| side(name));
    let threshold = match check {
        Check::EndsAbove { percent, .. } | Check::Reaches { percent, .. } => Some(*percent),
        _ => None,
    };
    let difference = subject.spread.mean - other.as_ref().map_or_else(|| threshold.unwrap_or(0.0), |o| o.spread.mean);
    let test = match (&other, threshold) {
        (Some(other), _) => stats::welch(&subject.values, &other.values),
        (None, Some(threshold)) => stats::one_sample(&subject.values, threshold),
        (None, None) => None,
    };
    let against = match (&other, threshold) {
        (Some(other), _) => {
            format!("{} {} vs {} {}", subject.experiment, subject.describe(), other.experiment, other.describe())
        }
        (None, threshold) => {
            format!("{} {} against {}%", subject.experiment, subject.describe(), threshold.unwrap_or(0.0))
        }
    };
    let (verdict, reason) = match test {
        None => {
            let one_each = other.as_ref().is_some_and(|o| o.values.len() == 1) && subject.values.len() == 1;
            let runs = match (&other, one_each) {
                (Some(_), true) => "one run each".to_string(),
                (None, _) => "one run".to_string(),
                (Some(_), false) => "at least two runs a side are needed".to_string(),
            };
            (Verdict::NotEnoughRuns, format!("a difference of {difference:+.2} points, {runs}: {against}"))
        }
        Some(test) => {
            let significant = test.p < ALPHA;
            let verdict = match (check, significant) {
                (Check::SameAs { .. }, false) => Verdict::Holds,
                (Check::SameAs { .. }, true) => Verdict::DoesNotHold,
                (_, false) => Verdict::CannotTell,
                (Check::EndsBelow { .. }, true) if test.t < 0.0 => Verdict::Holds,
                (Check::EndsBelow { .. }, true) => Verdict::DoesNotHold,
                (_, true) if test.t > 0.0 => Verdict::Holds,
                (_, true) => Verdict::DoesNotHold,
            };
            let name = if other.is_some() { "Welch's t" } else { "one-sample t" };
            let p = if significant {
                format!("p = {:.3} < {ALPHA}", test.p)
            } else {
                format!("p = {:.3} ≥ {ALPHA}", test.p)
            };
            (verdict, format!("{against}: {difference:+.2} points, {name} = {:.2} (df {:.1}), {p}", test.t, test.df))
        }
    };
    let numbers = Numbers {
        metric: check.metric().to_string(),
        experiment: subject,
        other,
        threshold,
        difference,
        test,
        alpha: ALPHA,
    };
    Judgement { verdict, reason, numbers: Some(numbers) }
}

/// Why `run` cannot be read yet (`None` when it can): where it is ("a/seed-1 at epoch 2 of 3")
/// and its state ("stopped"). It must be finished, or for a claim about the first `within`
/// epochs have done that many (a run planned shorter is read when finished).
fn not_done(run: &RunState, within: Option<usize>) -> Option<(String, String)> {
    let done = run.rows.len();
    match (within, &run.status) {
        (Some(epochs), _) if done >= epochs => None,
        (_, RunStatus::Finished) => None,
        (_, status) => {
            let planned = run.planned().map_or_else(|| "?".to_string(), |p| p.to_string());
            let what = match status {
                RunStatus::Training { by } => format!("still training ({by})"),
                RunStatus::Stopped => "stopped".to_string(),
                RunStatus::Failed { error } => format!("failed: {error}"),
                RunStatus::Finished => "finished".to_string(),
            };
            Some((format!("{} at epoch {done} of {planned}", run.label), what))
        }
    }
}

/// A done run's number: its last epoch's test accuracy, or its best within the first `within`
/// epochs (of those it was measured after); `None` when the test set was not measured there.
fn run_value(run: &RunState, within: Option<usize>) -> Option<f64> {
    let accuracy = |row: &EpochRow| row.test_accuracy(run.test_set());
    match within {
        Some(epochs) => run.rows.iter().take(epochs).filter_map(accuracy).reduce(f64::max),
        None => run.rows.last().and_then(accuracy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::run_dir::RunDir;
    use crate::testing::tiny_experiment;

    const PLANNED: usize = 3;

    /// A run of `PLANNED` epochs whose last epoch's test accuracy is `last` (earlier epochs lower).
    fn run(label: &str, last: f64, status: RunStatus, epochs: usize) -> RunState {
        let row = |epoch: usize| EpochRow {
            epoch,
            loss: 1.0,
            accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: last - 0.1 * (PLANNED - 1 - epoch) as f64,
            lr: 0.01,
            ce_loss: 1.0,
            val_ce_loss: 1.0,
            epoch_seconds: 1.0,
            images_per_second: 100.0,
            test_loss: None,
            test_accuracy: None,
        };
        RunState {
            label: label.to_string(),
            dir: RunDir::new("/nonexistent"),
            experiment: Some(tiny_experiment(&[&format!("epochs={PLANNED}")])),
            rows: (0..epochs).map(row).collect(),
            status,
        }
    }

    fn finished(name: &str, lasts: &[f64]) -> Vec<RunState> {
        lasts
            .iter()
            .enumerate()
            .map(|(k, &a)| run(&format!("{name}/seed-{k}"), a, RunStatus::Finished, PLANNED))
            .collect()
    }

    fn compare(kind: &str, a: &[RunState], b: &[RunState]) -> Judgement {
        let check: Check =
            serde_json::from_str(&format!(r#"{{"kind": "{kind}", "experiment": "a", "than": "b"}}"#)).unwrap();
        judge(&check, |name| match name {
            "a" => a,
            "b" => b,
            _ => &[],
        })
    }

    fn threshold(check: &str, a: &[RunState]) -> Judgement {
        judge(&serde_json::from_str(check).unwrap(), |name| if name == "a" { a } else { &[] })
    }

    #[test]
    fn a_clear_win_holds_and_the_opposite_claim_does_not() {
        let (a, b) = (finished("a", &[0.60, 0.61, 0.62]), finished("b", &[0.50, 0.51, 0.52]));
        let win = compare("beats", &a, &b);
        assert_eq!(win.verdict, Verdict::Holds, "{}", win.reason);
        let numbers = win.numbers.unwrap();
        assert_eq!(numbers.experiment.values, [60.0, 61.0, 62.0]);
        assert!((numbers.difference - 10.0).abs() < 1e-9, "{numbers:?}");
        assert_eq!(numbers.test, stats::welch(&[60.0, 61.0, 62.0], &[50.0, 51.0, 52.0]));
        assert!(win.reason.contains("+10.00 points") && win.reason.contains("p = 0.000 < 0.05"), "{}", win.reason);
        assert_eq!(compare("ends_below", &a, &b).verdict, Verdict::DoesNotHold);
        assert_eq!(compare("same_as", &a, &b).verdict, Verdict::DoesNotHold);
    }

    #[test]
    fn a_clear_loss_does_not_hold_and_ends_below_holds() {
        let (a, b) = (finished("a", &[0.40, 0.42, 0.41]), finished("b", &[0.50, 0.51, 0.52]));
        assert_eq!(compare("beats", &a, &b).verdict, Verdict::DoesNotHold);
        assert_eq!(compare("ends_below", &a, &b).verdict, Verdict::Holds);
    }

    #[test]
    fn a_difference_within_run_to_run_spread_cannot_be_told_and_same_as_holds() {
        let (a, b) = (finished("a", &[0.55, 0.60, 0.52]), finished("b", &[0.56, 0.58, 0.53]));
        let noise = compare("beats", &a, &b);
        assert_eq!(noise.verdict, Verdict::CannotTell, "{}", noise.reason);
        assert!(noise.reason.contains("≥ 0.05"), "{}", noise.reason);
        assert_eq!(compare("ends_below", &a, &b).verdict, Verdict::CannotTell);
        assert_eq!(compare("same_as", &a, &b).verdict, Verdict::Holds);
    }

    #[test]
    fn one_run_a_side_gives_the_difference_and_no_verdict() {
        let one = compare("beats", &finished("a", &[0.6]), &finished("b", &[0.5]));
        assert_eq!(one.verdict, Verdict::NotEnoughRuns);
        assert!(one.reason.starts_with("a difference of +10.00 points, one run each"), "{}", one.reason);
        assert_eq!(one.numbers.unwrap().test, None);
        let uneven = compare("beats", &finished("a", &[0.6, 0.61]), &finished("b", &[0.5]));
        assert_eq!(uneven.verdict, Verdict::NotEnoughRuns);
        assert!(uneven.reason.contains("at least two runs a side"), "{}", uneven.reason);
        let alone = threshold(r#"{"kind": "ends_above", "experiment": "a", "percent": 50}"#, &finished("a", &[0.6]));
        assert_eq!(alone.verdict, Verdict::NotEnoughRuns);
        assert!(alone.reason.contains("one run"), "{}", alone.reason);
    }

    #[test]
    fn a_missing_experiment_gives_not_enough_runs_naming_it() {
        let missing = compare("beats", &finished("a", &[0.6, 0.61]), &[]);
        assert_eq!(
            (missing.verdict, missing.reason.as_str(), missing.numbers),
            (Verdict::NotEnoughRuns, "no run of b", None)
        );
    }

    #[test]
    fn an_incomplete_run_is_named_and_no_verdict_is_given() {
        let a = finished("a", &[0.6, 0.61]);
        let mut b = finished("b", &[0.5]);
        b.push(run("b/seed-1", 0.3, RunStatus::Training { by: "pid 7 on host".into() }, 1));
        b.push(run("b/seed-2", 0.3, RunStatus::Failed { error: "disk full".into() }, 2));
        b.push(run("b/seed-3", 0.3, RunStatus::Stopped, 0));
        let pending = compare("beats", &a, &b);
        assert_eq!(pending.verdict, Verdict::Incomplete);
        assert_eq!(
            pending.reason,
            "b/seed-1 at epoch 1 of 3, still training (pid 7 on host); b/seed-2 at epoch 2 of 3, \
             failed: disk full; b/seed-3 at epoch 0 of 3, stopped"
        );
        assert_eq!(pending.numbers, None);
        // Runs in one state are named together, the state said once.
        b.push(run("b/seed-4", 0.3, RunStatus::Failed { error: "disk full".into() }, 1));
        assert_eq!(
            compare("beats", &a, &b).reason,
            "b/seed-1 at epoch 1 of 3, still training (pid 7 on host); b/seed-2 at epoch 2 of 3, b/seed-4 at epoch 1 \
             of 3, failed: disk full; b/seed-3 at epoch 0 of 3, stopped"
        );
    }

    #[test]
    fn thresholds_use_the_one_sample_test_and_reaches_reads_the_first_epochs() {
        let check = r#"{"kind": "ends_above", "experiment": "a", "percent": 95}"#;
        assert_eq!(threshold(check, &finished("a", &[0.955, 0.957, 0.956])).verdict, Verdict::Holds);
        assert_eq!(threshold(check, &finished("a", &[0.940, 0.942, 0.941])).verdict, Verdict::DoesNotHold);
        // scipy's ttest_1samp([94.9, 95.3, 95.05, 94.8], 95): p = 0.9157 (src/study/stats.rs).
        let unclear = threshold(check, &finished("a", &[0.949, 0.953, 0.9505, 0.948]));
        assert_eq!(unclear.verdict, Verdict::CannotTell);
        assert!((unclear.numbers.unwrap().test.unwrap().p - 0.9157393309947153).abs() < 1e-9);
        // "reaches 45% within 2 epochs": epoch 2 of each run is 0.1 below its last; a run stopped
        // after 2 of 3 epochs is already done for this claim, one after 1 is not.
        let reaches = r#"{"kind": "reaches", "experiment": "a", "percent": 45, "within_epochs": 2}"#;
        let mut runs = finished("a", &[0.60, 0.62]);
        runs.push(run("a/seed-2", 0.61, RunStatus::Stopped, 2));
        let judged = threshold(reaches, &runs);
        assert_eq!(judged.verdict, Verdict::Holds, "{}", judged.reason);
        let values = judged.numbers.unwrap().experiment.values;
        assert!(values.iter().zip([50.0, 52.0, 51.0]).all(|(v, w)| (v - w).abs() < 1e-9), "{values:?}");
        runs.push(run("a/seed-3", 0.61, RunStatus::Stopped, 1));
        assert_eq!(threshold(reaches, &runs).verdict, Verdict::Incomplete);
    }

    #[test]
    fn a_run_with_a_test_set_of_its_own_is_judged_by_its_test_column() {
        let mut a = finished("a", &[0.9, 0.9]);
        for (run, test) in a.iter_mut().zip([0.40, 0.41]) {
            run.experiment.as_mut().unwrap().validation = 1000;
            run.rows.last_mut().unwrap().test_accuracy = Some(test);
        }
        let judged = compare("ends_below", &a, &finished("b", &[0.50, 0.51]));
        assert_eq!(judged.verdict, Verdict::Holds, "{}", judged.reason);
        // With test_every, the test set may not be measured in the epochs a claim reads: that
        // run is named, and no number is made up for it.
        a[1].rows[0].test_accuracy = Some(0.2);
        let reaches = r#"{"kind": "reaches", "experiment": "a", "percent": 45, "within_epochs": 2}"#;
        let judged = threshold(reaches, &a);
        assert_eq!(judged.verdict, Verdict::Incomplete, "{}", judged.reason);
        assert_eq!(judged.reason, "a/seed-0: the test set was not measured in its first 2 epochs");
        assert!(judged.numbers.is_none());
    }

    /// A claims list as `study.json` holds it, read (naming the field at fault) and checked.
    fn parse(text: &str) -> Result<Vec<Claim>> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Claims {
            claims: Vec<Claim>,
        }
        let claims: Claims = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
            .map_err(|e| anyhow::anyhow!("field `{}`: {}", e.path(), e.inner()))?;
        check(&claims.claims)?;
        Ok(claims.claims)
    }

    #[test]
    fn bad_claims_are_refused_naming_the_field_or_the_claim() {
        let claim = |check: &str| format!(r#"{{"claims": [{{"id": "c", "text": "t", "check": {check}}}]}}"#);
        for (text, needle) in [
            (claim(r#"{"kind": "beats", "experiment": "a", "thn": "b"}"#), "thn"),
            (claim(r#"{"kind": "beats", "experiment": "a"}"#), "than"),
            (claim(r#"{"kind": "wins", "experiment": "a", "than": "b"}"#), "wins"),
            (claim(r#"{"kind": "beats", "experiment": "a", "than": "a"}"#), "own experiment"),
            (claim(r#"{"kind": "ends_above", "experiment": "a", "percent": 0.95}"#).replace("0.95", "195"), "percent"),
            (claim(r#"{"kind": "reaches", "experiment": "a", "percent": 95, "within_epochs": 0}"#), "within_epochs"),
            (r#"{"claims": [], "extra": 1}"#.to_string(), "extra"),
        ] {
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
        let twice = r#"{"claims": [{"id": "c", "text": "t", "check": {"kind": "beats", "experiment": "a", "than": "b"}},
            {"id": "c", "text": "u", "check": {"kind": "beats", "experiment": "b", "than": "a"}}]}"#;
        assert!(format!("{:#}", parse(twice).unwrap_err()).contains("used twice"));
    }
}
