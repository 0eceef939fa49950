//! The batch pipeline: an epoch's order of images and their augmentations, all drawn up front
//! from (seed, epoch), and the normalised, augmented batch of each step.
//!
//! Because an epoch's randomness depends only on the seed and the epoch number, a run resumed
//! in the middle of an epoch sees the same batches as an uninterrupted one.
use crate::augment::{Cutout, Transforms, Warp};
use crate::config::Experiment;
use crate::data::{Normalizer, Split};
use tch::{Device, Kind, Tensor};

/// Seed of epoch `epoch`'s shuffle and augmentation draws.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64 + 1) & (i64::MAX as u64)) as i64
}

/// One epoch's shuffle and augmentation draws.
pub struct EpochPlan {
    order: Tensor,
    normalizer: Normalizer,
    warp: Option<Warp>,
    cutout: Option<Cutout>,
    batch_size: usize,
    pub steps: usize,
    len: usize,
}

impl EpochPlan {
    pub fn new(experiment: &Experiment, epoch: usize, len: usize, device: Device) -> Self {
        tch::manual_seed(epoch_seed(experiment.seed, epoch));
        let order = Tensor::randperm(len as i64, (Kind::Int64, Device::Cpu)).to_device(device);
        let aug = &experiment.augmentation;
        let identity = !aug.horizontal_flip
            && aug.width_shift_range == 0.0
            && aug.height_shift_range == 0.0
            && aug.rotation_range == 0.0;
        // Drawn on the CPU (the same numbers on every device), then moved once per epoch.
        let warp = (!identity).then(|| Warp::new(&Transforms::random(aug, len as i64, 32, 32), 32, 32, device));
        let cutout = (aug.cutout > 0).then(|| Cutout::random(aug.cutout, len as i64, 32, 32, device));
        let batch_size = experiment.batch_size;
        let normalizer = Normalizer::new(device);
        EpochPlan { order, normalizer, warp, cutout, batch_size, steps: len.div_ceil(batch_size), len }
    }

    /// Images in the batch of step `step` (the last batch is smaller, not dropped).
    pub fn batch_len(&self, step: usize) -> usize {
        self.batch_size.min(self.len - step * self.batch_size)
    }

    /// Normalised, augmented images and labels of step `step`.
    pub fn batch(&self, step: usize, split: &Split) -> (Tensor, Tensor) {
        let start = (step * self.batch_size) as i64;
        let size = self.batch_len(step) as i64;
        let index = self.order.narrow(0, start, size);
        let images = self.normalizer.apply(&split.images.index_select(0, &index));
        let images = match &self.warp {
            Some(warp) => warp.apply(&images, start),
            None => images,
        };
        let images = match &self.cutout {
            Some(cutout) => cutout.apply(&images, start),
            None => images,
        };
        (images, split.labels.index_select(0, &index))
    }
}
