//! Fetching the official CIFAR-10 binary archive: an md5-checked download and an extraction
//! that writes only the expected batch files.
use crate::data::{META_FILE, TEST_FILE, TRAIN_FILES};
use anyhow::{ensure, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const ARCHIVE_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// Fetches the official archive into `to`, checks its md5, and extracts the six batch files
/// and the meta file into `to/cifar-10-batches-bin`. Nothing else in the archive is written.
pub fn download(to: &Path) -> Result<PathBuf> {
    let archive = to.join("cifar-10-binary.tar.gz");
    if !archive.is_file() || md5_of(&archive)? != ARCHIVE_MD5 {
        eprintln!("downloading {ARCHIVE_URL} (162 MB) to {}", archive.display());
        fetch_checked(ARCHIVE_URL, &archive, ARCHIVE_MD5)?;
    }
    extract(&archive, to)
}

/// Downloads `url` to `target` through a `.part` file that is renamed only when its md5 is
/// `md5`; on a mismatch or a broken download the partial file is deleted.
pub fn fetch_checked(url: &str, target: &Path, md5: &str) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let partial = target.with_extension("part");
    let result = (|| {
        let response = ureq::get(url).call().with_context(|| format!("cannot download {url}"))?;
        let length = response.header("Content-Length").and_then(|v| v.parse::<u64>().ok());
        let bar = match length {
            Some(n) if std::io::IsTerminal::is_terminal(&std::io::stderr()) => indicatif::ProgressBar::new(n)
                .with_style(
                    indicatif::ProgressStyle::with_template(
                        "{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template"),
                ),
            _ => indicatif::ProgressBar::hidden(),
        };
        let mut file =
            std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
        std::io::copy(&mut bar.wrap_read(response.into_reader()), &mut file)
            .with_context(|| format!("download of {url} broke off"))?;
        bar.finish_and_clear();
        let got = md5_of(&partial)?;
        ensure!(got == md5, "{url}: md5 {got} does not match the expected {md5}; the partial file was deleted");
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    std::fs::rename(&partial, target).with_context(|| format!("cannot move the download to {}", target.display()))
}

pub fn md5_of(path: &Path) -> Result<String> {
    use md5::{Digest, Md5};
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Extracts the expected members of a CIFAR-10 binary archive into `to/cifar-10-batches-bin`.
/// Members are matched by their exact names. A member whose path could leave that folder
/// (`..`, an absolute path) makes the whole archive refused before anything is written;
/// other unexpected members (links, other files) are skipped.
pub fn extract(archive: &Path, to: &Path) -> Result<PathBuf> {
    let expected: Vec<String> =
        TRAIN_FILES.iter().chain([&TEST_FILE, &META_FILE]).map(|f| format!("cifar-10-batches-bin/{f}")).collect();
    let open = || -> Result<tar::Archive<flate2::read::GzDecoder<std::fs::File>>> {
        let file = std::fs::File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
        Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
    };
    // First pass: look at every name before writing anything.
    for entry in open()?.entries().with_context(|| format!("{} is not a tar.gz archive", archive.display()))? {
        let entry = entry.with_context(|| format!("{} is not a valid tar.gz archive", archive.display()))?;
        let path = entry.path()?.to_path_buf();
        let escapes = path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir));
        ensure!(
            !escapes,
            "{}: refusing archive member {} (its path leaves the target folder)",
            archive.display(),
            path.display()
        );
    }
    let out_dir = to.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut found = 0;
    for entry in open()?.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().to_string();
        if !entry.header().entry_type().is_file() || !expected.contains(&name) {
            if !entry.header().entry_type().is_dir() {
                eprintln!("note: skipping unexpected archive member {name}");
            }
            continue;
        }
        let target = out_dir.join(Path::new(&name).file_name().expect("expected names have a file name"));
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        std::fs::write(&target, bytes).with_context(|| format!("cannot write {}", target.display()))?;
        found += 1;
    }
    ensure!(
        found == expected.len(),
        "{} holds {found} of the {} expected CIFAR-10 files",
        archive.display(),
        expected.len()
    );
    Ok(out_dir)
}
