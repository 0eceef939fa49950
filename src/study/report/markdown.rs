//! The report as people read it: `report.md` (Markdown tables that read on a code host, figures
//! linked relatively) and a few lines for the terminal.
use crate::study::report::model::{
    distinct, ClaimReport, ExperimentReport, Report, RunReport, LAST_EPOCHS, MILESTONES,
};
use crate::study::stats::Spread;
use std::fmt::Write as _;
use std::path::Path;

/// A spread as the report prints it: "95.31% ± 0.12 (95.20–95.45)", or "95.31%" for one run.
fn describe(spread: &Spread) -> String {
    match spread.std {
        Some(std) => format!("{:.2}% ± {std:.2} ({:.2}–{:.2})", spread.mean, spread.min, spread.max),
        None => format!("{:.2}%", spread.mean),
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

pub fn to_markdown(report: &Report, figures: &[(String, String)]) -> String {
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
            or_dash(e.final_test_accuracy.map(|s| describe(&s))),
            or_dash(e.best_checkpoint_test_accuracy.map(|s| describe(&s))),
            or_dash(e.last_epochs_test_accuracy.map(|s| describe(&s))),
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

/// A few lines for the terminal: each experiment, each claim checked here, the files written
/// (`markdown`, `json` and `figures` in `figures_dir`).
pub fn terminal_summary(report: &Report, markdown: &Path, json: &Path, figures: usize, figures_dir: &Path) -> String {
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
    let figures = match figures {
        0 => String::new(),
        n => format!(" and {n} figure(s) in {}", figures_dir.display()),
    };
    let _ = write!(out, "wrote {} and {}{figures}", markdown.display(), json.display());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_and_a_duration_read_as_the_report_prints_them() {
        let spread = describe(&Spread::of(&[95.2, 95.4, 95.6]).unwrap());
        assert_eq!(spread, "95.40% ± 0.20 (95.20–95.60)");
        assert_eq!(describe(&Spread::of(&[31.0]).unwrap()), "31.00%");
        assert_eq!(Spread::of(&[]), None);
        assert_eq!((duration(12.4), duration(185.0), duration(3725.0)), ("12s".into(), "3m05s".into(), "1h02m".into()));
        assert_eq!(cell("a | b\nc"), "a \\| b c");
    }
}
