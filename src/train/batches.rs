//! The batch pipeline: the training batches as one stream, pass after pass over the training
//! images, as Keras's iterator yields them to `fit_generator`. Each pass is a fresh shuffle with
//! fresh augmentation draws, all drawn up front from (seed, pass); its last batch is smaller,
//! not dropped. Epochs are cut from the stream by the run's steps per epoch, so an epoch may end
//! in the middle of a pass, and the next one goes on from there.
//!
//! Because a pass's randomness depends only on the seed and the pass number, a run resumed at
//! any step sees the same batches as an uninterrupted one.
use crate::config::Experiment;
use crate::data::{Normalizer, Split};
use crate::train::augment::{Cutout, Transforms, Warp};
use tch::{Device, Kind, Tensor};

/// Seed of pass `pass`'s shuffle and augmentation draws. With one pass an epoch (the blog's),
/// pass k is epoch k.
pub fn pass_seed(seed: u64, pass: usize) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(pass as u64 + 1) & (i64::MAX as u64)) as i64
}

/// One pass's shuffle and augmentation draws.
pub struct PassPlan {
    order: Tensor,
    normalizer: Normalizer,
    warp: Option<Warp>,
    cutout: Option<Cutout>,
    batch_size: usize,
    len: usize,
}

impl PassPlan {
    pub fn new(experiment: &Experiment, pass: usize, len: usize, device: Device) -> Self {
        tch::manual_seed(pass_seed(experiment.seed, pass));
        let order = Tensor::randperm(len as i64, (Kind::Int64, Device::Cpu)).to_device(device);
        let aug = &experiment.augmentation;
        let identity = !aug.horizontal_flip
            && aug.width_shift_range == 0.0
            && aug.height_shift_range == 0.0
            && aug.rotation_range == 0.0;
        // Drawn on the CPU (the same numbers on every device), then moved once per pass.
        let warp = (!identity).then(|| Warp::new(&Transforms::random(aug, len as i64, 32, 32), 32, 32, device));
        let cutout = (aug.cutout > 0).then(|| Cutout::random(aug.cutout, len as i64, 32, 32, device));
        let normalizer = Normalizer::new(device);
        PassPlan { order, normalizer, warp, cutout, batch_size: experiment.batch_size, len }
    }

    /// Normalised, augmented images and labels of the pass's step `step`.
    pub fn batch(&self, step: usize, split: &Split) -> (Tensor, Tensor) {
        let start = step * self.batch_size;
        let index = self.order.narrow(0, start as i64, self.batch_size.min(self.len - start) as i64);
        let images = self.normalizer.apply(&split.images.index_select(0, &index));
        let images = match &self.warp {
            Some(warp) => warp.apply(&images, start as i64),
            None => images,
        };
        let images = match &self.cutout {
            Some(cutout) => cutout.apply(&images, start as i64),
            None => images,
        };
        (images, split.labels.index_select(0, &index))
    }
}

/// The training batches of a run: step `t` of the run (counted from 0 over all its epochs) is
/// step `t % steps_per_pass` of pass `t / steps_per_pass`.
pub struct BatchStream<'a> {
    experiment: &'a Experiment,
    split: &'a Split,
    device: Device,
    pub steps_per_pass: usize,
    /// The pass drawn last, and its number.
    pass: Option<(usize, PassPlan)>,
}

impl<'a> BatchStream<'a> {
    pub fn new(experiment: &'a Experiment, split: &'a Split, device: Device) -> Self {
        let steps_per_pass = experiment.steps_per_pass(split.len());
        BatchStream { experiment, split, device, steps_per_pass, pass: None }
    }

    /// Images in the batch of the run's step `step`: the batch size, less at a pass's end.
    pub fn batch_len(&self, step: usize) -> usize {
        let start = (step % self.steps_per_pass) * self.experiment.batch_size;
        self.experiment.batch_size.min(self.split.len() - start)
    }

    /// Normalised, augmented images and labels of the run's step `step`; the first step of a
    /// pass draws the pass.
    pub fn batch(&mut self, step: usize) -> (Tensor, Tensor) {
        let pass = step / self.steps_per_pass;
        if self.pass.as_ref().is_none_or(|(drawn, _)| *drawn != pass) {
            self.pass = Some((pass, PassPlan::new(self.experiment, pass, self.split.len(), self.device)));
        }
        let (_, plan) = self.pass.as_ref().expect("drawn above");
        plan.batch(step % self.steps_per_pass, self.split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Experiment;

    /// A tiny experiment without augmentation (so batches are the images themselves) over
    /// `len` images whose labels are their indices.
    fn stream_of(len: usize, batch_size: usize) -> (Experiment, Split) {
        let text = include_str!("../../tests/fixtures/tiny.json");
        let mut experiment = Experiment::from_json(text, &[]).unwrap();
        experiment.batch_size = batch_size;
        experiment.augmentation.horizontal_flip = false;
        experiment.augmentation.width_shift_range = 0.0;
        experiment.augmentation.height_shift_range = 0.0;
        let images = Tensor::zeros([len as i64, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        let labels = Tensor::arange(len as i64, (Kind::Int64, Device::Cpu));
        (experiment, Split { images, labels })
    }

    fn labels(stream: &mut BatchStream, step: usize) -> Vec<i64> {
        Vec::<i64>::try_from(stream.batch(step).1).unwrap()
    }

    #[test]
    fn every_image_once_per_pass_a_fresh_order_each_pass_and_a_short_last_batch() {
        let (experiment, split) = stream_of(10, 4);
        let mut stream = BatchStream::new(&experiment, &split, Device::Cpu);
        assert_eq!(stream.steps_per_pass, 3);
        let pass = |stream: &mut BatchStream, k: usize| -> Vec<i64> {
            (3 * k..3 * k + 3).flat_map(|step| labels(stream, step)).collect()
        };
        let passes: Vec<Vec<i64>> = (0..4).map(|k| pass(&mut stream, k)).collect();
        for order in &passes {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..10).collect::<Vec<i64>>(), "each image once in a pass: {order:?}");
        }
        assert!(passes.windows(2).all(|w| w[0] != w[1]), "each pass is a fresh shuffle: {passes:?}");
        assert_eq!((0..7).map(|step| stream.batch_len(step)).collect::<Vec<_>>(), [4, 4, 2, 4, 4, 2, 4]);
        assert_eq!(labels(&mut stream, 5).len(), 2);
        // A step drawn out of order (a resume) gives the same batch.
        let mut resumed = BatchStream::new(&experiment, &split, Device::Cpu);
        assert_eq!(labels(&mut resumed, 7), passes[2][4..8]);
    }

    #[test]
    fn pass_k_is_drawn_from_the_seed_and_k_alone() {
        let (mut experiment, split) = stream_of(300, 64);
        experiment.augmentation.rotation_range = 15.0;
        experiment.augmentation.cutout = 8;
        let first: Vec<Tensor> = {
            let mut stream = BatchStream::new(&experiment, &split, Device::Cpu);
            (0..12).map(|step| stream.batch(step).0).collect()
        };
        let mut stream = BatchStream::new(&experiment, &split, Device::Cpu);
        for step in [9, 2, 11, 5, 0] {
            assert!(stream.batch(step).0.equal(&first[step]), "step {step}");
        }
    }
}
