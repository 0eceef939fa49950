//! The epoch's per-step record of losses and correct predictions, kept on the device: reading
//! it is a host sync, which the training loop does only every few steps.
use crate::batches::EpochPlan;
use crate::checkpoint::EpochSums;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub struct StepLog {
    /// Per step: loss with L2, cross-entropy, correct predictions, each summed over the batch.
    loss: Tensor,
    ce: Tensor,
    correct: Tensor,
    /// Sums of the steps done before this process took over the epoch (after a resume).
    before: EpochSums,
    first_step: usize,
    images_before: usize,
    started: Instant,
}

impl StepLog {
    /// A log for the steps of `plan` from `first_step` on; `before` sums the earlier ones.
    pub fn new(plan: &EpochPlan, first_step: usize, before: &EpochSums, device: Device) -> Self {
        let zeros = || Tensor::zeros([plan.steps as i64], (Kind::Double, device));
        StepLog {
            loss: zeros(),
            ce: zeros(),
            correct: zeros(),
            before: before.clone(),
            first_step,
            images_before: plan.images_until(first_step),
            started: Instant::now(),
        }
    }

    pub fn record(&self, step: usize, ce: &Tensor, penalty: &Tensor, logits: &Tensor, labels: &Tensor) {
        let batch = labels.size()[0] as f64;
        let step = step as i64;
        tch::no_grad(|| {
            let ce = ce.to_kind(Kind::Double) * batch;
            self.loss.get(step).copy_(&(&ce + penalty.to_kind(Kind::Double) * batch));
            self.ce.get(step).copy_(&ce);
            self.correct.get(step).copy_(&logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Double));
        });
    }

    /// The first step in `from..to` whose loss is NaN or infinite.
    pub fn first_non_finite(&self, from: usize, to: usize) -> Option<usize> {
        let finite = self.loss.narrow(0, from as i64, (to - from) as i64).isfinite();
        if bool::try_from(finite.all()).unwrap_or(false) {
            return None;
        }
        let finite = Vec::<bool>::try_from(finite).unwrap_or_default();
        Some(from + finite.iter().position(|ok| !ok).unwrap_or(0))
    }

    /// Sums of the epoch's steps `0..done`, those before a resume included.
    pub fn sums(&self, plan: &EpochPlan, done: usize) -> EpochSums {
        let span = |t: &Tensor| {
            let steps = t.narrow(0, self.first_step as i64, (done - self.first_step) as i64);
            f64::try_from(steps.sum(Kind::Double)).unwrap_or(f64::NAN)
        };
        let before = &self.before;
        EpochSums {
            loss: before.loss + span(&self.loss),
            ce: before.ce + span(&self.ce),
            correct: before.correct + span(&self.correct),
            seen: before.seen + plan.images_until(done) - self.images_before,
            seconds: before.seconds + self.seconds(),
        }
    }

    /// Seconds since this process started the epoch.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The progress line's text: running loss and accuracy, and this process's speed.
    pub fn progress_message(&self, sums: &EpochSums) -> String {
        let seen = sums.seen as f64;
        let speed = (sums.seen - self.before.seen) as f64 / self.seconds().max(1e-9);
        format!("loss {:.4} acc {:.4} {speed:.0} img/s", sums.loss / seen, sums.correct / seen)
    }
}
