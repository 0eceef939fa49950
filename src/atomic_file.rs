//! The one way every file of a run folder (and an export) is written: atomically, so that a
//! crash or a full disk leaves either the old file or the new one, never half of one.
use anyhow::{Context, Result};
use std::path::Path;

/// Writes `path` through a temporary file beside it: `fill` writes the whole content there, it
/// is synced to disk and renamed over `path`, then the folder is synced. On failure the
/// temporary file is removed and the error names `what` and `path`.
pub fn write_atomic(path: &Path, what: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{what} path {} has no file name", path.display()))?;
    write_atomic_via(path, &path.with_file_name(format!("{}.tmp", name.to_string_lossy())), what, fill)
}

/// [`write_atomic`] through a temporary file the caller names (in the same folder), for files
/// whose readers would take `<name>.tmp` for one of theirs: TensorBoard reads every file whose
/// name contains `tfevents`, half-written or not.
pub fn write_atomic_via(path: &Path, tmp: &Path, what: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let result = fill(tmp).and_then(|()| {
        std::fs::File::open(tmp)?.sync_all()?;
        std::fs::rename(tmp, path)?;
        std::fs::File::open(folder)?.sync_all()?;
        Ok(())
    });
    result.map_err(|error| {
        let _ = std::fs::remove_file(tmp);
        anyhow::anyhow!("cannot write {what} {}: {error:#}", path.display())
    })
}

/// [`write_atomic`] of bytes already in memory.
pub fn write_bytes(path: &Path, what: &str, bytes: &[u8]) -> Result<()> {
    write_atomic(path, what, |tmp| Ok(std::fs::write(tmp, bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file_removes_its_temporary_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        write_bytes(&path, "checkpoint", b"old").unwrap();
        let error = write_atomic(&path, "checkpoint", |tmp| {
            std::fs::write(tmp, b"half of the new")?;
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into())
        })
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.starts_with("cannot write checkpoint ") && message.contains("last.safetensors"), "{message}");
        assert!(message.contains("No space left on device"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["last.safetensors"], "the temporary file is gone");
        write_bytes(&path, "checkpoint", b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
