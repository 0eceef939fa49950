//! One trainer per run folder: an advisory lock on `<run>/.lock`, held for as long as a
//! [`RunLock`] lives. The kernel releases it when the process ends, however it ends, so a crash
//! never leaves it stuck; the file names the holder, so a refused second trainer can say who.
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// A held run-folder lock; released when dropped.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock `path` (a run folder's `.lock`) of the run folder `run`, or refuses,
    /// naming the process that holds it.
    pub fn take(path: &Path, run: &Path) -> Result<RunLock> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open the run's lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                bail!(
                    "{} is being trained by another process ({}): let it finish, or stop it (it checkpoints on \
                     Ctrl-C) and continue with --resume",
                    run.display(),
                    holder.trim()
                );
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        file.set_len(0)?;
        write!(file, "pid {} on {}", std::process::id(), host.trim())?;
        Ok(RunLock { _file: file })
    }
}

/// The holder of the lock `path` when a process holds it ("pid N on HOST"), else `None`.
/// Probes without creating the file or writing to it: a report reads results it does not own.
/// (The probe holds a shared lock for an instant: a trainer starting in that instant is refused
/// as if the folder were being trained, and can be started again.)
pub fn holder(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    match file.try_lock_shared() {
        // Free: the shared lock just taken is released when `file` closes.
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => {
            Some(std::fs::read_to_string(path).unwrap_or_default().trim().to_string())
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}
