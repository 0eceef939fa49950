//! What each training step reports, and the epoch's tally of it. Each step writes its numbers
//! into a tensor on the device (two ops, no host sync); the loop reads them back only every
//! `sync_every` steps and adds them up on the host, in f64 and in step order, so a run resumed
//! mid-epoch sums exactly as an uninterrupted one.
use crate::train::optim;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What one step reports: as 0-dim device tensors (`StepStats<Tensor>`, packed into one row
/// of the tally by [`StepStats::pack`]) and, once read back, as numbers (`StepStats<f64>`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats<T> {
    /// The mean loss the step minimised: cross-entropy, label-smoothed when the recipe smooths.
    pub objective: T,
    /// The kernels' sum of squares before the step's update (the L2 penalty is l2 times it).
    pub kernel_squares: T,
    /// Correct predictions in the batch.
    pub correct: T,
    /// The plain mean cross-entropy.
    pub ce: T,
}

/// The numbers in a packed row.
const FIELDS: usize = 4;

impl StepStats<Tensor> {
    /// One float tensor `[FIELDS]`, in the order [`StepStats::unpack`] reads.
    pub fn pack(self) -> Tensor {
        let StepStats { objective, kernel_squares, correct, ce } = self;
        Tensor::stack(&[objective, kernel_squares, correct, ce], 0)
    }
}

impl StepStats<f64> {
    fn unpack(row: &[f32]) -> Self {
        let [objective, kernel_squares, correct, ce] = [0, 1, 2, 3].map(|i| row[i] as f64);
        StepStats { objective, kernel_squares, correct, ce }
    }
}

/// Running sums over the steps of the epoch in progress (kept in the checkpoint, so a run
/// resumed mid-epoch goes on summing).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochSums {
    /// Keras's loss (objective plus L2 penalty), summed over images.
    pub loss: f64,
    pub ce: f64,
    pub correct: f64,
    pub seen: usize,
    pub seconds: f64,
}

/// The epoch's steps: their stats on the device, and the sums of those read back so far.
pub struct EpochTally {
    /// `[steps, FIELDS]` on the device.
    steps: Tensor,
    l2: f64,
    /// Sums of the steps before `synced`, those before a resume included.
    sums: EpochSums,
    synced: usize,
    seen_before: usize,
    seconds_before: f64,
    started: Instant,
}

impl EpochTally {
    /// A tally for an epoch of `steps` steps from `first_step` on; `before` sums the earlier
    /// ones.
    pub fn new(steps: usize, first_step: usize, before: &EpochSums, l2: f64, device: Device) -> Self {
        EpochTally {
            steps: Tensor::zeros([steps as i64, FIELDS as i64], (Kind::Float, device)),
            l2,
            sums: before.clone(),
            synced: first_step,
            seen_before: before.seen,
            seconds_before: before.seconds,
            started: Instant::now(),
        }
    }

    /// Keeps step `step`'s stats.
    pub fn record(&self, step: usize, stats: StepStats<Tensor>) {
        tch::no_grad(|| self.steps.get(step as i64).copy_(&stats.pack()));
    }

    /// Reads the steps before `done` that are not summed yet and adds them, weighting each by
    /// its `batch_len` images; returns each of those steps with its loss (as Keras reports it),
    /// or the first step whose loss is NaN or infinite.
    pub fn sync(&mut self, done: usize, batch_len: impl Fn(usize) -> usize) -> Result<Vec<(usize, f64)>, usize> {
        let fresh = self.steps.narrow(0, self.synced as i64, (done - self.synced) as i64);
        let values = Vec::<f32>::try_from(fresh.to_device(Device::Cpu).flatten(0, -1)).expect("float stats");
        let mut losses = Vec::with_capacity(done - self.synced);
        for (offset, row) in values.chunks_exact(FIELDS).enumerate() {
            let step = self.synced + offset;
            let stats = StepStats::unpack(row);
            let loss = optim::keras_loss(stats.objective, self.l2, stats.kernel_squares);
            if !loss.is_finite() {
                return Err(step);
            }
            let images = batch_len(step);
            self.sums.loss += loss * images as f64;
            self.sums.ce += stats.ce * images as f64;
            self.sums.correct += stats.correct;
            self.sums.seen += images;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_step_unpacks_field_by_field() {
        let stats = StepStats {
            objective: Tensor::from(1.5f32),
            kernel_squares: Tensor::from(12.25f32),
            correct: Tensor::from(7f32),
            ce: Tensor::from(1.25f32),
        };
        let row = Vec::<f32>::try_from(stats.pack()).unwrap();
        let want = StepStats { objective: 1.5, kernel_squares: 12.25, correct: 7.0, ce: 1.25 };
        assert_eq!(StepStats::unpack(&row), want);
    }
}
