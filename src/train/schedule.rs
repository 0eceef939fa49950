//! Learning-rate rules. The blog's two keep Keras's exact semantics: `LearningRateScheduler`
//! (the step schedule) and `ReduceLROnPlateau`, with the lr rounded through float32 as Keras
//! keeps it in a float32 variable, so the values (and the approach to `min_lr`) match Keras
//! 2.2.4 to the last bit. The per-step rules (cosine, one-cycle) and the linear warmup follow
//! PyTorch's `CosineAnnealingLR`, `OneCycleLR` and `LinearLR` (chained as `SequentialLR`
//! does), in f64, and are tested against values from `torch.optim.lr_scheduler`.
use crate::config::{Anneal, LrSchedule, Warmup};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The rule plus everything it remembers between epochs (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrRule {
    pub schedule: LrSchedule,
    pub warmup: Option<Warmup>,
    /// The optimizer's lr: the per-step rules' base, unrounded.
    pub base_lr: f64,
    /// The epoch rules' lr in effect now (a float32 value, widened).
    pub lr: f64,
    /// ReduceLROnPlateau's memory: best monitored value (None = +inf), epochs without
    /// improvement, and epochs of cooldown left.
    pub best: Option<f64>,
    pub wait: usize,
    pub cooldown_counter: usize,
}

/// Where a step sits in the run: what the per-step rules and the warmup depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub epoch: usize,
    /// The step within the epoch.
    pub step: usize,
    pub steps_per_epoch: usize,
    pub epochs: usize,
}

impl Clock {
    /// Steps done before this one in the whole run.
    pub fn global(&self) -> usize {
        self.epoch * self.steps_per_epoch + self.step
    }

    pub fn total(&self) -> usize {
        self.epochs * self.steps_per_epoch
    }
}

fn as_f32(x: f64) -> f64 {
    x as f32 as f64
}

impl LrRule {
    /// `initial_lr` is the optimizer's lr: a plateau rule's start, the per-step rules' base;
    /// a step schedule replaces it from epoch 0.
    pub fn new(schedule: LrSchedule, warmup: Option<Warmup>, initial_lr: f64) -> Self {
        LrRule {
            schedule,
            warmup,
            base_lr: initial_lr,
            lr: as_f32(initial_lr),
            best: None,
            wait: 0,
            cooldown_counter: 0,
        }
    }

    /// Called before epoch `epoch` (0-based), as Keras's `LearningRateScheduler` is: a step
    /// schedule sets its lr for the epoch.
    pub fn start_epoch(&mut self, epoch: usize) {
        if let LrSchedule::Step { boundaries, values } = &self.schedule {
            let k = boundaries.iter().take_while(|&&b| epoch >= b).count();
            self.lr = as_f32(values[k]);
        }
    }

    /// Steps of the warmup in a run of `steps_per_epoch` steps an epoch (0 without one).
    pub fn warmup_steps(&self, steps_per_epoch: usize) -> usize {
        self.warmup.as_ref().map_or(0, |w| ((w.epochs * steps_per_epoch as f64).round() as usize).max(1))
    }

    /// Whether the rule can run over `epochs` epochs of `steps_per_epoch` steps: a one-cycle
    /// rule needs a step to rise over and one to fall over (PyTorch's `OneCycleLR` divides by
    /// zero otherwise).
    pub fn check_length(&self, steps_per_epoch: usize, epochs: usize) -> anyhow::Result<()> {
        if let LrSchedule::OneCycle { pct_start, .. } = &self.schedule {
            let total = (epochs * steps_per_epoch).saturating_sub(self.warmup_steps(steps_per_epoch)) as f64;
            let up_end = pct_start * total - 1.0;
            anyhow::ensure!(
                up_end > 0.0 && total - 1.0 - up_end > 0.0,
                "field `lr_schedule.pct_start`: {pct_start} of this run's {total} steps of one-cycle ({epochs} epoch(s) of \
                 {steps_per_epoch} step(s), after any warmup) leaves no step to rise or to fall over: it needs \
                 1 < pct_start x steps < steps"
            );
        }
        Ok(())
    }

