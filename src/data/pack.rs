//! `resnext data pack`: a copy of a CIFAR-10 folder made small for a transfer (a GPU machine
//! that receives a few tens of MiB): the test batch and the chosen training batches,
//! xz-compressed as `<name>.xz`, which every command reads in place of the plain files. Each
//! file is validated before it is written, and written atomically.
use crate::atomic_file;
use crate::data::{self, META_FILE, TEST_FILE, TRAIN_FILES};
use anyhow::{bail, ensure, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file written, and its size.
pub struct Packed {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Writes the test batch and training batches `train_batches` (1-5) of `from` into `to`,
/// compressed with xz preset `level` (0 fastest to 9 smallest; files that are `.xz` already are
/// copied as they are), and the class names when `from` has them.
pub fn pack(from: &Path, to: &Path, train_batches: &[usize], level: u32) -> Result<Vec<Packed>> {
    ensure!(level <= 9, "--level {level}: xz presets go from 0 (fastest) to 9 (smallest)");
    let mut names = vec![TEST_FILE];
    for &batch in train_batches {
        ensure!((1..=TRAIN_FILES.len()).contains(&batch), "--train-batches {batch}: CIFAR-10 has batches 1 to 5");
        if !names.contains(&TRAIN_FILES[batch - 1]) {
            names.push(TRAIN_FILES[batch - 1]);
        }
    }
    ensure!(from.is_dir(), "CIFAR-10 folder {} does not exist: pass --data-dir or set CIFAR10_DIR", from.display());
    if let (Ok(a), Ok(b)) = (from.canonicalize(), to.canonicalize()) {
        ensure!(a != b, "--to {}: that is the folder being packed; choose another", to.display());
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut written = Vec::new();
    for name in names {
        let Some(source) = data::find(from, name) else {
            bail!("CIFAR-10 folder {} has no {name} (or .xz) to pack", from.display());
        };
        let bytes = data::read_file(&source)?;
        data::parse_batch(&source, &bytes, &mut Vec::new(), &mut Vec::new())?;
        let target = to.join(format!("{name}.xz"));
        let compressed = match source.extension().is_some_and(|e| e == "xz") {
            true => std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?,
            false => xz(&bytes, level).with_context(|| format!("cannot compress {}", source.display()))?,
        };
        atomic_file::write_bytes(&target, "the packed batch", &compressed)?;
        written.push(Packed { path: target, bytes: compressed.len() as u64 });
    }
    if let Ok(meta) = std::fs::read(from.join(META_FILE)) {
        let target = to.join(META_FILE);
        atomic_file::write_bytes(&target, "the class names", &meta)?;
        written.push(Packed { path: target, bytes: meta.len() as u64 });
    }
    Ok(written)
}

fn xz(bytes: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), level);
    encoder.write_all(bytes)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Cifar10, RECORDS_PER_FILE, RECORD_BYTES};

    /// A batch file of 10,000 records with label `i % 10` and pixels drawn from the record.
    fn batch(seed: u8) -> Vec<u8> {
        (0..RECORDS_PER_FILE)
            .flat_map(|i| {
                let label = (i % 10) as u8;
                std::iter::once(label).chain((0..RECORD_BYTES - 1).map(move |j| (i * 7 + j * seed as usize) as u8))
            })
            .collect()
    }

    #[test]
    fn a_packed_folder_reads_as_the_plain_one_and_only_the_batches_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        for (i, name) in TRAIN_FILES.iter().chain([&TEST_FILE]).enumerate() {
            std::fs::write(plain.join(name), batch(i as u8 + 1)).unwrap();
        }
        std::fs::write(plain.join(META_FILE), "a\nb\n").unwrap();
        let packed = dir.path().join("packed");
        let written = pack(&plain, &packed, &[2, 1, 2], 0).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.path.file_name().unwrap().to_string_lossy().to_string()).collect();
        assert_eq!(names, ["test_batch.bin.xz", "data_batch_2.bin.xz", "data_batch_1.bin.xz", META_FILE]);
        assert!(written[0].bytes < (RECORDS_PER_FILE * RECORD_BYTES / 2) as u64, "compressed");
        // The compressed folder is a data folder: the first 20,000 images are the plain ones.
        let (a, b) = (Cifar10::load(&plain, Some(20_000)).unwrap(), Cifar10::load(&packed, Some(20_000)).unwrap());
        assert!(a.train.images.equal(&b.train.images) && a.train.labels.equal(&b.train.labels));
        assert!(a.test.images.equal(&b.test.images));
        // Packing a packed folder copies its .xz files as they are.
        let again = dir.path().join("again");
        pack(&packed, &again, &[1], 9).unwrap();
        let same = |name: &str| std::fs::read(packed.join(name)).unwrap() == std::fs::read(again.join(name)).unwrap();
        assert!(same("data_batch_1.bin.xz") && same("test_batch.bin.xz"));
        for (batches, level, needle) in [(vec![6], 0, "--train-batches 6"), (vec![1], 10, "--level 10")] {
            let err = format!("{:#}", pack(&plain, &dir.path().join("x"), &batches, level).err().unwrap());
            assert!(err.contains(needle), "{err}");
        }
        let err = format!("{:#}", pack(&packed, &dir.path().join("y"), &[3], 0).err().unwrap());
        assert!(err.contains("has no data_batch_3.bin"), "{err}");
    }
}
