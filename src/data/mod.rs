//! CIFAR-10, binary version: reading, validating and normalising (`download` fetches it,
//! `pack` compresses it).
//!
//! A data folder holds `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`, each file
//! also accepted xz-compressed as `<name>.xz` (so a copy made small for a transfer is itself a
//! data folder). Training batches may be missing as long as the training images asked for (the
//! first N, `--train-limit`) are all in the batches present; every batch file present is read
//! and validated.
//!
//! Images stay as u8 (150 MB for all 60,000) and are normalised one batch at a time on the
//! model's device. Normalising before or after the augmentation's bilinear resampling gives the
//! same values (the weights sum to one), and the fill value 0 of normalised data is the mean
//! colour, exactly as in the blog, where Keras normalises the whole array first.
pub mod download;
pub mod pack;

use anyhow::{bail, ensure, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
pub const RECORDS_PER_FILE: usize = 10_000;
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_FILE: &str = "test_batch.bin";
/// Training images in the five training files.
pub const TRAIN_IMAGES: usize = RECORDS_PER_FILE * TRAIN_FILES.len();
pub const META_FILE: &str = "batches.meta.txt";
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The blog's per-channel constants on the 0-255 scale (official CIFAR-10 train statistics).
pub const MEAN: [f64; 3] = [125.307, 122.95, 113.865];
pub const STD: [f64; 3] = [62.9932, 62.0887, 66.7048];

/// Images as u8 `[N, 3, 32, 32]` and labels as i64 `[N]`, on one device.
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` images (all of them when `n` is larger).
    pub fn first(&self, n: usize) -> Split {
        let n = n.min(self.len()) as i64;
        Split { images: self.images.narrow(0, 0, n), labels: self.labels.narrow(0, 0, n) }
    }

    pub fn to_device(&self, device: Device) -> Split {
        Split { images: self.images.to_device(device), labels: self.labels.to_device(device) }
    }

    /// The last `n` images (all of them when `n` is larger).
    pub fn last(&self, n: usize) -> Split {
        let n = n.min(self.len()) as i64;
        let start = self.len() as i64 - n;
        Split { images: self.images.narrow(0, start, n), labels: self.labels.narrow(0, start, n) }
    }

    /// The training images a run trains on, and the validation images it holds out. With
    /// `validation` = N > 0, the last N images are held out, as Keras's `validation_split` takes
    /// the end of the arrays before any shuffling, and the run trains on the first
    /// `train_limit` of the others: the held-out images are the same whatever the limit, so a
    /// quick run validates on the images a full one does, and never trains on them. With N = 0
    /// nothing is held out.
    pub fn hold_out(&self, validation: usize, train_limit: Option<usize>) -> Result<(Split, Option<Split>)> {
        ensure!(
            validation < self.len(),
            "validation = {validation} would hold out every one of the {} training images",
            self.len()
        );
        let rest = self.first(self.len() - validation).first(train_limit.unwrap_or(usize::MAX));
        Ok((rest, (validation > 0).then(|| self.last(validation))))
    }
}

pub struct Cifar10 {
    pub train: Split,
    pub test: Split,
}

/// The data folder: `--data-dir`, else `$CIFAR10_DIR`, else `data/cifar-10-batches-bin`.
pub fn resolve_dir(cli: Option<&Path>) -> PathBuf {
    match (cli, std::env::var_os("CIFAR10_DIR")) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => PathBuf::from("data/cifar-10-batches-bin"),
    }
}

/// A batch file of `dir`: `name`, else `name.xz`, else none.
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.xz"))].into_iter().find(|path| path.is_file())
}

/// How many training batches `dir` has in order from the first (the images `--train-limit` can
/// reach are 10,000 times this).
pub fn leading_train_batches(dir: &Path) -> usize {
    leading(&train_files(dir))
}

/// Each training batch file of `dir`, in order, where it is present.
fn train_files(dir: &Path) -> Vec<Option<PathBuf>> {
    TRAIN_FILES.iter().map(|name| find(dir, name)).collect()
}

/// How many of `files` are present in order from the first.
fn leading(files: &[Option<PathBuf>]) -> usize {
    files.iter().take_while(|f| f.is_some()).count()
}

impl Cifar10 {
    /// The test set and the first `train_limit` training images (all 50,000 without a limit) of
    /// `dir`: an error names every file they need that the folder lacks.
    pub fn load(dir: &Path, train_limit: Option<usize>) -> Result<Self> {
        ensure!(
            dir.is_dir(),
            "CIFAR-10 folder {} does not exist: pass --data-dir, set CIFAR10_DIR, or run `resnext data download`",
            dir.display()
        );
        let present = train_files(dir);
        let needed = train_limit.map_or(TRAIN_FILES.len(), |n| n.div_ceil(RECORDS_PER_FILE).min(TRAIN_FILES.len()));
        let test = find(dir, TEST_FILE);
        let mut missing: Vec<&str> = (0..needed).filter(|&i| present[i].is_none()).map(|i| TRAIN_FILES[i]).collect();
        if test.is_none() {
            missing.push(TEST_FILE);
        }
        if !missing.is_empty() {
            let there = leading(&present);
            let hint = match (there, missing.contains(&TEST_FILE)) {
                (1.., false) => format!(
                    "; pass --train-limit {} or less to train on the first {there} batch(es), which are there",
                    there * RECORDS_PER_FILE
                ),
                _ => String::new(),
            };
            bail!("CIFAR-10 folder {} lacks {} (or .xz){hint}", dir.display(), missing.join(", "),);
        }
        // Every batch present from the first on is validated, beyond the limit too: a damaged copy
        // shows at once.
        let train_paths: Vec<PathBuf> = present.into_iter().take_while(Option::is_some).flatten().collect();
        let train = read_batches(&train_paths)?;
        let test = read_batches(&[test.expect("checked above")])?;
        Ok(Cifar10 { train: train.first(train_limit.unwrap_or(usize::MAX)), test })
    }
}

/// The test set of `dir` alone (for commands that train nothing).
pub fn load_test(dir: &Path) -> Result<Split> {
    let path = find(dir, TEST_FILE).with_context(|| {
        format!("CIFAR-10 folder {} has no {TEST_FILE} (or .xz): pass --data-dir or set CIFAR10_DIR", dir.display())
    })?;
    read_batches(&[path])
}

/// A batch file's bytes, decompressed when its name ends in `.xz`.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read CIFAR-10 file {}", path.display()))?;
    let mut bytes = Vec::with_capacity(RECORDS_PER_FILE * RECORD_BYTES);
    let read = match path.extension().is_some_and(|e| e == "xz") {
        true => liblzma::read::XzDecoder::new(file).read_to_end(&mut bytes),
        false => std::io::BufReader::new(file).read_to_end(&mut bytes),
    };
    read.with_context(|| format!("cannot read CIFAR-10 file {}", path.display()))?;
    Ok(bytes)
}

/// Reads and validates batch files (10,000 records each) into one split; an error names the
/// file and, for a bad label, the record.
pub fn read_batches(paths: &[PathBuf]) -> Result<Split> {
    let mut images = Vec::with_capacity(paths.len() * RECORDS_PER_FILE * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(paths.len() * RECORDS_PER_FILE);
    for path in paths {
        parse_batch(path, &read_file(path)?, &mut images, &mut labels)?;
    }
    let n = labels.len() as i64;
    Ok(Split {
        images: Tensor::from_slice(&images).view([n, 3, 32, 32]),
        labels: Tensor::from_slice(&labels).to_kind(Kind::Int64),
    })
}

/// Appends the records of one batch file (`bytes`, read from `path`): exactly 10,000 of them, or
/// an error naming the file.
pub fn parse_batch(path: &Path, bytes: &[u8], images: &mut Vec<u8>, labels: &mut Vec<u8>) -> Result<()> {
    ensure!(
        bytes.len() == RECORDS_PER_FILE * RECORD_BYTES,
        "CIFAR-10 file {} has {} bytes, expected {} (10,000 records of 3,073 bytes): truncated or not a CIFAR-10 batch",
        path.display(),
        bytes.len(),
        RECORDS_PER_FILE * RECORD_BYTES
    );
    parse_records(bytes, images, labels).with_context(|| format!("in CIFAR-10 file {}", path.display()))
}

/// Splits `bytes` into records (label byte, then 3,072 pixel bytes) and appends them. Never
/// panics: a length that is not a whole number of records or a label above 9 is an error
/// naming the record.
pub fn parse_records(bytes: &[u8], images: &mut Vec<u8>, labels: &mut Vec<u8>) -> Result<()> {
    ensure!(
        bytes.len().is_multiple_of(RECORD_BYTES),
        "{} bytes is not a whole number of 3,073-byte records",
        bytes.len()
    );
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if label > 9 {
            bail!("record {index} has label byte {label}, expected 0-9");
        }
        labels.push(label);
        images.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// Class names from `batches.meta.txt` when present, else the official ones.
pub fn class_names(dir: &Path) -> Vec<String> {
    let from_file = std::fs::read_to_string(dir.join(META_FILE))
        .ok()
        .map(|text| text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>());
    match from_file {
        Some(names) if names.len() == 10 => names,
        _ => CLASSES.iter().map(|s| s.to_string()).collect(),
    }
}

/// The blog's per-channel normalisation on one device. The constants are copied there once,
/// when it is made: a copy from host memory per batch would make a GPU wait for all queued
/// work, and building them per batch would cost a dozen ops.
pub struct Normalizer {
    mean: Tensor,
    std: Tensor,
}

impl Normalizer {
    pub fn new(device: Device) -> Self {
        let constant =
            |values: [f64; 3]| Tensor::from_slice(&values).to_kind(Kind::Float).view([1, 3, 1, 1]).to_device(device);
        Normalizer { mean: constant(MEAN), std: constant(STD) }
    }

    /// u8 `[B, 3, H, W]` -> f32 `(x - mean) / std` per channel.
    pub fn apply(&self, images: &Tensor) -> Tensor {
        (images.to_kind(Kind::Float) - &self.mean) / &self.std
    }
}

/// What `resnext data check` reports of a data folder.
#[derive(Debug, Clone)]
pub struct Statistics {
    pub train_images: usize,
    pub test_images: usize,
    /// Images per class, training then test.
    pub train_per_class: Vec<i64>,
    pub test_per_class: Vec<i64>,
    /// Per-channel (R, G, B) mean and population standard deviation of the training images, on
    /// the 0-255 scale.
    pub train_mean: [f64; 3],
    pub train_std: [f64; 3],
}

impl Cifar10 {
    pub fn statistics(&self) -> Statistics {
        let pixels = self.train.images.to_kind(Kind::Double);
        let per_channel = |t: Tensor| {
            let v = Vec::<f64>::try_from(t).expect("3 channels");
            [v[0], v[1], v[2]]
        };
        let per_class =
            |split: &Split| Vec::<i64>::try_from(split.labels.bincount::<Tensor>(None, 10)).expect("10 classes");
        Statistics {
            train_images: self.train.len(),
            test_images: self.test.len(),
            train_per_class: per_class(&self.train),
            test_per_class: per_class(&self.test),
            train_mean: per_channel(pixels.mean_dim(&[0i64, 2, 3][..], false, Kind::Double)),
            train_std: per_channel(pixels.std_correction(&[0i64, 2, 3][..], 0, false)),
        }
    }
}

/// Loads `dir` (the test set and the training batches there, in order) and reports counts and
/// per-channel statistics (for `resnext data check`).
pub fn describe(dir: &Path) -> Result<String> {
    let start = std::time::Instant::now();
    let batches = leading_train_batches(dir);
    let data = Cifar10::load(dir, Some(batches.max(1) * RECORDS_PER_FILE))?;
    let seconds = start.elapsed().as_secs_f64();
    let Statistics { train_images, test_images, train_mean: mean, train_std: std, .. } = data.statistics();
    let partial = match batches {
        5 => String::new(),
        _ => format!(" ({batches} of 5 training batches)"),
    };
    Ok(format!(
        "{}: {train_images} train and {test_images} test images{partial}, loaded in {seconds:.2}s\ntrain mean (0-255): {:.2}, {:.2}, {:.2}\ntrain std (0-255): {:.2}, {:.2}, {:.2}\nclasses: {}",
        dir.display(),
        mean[0], mean[1], mean[2], std[0], std[1], std[2],
        class_names(dir).join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_uses_the_blog_constants() {
        let images = Tensor::from_slice(&[125u8, 0, 255]).view([1, 3, 1, 1]).expand([1, 3, 1, 1], false);
        let x = Vec::<f32>::try_from(Normalizer::new(Device::Cpu).apply(&images).flatten(0, -1)).unwrap();
        let want = [(125.0 - 125.307) / 62.9932, (0.0 - 122.95) / 62.0887, (255.0 - 113.865) / 66.7048];
        for (g, w) in x.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{x:?}");
        }
    }

    /// A split whose label i is i: which images a function returns can be read off the labels.
    fn numbered(n: i64) -> Split {
        Split {
            images: Tensor::zeros([n, 3, 32, 32], (Kind::Uint8, Device::Cpu)),
            labels: Tensor::arange(n, (Kind::Int64, Device::Cpu)),
        }
    }

    fn labels(split: &Split) -> Vec<i64> {
        Vec::<i64>::try_from(&split.labels).unwrap()
    }

    #[test]
    fn the_validation_split_is_the_last_images_and_the_limit_takes_the_first_of_the_rest() {
        let all = numbered(10);
        let (train, validation) = all.hold_out(3, None).unwrap();
        assert_eq!((labels(&train), labels(&validation.unwrap())), ((0..7).collect(), vec![7, 8, 9]));
        let (train, validation) = all.hold_out(3, Some(4)).unwrap();
        assert_eq!((labels(&train), labels(&validation.unwrap())), ((0..4).collect(), vec![7, 8, 9]));
        // A limit beyond the rest trains on all of the rest, never on a held-out image.
        let (train, _) = all.hold_out(3, Some(9)).unwrap();
        assert_eq!(labels(&train), (0..7).collect::<Vec<_>>());
        let (train, validation) = all.hold_out(0, Some(4)).unwrap();
        assert!(validation.is_none() && labels(&train) == [0, 1, 2, 3]);
        let err = all.hold_out(10, None).err().unwrap().to_string();
        assert!(err.contains("validation = 10") && err.contains("10 training images"), "{err}");
    }

    #[test]
    fn bad_records_are_errors_that_name_the_record() {
        let mut record = vec![0u8; RECORD_BYTES * 3];
        record[RECORD_BYTES * 2] = 10;
        let err = parse_records(&record, &mut vec![], &mut vec![]).unwrap_err().to_string();
        assert!(err.contains("record 2") && err.contains("10"), "{err}");
        let err = parse_records(&record[..RECORD_BYTES + 5], &mut vec![], &mut vec![]).unwrap_err().to_string();
        assert!(err.contains("3078 bytes"), "{err}");
    }
}
