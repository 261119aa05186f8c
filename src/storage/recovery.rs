//! Getting writes back after the disk failed one (a full disk, an I/O
//! error). redb refuses every call after such a failure ("Previous I/O
//! error occurred") until the database is closed and opened again, so the
//! node would stay broken long after space returned. `run` waits for a
//! failed write, then every `RETRY` checks whether the data dir takes a
//! probe write and, once it does, reopens the database in place: every
//! `Store` clone sees the new handle. Writes were refused meanwhile, and
//! only committed writes were ever acknowledged, so nothing acknowledged is
//! lost; redb's open repairs a commit the failure cut short.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use redb::Database;

use super::{create_waiting, Result, StorageError, Store, LOCK_WAIT};
use crate::shutdown::Stopping;

/// How often a failed store checks whether the disk takes writes again.
pub const RETRY: Duration = Duration::from_secs(2);
/// Bytes the probe writes and syncs before a reopen is tried: a disk that
/// cannot take this much cannot take a commit either.
const PROBE_BYTES: usize = 256 * 1024;
/// How long a reopen waits for calls still holding the failed handle (they
/// fail at once, so this is only a safety net).
const HANDLE_WAIT: Duration = Duration::from_secs(5);

/// What one reopen attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Writes had not failed: nothing to do.
    Healthy,
    /// The disk still refuses the probe write; the failed handle is kept.
    DiskStillRefuses(String),
    /// The database was closed and opened again; writes are taken.
    Reopened,
}

/// Runs until shutdown: after each write failure, retries a reopen every
/// `RETRY` until one succeeds.
pub async fn run(store: Store, mut stopping: Stopping) {
    let _running = stopping.running();
    let mut failures = store.shared.write_failure.subscribe();
    loop {
        tokio::select! {
            _ = stopping.requested() => return,
            failed = failures.wait_for(Option::is_some) => if failed.is_err() { return },
        }
        let since = Instant::now();
        let mut told = false;
        loop {
            let attempt_store = store.clone();
            let attempt = tokio::task::spawn_blocking(move || attempt_store.reopen_if_failed()).await;
            match attempt {
                Ok(Ok(Attempt::Reopened)) => {
                    tracing::info!(
                        after_secs = since.elapsed().as_secs(),
                        "storage takes writes again: the database was reopened"
                    );
                    break;
                }
                Ok(Ok(Attempt::Healthy)) => break,
                Ok(Ok(Attempt::DiskStillRefuses(why))) if !told => {
                    told = true;
                    tracing::warn!(
                        data_dir = %store.path().parent().unwrap_or(Path::new(".")).display(),
                        "the data dir still refuses writes ({why}); free space there and the node resumes within seconds, without a restart"
                    );
                }
                Ok(Ok(Attempt::DiskStillRefuses(_))) => {}
                Ok(Err(error)) => tracing::warn!(%error, "reopening the database failed; trying again"),
                Err(panic) => tracing::error!(%panic, "reopening the database panicked; trying again"),
            }
            tokio::select! {
                _ = stopping.requested() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}

impl Store {
    /// When a write has failed: probes the data dir and, if it takes
    /// writes, closes and reopens the database. Blocking.
    pub fn reopen_if_failed(&self) -> Result<Attempt> {
        if self.write_failure().is_none() {
            return Ok(Attempt::Healthy);
        }
        if let Err(why) = probe_write(self.path().parent().unwrap_or(Path::new("."))) {
            return Ok(Attempt::DiskStillRefuses(why.to_string()));
        }
        // While the slot is empty, calls get `Unavailable` (a 503), as they
        // got the failed handle's errors before.
        let failed = self.shared.db.write().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(failed) = failed {
            // redb releases the file lock only when the last handle goes:
            // calls holding a clone fail at once on the failed file.
            match wait_for_last_handle(failed) {
                Ok(db) => drop(db.close()),
                Err(still_shared) => {
                    *self.shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(still_shared);
                    return Err(StorageError::Unavailable(
                        "a storage call still holds the failed database; retrying".into(),
                    ));
                }
            }
        }
        let db = create_waiting(self.path(), LOCK_WAIT)?;
        *self.shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        self.shared.write_failure.send_replace(None);
        Ok(Attempt::Reopened)
    }
}

/// The database itself once no other clone of `shared` is left.
fn wait_for_last_handle(mut shared: Arc<Database>) -> std::result::Result<Database, Arc<Database>> {
    let deadline = Instant::now() + HANDLE_WAIT;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(db) => return Ok(db),
            Err(still) if Instant::now() < deadline => {
                shared = still;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(still) => return Err(still),
        }
    }
}

/// Writes, syncs and removes a probe file in `data_dir`.
fn probe_write(data_dir: &Path) -> std::io::Result<()> {
    let probe = data_dir.join(".chatctl-space-probe");
    let written = std::fs::File::create(&probe).and_then(|mut file| {
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_store;

    #[test]
    fn a_healthy_store_is_left_alone() {
        let (_dir, store) = test_store();
        assert_eq!(store.reopen_if_failed().unwrap(), Attempt::Healthy);
    }

    #[test]
    fn a_failed_store_reopens_and_every_clone_sees_the_new_handle() {
        let (_dir, store) = test_store();
        let clone = store.clone();
        let user = crate::storage::test_user("ann");
        store.create_user(&user).unwrap();
        // What a write on a full disk leaves behind.
        let failed: Result<()> = Err(StorageError::Redb(redb::Error::PreviousIo));
        assert!(store.noting_failure(failed).is_err());
        assert!(clone.write_failure().is_some());
        assert!(matches!(clone.check_ready(), Err(StorageError::Unavailable(_))));
        assert_eq!(store.reopen_if_failed().unwrap(), Attempt::Reopened);
        assert_eq!(clone.write_failure(), None);
        clone.check_ready().unwrap();
        assert!(clone.user("ann").unwrap().is_some(), "a committed account was lost in the reopen");
        clone.create_user(&crate::storage::test_user("bob")).unwrap();
    }
}
