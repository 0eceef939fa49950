//! Learning-rate rules with Keras's exact semantics: `LearningRateScheduler` (the blog's step
//! schedule) and `ReduceLROnPlateau`.
//!
//! Keras keeps the lr in a float32 variable; we round every lr through f32 the same way, so
//! the values (and the approach to `min_lr`) match Keras 2.2.4 to the last bit.
use crate::config::LrSchedule;
use serde::{Deserialize, Serialize};

/// The rule plus everything it remembers between epochs (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrRule {
    pub schedule: LrSchedule,
    /// The lr in effect now (a float32 value, widened).
    pub lr: f64,
    /// ReduceLROnPlateau's memory: best monitored value (None = +inf), epochs without
    /// improvement, and epochs of cooldown left.
    pub best: Option<f64>,
    pub wait: usize,
    pub cooldown_counter: usize,
}

fn as_f32(x: f64) -> f64 {
    x as f32 as f64
}

impl LrRule {
    /// `initial_lr` is the optimizer's lr; a step schedule replaces it from epoch 0.
    pub fn new(schedule: LrSchedule, initial_lr: f64) -> Self {
        LrRule { schedule, lr: as_f32(initial_lr), best: None, wait: 0, cooldown_counter: 0 }
    }

    /// Called before epoch `epoch` (0-based); returns the lr to train it with.
    pub fn lr_for_epoch(&mut self, epoch: usize) -> f64 {
        if let LrSchedule::Step { boundaries, values } = &self.schedule {
            let k = boundaries.iter().take_while(|&&b| epoch >= b).count();
            self.lr = as_f32(values[k]);
        }
        self.lr
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
            let mut rule = LrRule::new(schedule, case["initial_lr"].as_f64().unwrap());
            let expected = numbers(&case["expected_lr_at_epoch_start"]);
            let states = case["state_after_epoch_end"].as_array().unwrap();
            assert_eq!(rule.lr, expected[0], "{name}: initial lr");
            for (epoch, val_loss) in numbers(&case["val_loss"]).into_iter().enumerate() {
                assert_eq!(rule.lr_for_epoch(epoch), expected[epoch], "{name}: lr during epoch {epoch}");
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
            LrRule::new(LrSchedule::Step { boundaries: vec![100, 200], values: vec![0.01, 0.001, 0.0001] }, 0.1);
        let epochs = reference["epochs"].as_array().unwrap();
        let expected = numbers(&reference["expected_lr_during_epoch"]);
        assert_eq!(epochs.len(), 301);
        for (epoch, want) in epochs.iter().zip(expected) {
            let epoch = epoch.as_u64().unwrap() as usize;
            assert_eq!(rule.lr_for_epoch(epoch), want, "epoch {epoch}");
            assert!(!rule.on_epoch_end(1.0), "a step schedule ignores val_loss");
        }
    }
}