    /// The lr of the step at `clock` (after `start_epoch` of its epoch).
    pub fn lr(&self, clock: Clock) -> f64 {
        let (t, warmup) = (clock.global(), self.warmup_steps(clock.steps_per_epoch));
        // LinearLR: base * (start + (1 - start) * t / W) for t < W.
        let warm = |lr: f64| match &self.warmup {
            Some(Warmup { start_factor, .. }) if t < warmup => {
                lr * (start_factor + (1.0 - start_factor) * t as f64 / warmup as f64)
            }
            _ => lr,
        };
        // The per-step rules start their own clock when the warmup ends, as SequentialLR does.
        let (t, total) = (t.saturating_sub(warmup), clock.total().saturating_sub(warmup).max(1));
        match &self.schedule {
            LrSchedule::Step { .. } | LrSchedule::ReduceOnPlateau { .. } => warm(self.lr),
            _ if clock.global() < warmup => warm(self.base_lr),
            LrSchedule::Cosine { min_lr } => {
                min_lr + (self.base_lr - min_lr) * (1.0 + (PI * t as f64 / total as f64).cos()) / 2.0
            }
            LrSchedule::OneCycle { pct_start, div_factor, final_div_factor, down } => {
                let (peak, start) = (self.base_lr, self.base_lr / div_factor);
                let end = start / final_div_factor;
                // OneCycleLR's phases, in its float steps and its order of operations: up
                // until step pct_start * total - 1, then down until the last step.
                let linear = |from: f64, to: f64, pct: f64| (to - from) * pct + from;
                let up_end = pct_start * total as f64 - 1.0;
                let t = t as f64;
                if t <= up_end {
                    linear(start, peak, t / up_end)
                } else {
                    let pct = (t - up_end) / (total as f64 - 1.0 - up_end);
                    match down {
                        Anneal::Linear => linear(peak, end, pct),
                        Anneal::Cosine => end + (peak - end) / 2.0 * ((PI * pct).cos() + 1.0),
                    }
                }
            }
        }
    }

