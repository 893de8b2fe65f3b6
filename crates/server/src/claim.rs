//! A name and a data directory for a server that is one of several identical replicas.
//!
//! Replicas of one service (`docker compose` with `replicas: 3`) start with the same flags and
//! share one volume, yet each server needs a name and a database of its own that it keeps across
//! restarts. Each takes the first free slot under the shared directory: `DIR/s1/`, `DIR/s2/`,
//! and so on. A slot is held by a lock on `DIR/sN/claim.lock` for as long as the process lives;
//! the kernel lets go of it when the process dies however it dies, so a replica that is started
//! again finds its own slot free (the others are held) and takes up its name and data where it
//! left them.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use palaver_proto::Name;

/// Slots looked at before giving up: more servers than any cluster of this design runs.
pub const MAX_SLOTS: usize = 64;

/// A slot held for the life of this value.
#[derive(Debug)]
pub struct Claim {
    pub name: Name,
    pub dir: PathBuf,
    /// Holding the file holds the lock.
    _lock: File,
}

/// Takes the first free slot under `dir`.
///
/// # Errors
/// When `dir` cannot be written, or every slot up to [`MAX_SLOTS`] is held.
pub fn claim(dir: &Path) -> io::Result<Claim> {
    fs::create_dir_all(dir)?;
    for n in 1..=MAX_SLOTS {
        let name = Name::parse(&format!("s{n}")).map_err(io::Error::other)?;
        let slot = dir.join(name.as_str());
        fs::create_dir_all(&slot)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(slot.join("claim.lock"))?;
        match lock.try_lock() {
            Ok(()) => {
                return Ok(Claim {
                    name,
                    dir: slot,
                    _lock: lock,
                })
            }
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "every slot under {} is held ({MAX_SLOTS} servers)",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Locks belong to open files, not processes: each claim below opens the file anew, so they
    // conflict exactly as claims by separate processes do.
    #[test]
    fn replicas_take_distinct_slots_and_a_freed_one_is_taken_again() {
        let tmp = tempfile::tempdir().unwrap();
        let a = claim(tmp.path()).unwrap();
        let b = claim(tmp.path()).unwrap();
        let c = claim(tmp.path()).unwrap();
        let names: Vec<&str> = [&a, &b, &c].iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "s3"]);
        assert_eq!(b.dir, tmp.path().join("s2"));
        // s2 stops; whoever starts next takes s2 back, not a fourth slot.
        drop(b);
        let again = claim(tmp.path()).unwrap();
        assert_eq!(again.name.as_str(), "s2");
        assert_eq!(again.dir, tmp.path().join("s2"));
    }
}
