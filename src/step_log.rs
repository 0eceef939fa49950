//! The epoch's per-step record of losses and correct predictions. Each step writes its three
//! numbers into a tensor on the device (two ops, no host sync); the loop reads them back only
//! every `sync_every` steps and adds them up on the host, in f64 and in step order, so a run
//! resumed mid-epoch sums exactly as an uninterrupted one.
use crate::batches::EpochPlan;
use crate::checkpoint::EpochSums;
use crate::learner::STATS;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub struct StepLog {
    /// `[steps, STATS]` on the device (see [`STATS`]).
    steps: Tensor,
    l2: f64,
    /// Sums of the steps before `synced`, those before a resume included.
    sums: EpochSums,
    synced: usize,
    seen_before: usize,
    seconds_before: f64,
    started: Instant,
}

impl StepLog {
    /// A log for the steps of `plan` from `first_step` on; `before` sums the earlier ones.
    pub fn new(plan: &EpochPlan, first_step: usize, before: &EpochSums, l2: f64, device: Device) -> Self {
        StepLog {
            steps: Tensor::zeros([plan.steps as i64, STATS as i64], (Kind::Float, device)),
            l2,
            sums: before.clone(),
            synced: first_step,
            seen_before: before.seen,
            seconds_before: before.seconds,
            started: Instant::now(),
        }
    }

    /// Keeps step `step`'s stats.
    pub fn record(&self, step: usize, stats: &Tensor) {
        tch::no_grad(|| self.steps.get(step as i64).copy_(stats));
    }

    /// Reads the steps before `done` that are not summed yet and adds them; returns each of
    /// those steps with its loss (as Keras reports it), or the first step whose loss is NaN or
    /// infinite.
    pub fn sync(&mut self, plan: &EpochPlan, done: usize) -> Result<Vec<(usize, f64)>, usize> {
        let fresh = self.steps.narrow(0, self.synced as i64, (done - self.synced) as i64);
        let values = Vec::<f32>::try_from(fresh.to_device(Device::Cpu).flatten(0, -1)).expect("float stats");
        let mut losses = Vec::with_capacity(done - self.synced);
        for (offset, stats) in values.chunks_exact(STATS).enumerate() {
            let step = self.synced + offset;
            let [objective, squares, correct, ce] = [0, 1, 2, 3].map(|i| stats[i] as f64);
            // Keras's reported loss: the minimised loss plus the L2 penalty.
            let loss = objective + self.l2 * squares;
            if !loss.is_finite() {
                return Err(step);
            }
            let batch = plan.batch_len(step) as f64;
            self.sums.loss += loss * batch;
            self.sums.ce += ce * batch;
            self.sums.correct += correct;
            self.sums.seen += plan.batch_len(step);
            losses.push((step, loss));
        }
        self.synced = done;
        self.sums.seconds = self.seconds_before + self.seconds();
        Ok(losses)
    }

    /// The sums as of the last sync.
    pub fn sums(&self) -> &EpochSums {
        &self.sums
    }

    /// Seconds since this process started the epoch.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The progress line's text: running loss and accuracy, and this process's speed.
    pub fn progress_message(&self) -> String {
        let sums = &self.sums;
        let seen = sums.seen as f64;
        let speed = (sums.seen - self.seen_before) as f64 / self.seconds().max(1e-9);
        format!("loss {:.4} acc {:.4} {speed:.0} img/s", sums.loss / seen, sums.correct / seen)
    }
}