    /// Called after each epoch with the monitored value (Keras-style `val_loss`). A new lr
    /// applies from the next epoch. Returns true when the lr changed.
    pub fn on_epoch_end(&mut self, current: f64) -> bool {
        let LrSchedule::ReduceOnPlateau { factor, patience, cooldown, min_delta, min_lr, .. } = self.schedule else {
            return false;
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        let best = self.best.unwrap_or(f64::INFINITY);
        if current < best - min_delta {
            self.best = Some(current);
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= patience {
                let old_lr = self.lr;
                if old_lr > min_lr {
                    self.lr = as_f32((old_lr * factor).max(min_lr));
                    self.cooldown_counter = cooldown;
                    self.wait = 0;
                    return self.lr != old_lr;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{keras_reference, numbers};

    #[test]
    fn reduce_on_plateau_replays_every_keras_case() {
        let reference = keras_reference("reduce_lr_on_plateau.json");
        for case in reference["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let args = &case["resolved_callback_args"];
            let get = |key: &str| args[key].as_f64().unwrap();
            let schedule = LrSchedule::ReduceOnPlateau {
                monitor: "val_loss".into(),
                factor: get("factor"),
                patience: get("patience") as usize,
                cooldown: get("cooldown") as usize,
                min_delta: get("min_delta"),
                min_lr: get("min_lr"),
            };
            let mut rule = LrRule::new(schedule, None, case["initial_lr"].as_f64().unwrap());
            let expected = numbers(&case["expected_lr_at_epoch_start"]);
            let states = case["state_after_epoch_end"].as_array().unwrap();
            assert_eq!(rule.lr, expected[0], "{name}: initial lr");
            for (epoch, val_loss) in numbers(&case["val_loss"]).into_iter().enumerate() {
                rule.start_epoch(epoch);
                assert_eq!(rule.lr, expected[epoch], "{name}: lr during epoch {epoch}");
                rule.on_epoch_end(val_loss);
                let after = expected[epoch + 1];
                assert!(
                    (rule.lr - after).abs() <= 1.2e-7 * after,
                    "{name}: lr after epoch {epoch}: {} vs {after}",
                    rule.lr
                );
                let state = &states[epoch];
                assert_eq!(rule.wait as u64, state["wait"].as_u64().unwrap(), "{name}: wait after epoch {epoch}");
                assert_eq!(
                    rule.cooldown_counter as u64,
                    state["cooldown_counter"].as_u64().unwrap(),
                    "{name}: cooldown after {epoch}"
                );
            }
        }
    }

    #[test]
    fn step_schedule_matches_keras_for_all_301_epochs() {
        let reference = keras_reference("step_schedule.json");
        let mut rule =
            LrRule::new(LrSchedule::Step { boundaries: vec![100, 200], values: vec![0.01, 0.001, 0.0001] }, None, 0.1);
        let epochs = reference["epochs"].as_array().unwrap();
        let expected = numbers(&reference["expected_lr_during_epoch"]);
        assert_eq!(epochs.len(), 301);
        for (epoch, want) in epochs.iter().zip(expected) {
            let epoch = epoch.as_u64().unwrap() as usize;
            rule.start_epoch(epoch);
            assert_eq!(rule.lr, want, "epoch {epoch}");
            assert!(!rule.on_epoch_end(1.0), "a step schedule ignores val_loss");
        }
    }

    fn parse(text: &str) -> LrSchedule {
        serde_json::from_str(text).unwrap()
    }

    fn clock(global: usize, steps_per_epoch: usize, epochs: usize) -> Clock {
        Clock { epoch: global / steps_per_epoch, step: global % steps_per_epoch, steps_per_epoch, epochs }
    }

    #[test]
    fn per_step_rules_match_torch_lr_scheduler_at_every_step() {
        let path = format!("{}/tests/golden/lr_schedules.json", env!("CARGO_MANIFEST_DIR"));
        let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (epochs, steps) =
            (golden["epochs"].as_u64().unwrap() as usize, golden["steps_per_epoch"].as_u64().unwrap() as usize);
        let cases = golden["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let schedule: LrSchedule = serde_json::from_value(case["rule"].clone()).unwrap();
            let warmup: Option<Warmup> = serde_json::from_value(case["warmup"].clone()).unwrap();
            let mut rule = LrRule::new(schedule, warmup, case["lr"].as_f64().unwrap());
            let expected = numbers(&case["lrs"]);
            assert_eq!(expected.len(), epochs * steps);
            for (t, want) in expected.into_iter().enumerate() {
                let at = clock(t, steps, epochs);
                rule.start_epoch(at.epoch);
                let got = rule.lr(at);
                assert!((got - want).abs() <= 1e-9 * want.abs().max(1e-12), "{name}, step {t}: {got} vs torch {want}");
            }
        }
    }

    #[test]
    fn a_one_cycle_rule_too_short_to_rise_is_refused_by_its_field() {
        let one_cycle =
            LrSchedule::OneCycle { pct_start: 0.25, div_factor: 10.0, final_div_factor: 100.0, down: Anneal::Linear };
        let rule = LrRule::new(one_cycle, None, 0.1);
        // 0.25 x 4 steps = 1: the rise would end at step 0, and its slope divide by zero.
        let err = format!("{:#}", rule.check_length(4, 1).unwrap_err());
        assert!(err.contains("field `lr_schedule.pct_start`") && err.contains("4 steps"), "{err}");
        assert!(rule.check_length(10, 1).is_ok() && rule.check_length(1, 5).is_ok());
        assert!(LrRule::new(LrSchedule::Cosine { min_lr: 0.0 }, None, 0.1).check_length(1, 1).is_ok());
    }

    #[test]
    fn one_cycle_with_a_cosine_descent_follows_its_formula() {
        let schedule = parse(
            r#"{"rule": "one_cycle", "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100, "down": "cosine"}"#,
        );
        let rule = LrRule::new(schedule, None, 1.0);
        let lr = |t| rule.lr(clock(t, 100, 4));
        // 400 steps: up for 99 steps from 0.1 to 1, down for 300 to 0.001.
        assert!((lr(0) - 0.1).abs() < 1e-12 && (lr(99) - 1.0).abs() < 1e-12 && (lr(399) - 0.001).abs() < 1e-12);
        assert!((lr(50) - (0.1 + 0.9 * 50.0 / 99.0)).abs() < 1e-12, "linear up");
        assert!((lr(249) - (1.0 + 0.001) / 2.0).abs() < 1e-12, "halfway down a cosine is the mean of its ends");
        let down: Vec<f64> = (99..400).map(lr).collect();
        assert!(down.windows(2).all(|w| w[1] < w[0]), "strictly decreasing");
        // The cosine leaves the peak more slowly than a straight line would.
        assert!(lr(120) > 1.0 - (1.0 - 0.001) * 21.0 / 300.0);
    }

    #[test]
    fn warmup_rises_linearly_in_front_of_the_blog_rules() {
        let step = parse(r#"{"rule": "step", "boundaries": [2], "values": [0.05, 0.01]}"#);
        let mut rule = LrRule::new(step, Some(Warmup { epochs: 0.5, start_factor: 0.2 }), 0.1);
        let mut lrs = vec![];
        for t in 0..40 {
            let at = clock(t, 10, 4);
            rule.start_epoch(at.epoch);
            lrs.push(rule.lr(at));
        }
        let base = 0.05f32 as f64;
        for (t, lr) in lrs.iter().enumerate().take(5) {
            assert!((lr - base * (0.2 + 0.8 * t as f64 / 5.0)).abs() < 1e-15, "warmup step {t}: {lr}");
        }
        assert!(lrs[5..20].iter().all(|&lr| lr == base) && lrs[20..].iter().all(|&lr| lr == 0.01f32 as f64), "{lrs:?}");
        // A plateau rule's lr is the one warmed up, and only its epoch-end rule changes it.
        let plateau = parse(
            r#"{"rule": "reduce_on_plateau", "monitor": "val_loss", "factor": 0.5, "patience": 1, "cooldown": 0,
                "min_delta": 0.0, "min_lr": 0.0}"#,
        );
        let mut rule = LrRule::new(plateau, Some(Warmup { epochs: 1.0, start_factor: 0.0 }), 0.1);
        assert_eq!(rule.lr(clock(0, 10, 4)), 0.0);
        assert!((rule.lr(clock(5, 10, 4)) - (0.1f32 as f64) * 0.5).abs() < 1e-15);
        rule.on_epoch_end(1.0);
        rule.on_epoch_end(1.0);
        assert_eq!(rule.lr(clock(20, 10, 4)), (0.05f32) as f64);
    }
}
