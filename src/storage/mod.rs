//! Durable state in one redb file (`<data-dir>/chatctl.redb`): accounts,
//! sessions, rooms, memberships and messages. redb is blocking, so async code
//! calls these methods through `spawn_blocking` or the message writer thread.

pub(crate) mod accounts;
pub mod backup;
pub mod files;
pub(crate) mod messages;
pub mod migrations;
pub mod recovery;
pub(crate) mod rooms;
pub(crate) mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase};

pub use accounts::{SessionRecord, UserRecord};
pub use messages::{
    AmendRefusal, EntryKind, MarkerMove, Message, NewMessage, PageEnd, PageFrom, ReadState, SocketHistory, UNREAD_CAP,
};
pub use rooms::{ConversationSummary, RoomSummary};

/// A cluster's entry ids: the writes of the stream record at offset `o`
/// take the ids `o * IDS_PER_STREAM_RECORD + index` (see `log::write`).
/// Storage knows it only to say which ids a stream offset has applied.
pub const IDS_PER_STREAM_RECORD: u64 = 1024;

/// The file name inside the data dir.
pub const DB_FILE: &str = "chatctl.redb";

/// How long `Store::open` waits for a lock held by another process. A
/// process killed a moment ago (a restart after `kill -9`) can still hold
/// it while the kernel tears it down; a live server holds it for good.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Below this much free space in the data dir's file system a commit is
/// likely to fail, so `/readyz` says the node is not ready before one does.
pub const MIN_FREE_BYTES: u64 = 512 * 1024;
/// How often a held lock is tried again while waiting.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// Everything that can go wrong with storage, worded with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data dir cannot be created or written: wrong path or permissions.
    #[error(
        "cannot create or write the data dir {path}: {source}. Choose a writable --data-dir or fix its permissions"
    )]
    DataDirNotWritable {
        /// The data dir.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another process (most likely a running chatctl) holds the database's lock.
    #[error("the database {path} is in use by another running chatctl (redb holds a lock on it). Stop that process, or point this one at another --data-dir")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database file exists but is empty: refused, since redb would
    /// start a fresh, empty database over it.
    #[error("the database {path} is an empty file: it holds no accounts or messages, and chatctl will not start a fresh database over it. Restore a backup with `chatctl restore --data-dir {dir} --from FILE --force`, or remove the empty file to start afresh", dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    EmptyDatabaseFile {
        /// The database file.
        path: PathBuf,
    },
    /// A newer chatctl wrote this file; this one must not touch it.
    #[error("the database {path} was written by a newer chatctl (schema version {found}, this build knows up to {supported}). Run the newer chatctl, or restore a backup made with this version")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: u64,
        /// The newest this build knows.
        supported: u64,
    },
    /// An older chatctl wrote this file; `chatctl migrate` brings it up to date.
    #[error("the database {path} is at schema version {found} and this chatctl needs {current}. Run `chatctl migrate --data-dir {dir}` first", dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    NeedsMigration {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: u64,
        /// The version this build needs.
        current: u64,
    },
    /// Another account holds this name in some ASCII case; the form asks for another.
    #[error("the username is already taken")]
    UsernameTaken,
    /// The setup page lost a race: an account already exists.
    #[error("setup is closed: an account already exists")]
    SetupClosed,
    /// A record would not decode: the file was changed outside chatctl or is damaged.
    #[error("stored record is unreadable ({0}); restore the data dir from a backup")]
    Corrupt(String),
    /// The integrity check at open failed or redb panicked opening
    /// it; the file is kept for inspection.
    #[error("the database {path} is damaged ({detail}) and was not opened. Restore your last backup: stop chatctl, then `chatctl restore --data-dir {dir} --from BACKUP --force` (the damaged file is kept beside it)", dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What the check or the panic said.
        detail: String,
    },
    /// A storage call panicked; the node reports itself unready until restarted.
    #[error("the database layer failed unexpectedly ({0}); the file may be damaged. Take a copy with `chatctl backup`, stop the server, and restart it; if it will not start, restore a backup with `chatctl restore`")]
    Panicked(String),
    /// Writes fail (disk full, I/O error) or the database is being reopened; `recovery` clears it.
    #[error("storage cannot write ({0}); the node reopens its database by itself once the disk takes writes again. If the disk is full, free space in the data dir's file system")]
    Unavailable(String),
    /// Any other redb error, kept whole for the log.
    #[error("storage error: {0}. If the disk is full, free space and retry")]
    Redb(#[from] redb::Error),
}

impl StorageError {
    /// Whether this is the file failing (disk full, an I/O error), after
    /// which redb refuses every later call until the database is reopened,
    /// rather than a refusal or a bad record.
    pub fn is_io_failure(&self) -> bool {
        match self {
            StorageError::Unavailable(_) => true,
            StorageError::Redb(error) => {
                matches!(error, redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed)
            }
            _ => false,
        }
    }
}

macro_rules! redb_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Redb(e.into())
            }
        }
    )*};
}
redb_error_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Every storage call can fail only with a `StorageError`.
pub type Result<T> = std::result::Result<T, StorageError>;

/// A handle on the open database; cheap to clone. Every clone sees the
/// same database, also after `recovery` has reopened it.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// The open database; `None` while a reopen is under way or has failed.
    db: RwLock<Option<Arc<Database>>>,
    /// Why writes fail, from the first failed write until a reopen
    /// succeeds; `recovery` waits on it.
    write_failure: tokio::sync::watch::Sender<Option<String>>,
    /// What a storage call that panicked said: the file may be damaged, so
    /// the node says it is not ready until it is restarted.
    panicked: std::sync::OnceLock<String>,
}

/// How `Store::open` treats the schema version it finds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SchemaCheck {
    /// Refuse a database that is not at exactly this build's version.
    RequireCurrent,
    /// Open whatever is there (short of a newer schema) so that migrations can run.
    ForMigration,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`. A new data dir
    /// is made 0700 and a new database 0600 (`files`); existing ones whose
    /// mode lets group or others in are logged as warnings with their fix.
    /// A new database is created at the current schema version; only a
    /// missing file is new, an empty one is refused. A database locked by
    /// another process is waited for up to `LOCK_WAIT`.
    pub fn open(data_dir: &Path, check: SchemaCheck) -> Result<Store> {
        Self::open_waiting(data_dir, check, LOCK_WAIT)
    }

    /// `open`, waiting up to `lock_wait` for a held lock.
    pub fn open_waiting(data_dir: &Path, check: SchemaCheck, lock_wait: Duration) -> Result<Store> {
        let not_writable = |source| StorageError::DataDirNotWritable { path: data_dir.to_path_buf(), source };
        files::create_data_dir(data_dir).map_err(not_writable)?;
        let path = data_dir.join(DB_FILE);
        // Probe writability ourselves: redb's own error for a read-only dir is
        // an unhelpful "permission denied" without the path.
        let probe = data_dir.join(".chatctl-write-probe");
        std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)).map_err(not_writable)?;
        // redb would create a missing file with the umask's mode (often 0644).
        let created = files::create_db_file(&path).map_err(not_writable)?;
        // redb initialises an empty file as a new database: an existing one
        // that is empty (truncated, or a bad copy) would silently start over
        // without a single account.
        if !created && std::fs::metadata(&path).map_err(not_writable)?.len() == 0 {
            return Err(StorageError::EmptyDatabaseFile { path });
        }
        let db = checked(create_waiting_unwinding(&path, lock_wait), &path)?;
        for loose in files::loose_permissions(data_dir) {
            tracing::warn!("{loose}");
        }
        migrations::initialise_if_new(&db)?;
        let found = migrations::schema_version(&db)?;
        let current = migrations::CURRENT_VERSION;
        if found > current {
            return Err(StorageError::NewerSchema { path, found, supported: current });
        }
        if check == SchemaCheck::RequireCurrent && found < current {
            return Err(StorageError::NeedsMigration { path, found, current });
        }
        let shared = Shared {
            path,
            db: RwLock::new(Some(Arc::new(db))),
            write_failure: tokio::sync::watch::Sender::new(None),
            panicked: std::sync::OnceLock::new(),
        };
        Ok(Store { shared: Arc::new(shared) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The raw database, for the storage modules and `chatctl migrate`;
    /// `Unavailable` while it is being reopened after a write failure.
    pub fn db(&self) -> Result<Arc<Database>> {
        let slot = self.shared.db.read().unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or_else(|| {
            let why = self.write_failure().unwrap_or_else(|| "the database is being reopened".to_owned());
            StorageError::Unavailable(why)
        })
    }

    /// Runs a storage call on the blocking pool, so that disk waits never
    /// stall the sockets served by the runtime. A panic in the database
    /// layer (a damaged file, a bug) fails this call with `Panicked`, not
    /// the worker or the connection, and marks the store unready.
    pub async fn call<T, F>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || call(&store)).await {
            Ok(result) => result,
            Err(join_error) => {
                let what = match join_error.try_into_panic() {
                    Ok(payload) => panic_text(&*payload),
                    Err(_) => "the storage task was cancelled".to_owned(),
                };
                let error = StorageError::Panicked(what.clone());
                if self.shared.panicked.set(what).is_ok() {
                    tracing::error!(%error, "storage call panicked; this node now reports itself unready");
                }
                Err(error)
            }
        }
    }

    /// Why writes are failing (disk full, an I/O error), until the database
    /// has been reopened; `None` while they work.
    pub fn write_failure(&self) -> Option<String> {
        self.shared.write_failure.borrow().clone()
    }

    /// Resolves once no write failure is outstanding (at once if none is).
    pub async fn until_writable(&self) {
        let mut failures = self.shared.write_failure.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = failures.wait_for(Option::is_none).await;
    }

    /// Notes `result`'s I/O failure, if it is one: redb refuses every call
    /// after one, so the database must be reopened (`recovery`).
    fn noting_failure<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            if error.is_io_failure() {
                let reason = error.to_string();
                self.shared.write_failure.send_if_modified(|failure| {
                    if failure.is_some() {
                        return false;
                    }
                    tracing::error!(%error, "storage cannot write; writes are refused until the database is reopened");
                    *failure = Some(reason);
                    true
                });
            }
        }
        result
    }

    /// Cluster nodes: the next stream offset to apply; `None` for a node
    /// that has applied nothing from a stream.
    pub fn stream_next_offset(&self) -> Result<Option<u64>> {
        let txn = self.db()?.begin_read()?;
        let meta = txn.open_table(schema::META)?;
        let next = meta.get(schema::STREAM_NEXT_OFFSET_KEY)?.map(|v| v.value());
        Ok(next)
    }

    /// Whether this database holds a single node's data (accounts, or
    /// messages with ids from the local counter), which never went through
    /// a cluster's stream and so must not be mixed into one.
    pub fn has_single_node_data(&self) -> Result<bool> {
        let txn = self.db()?.begin_read()?;
        let meta = txn.open_table(schema::META)?;
        let next_local = meta.get(schema::NEXT_MESSAGE_ID_KEY)?.map_or(1, |v| v.value());
        let users = txn.open_table(schema::USERS)?;
        Ok(self.stream_next_offset()?.is_none() && (next_local > 1 || redb::ReadableTableMetadata::len(&users)? > 0))
    }

    /// A cheap read that proves the file is readable, no write has failed
    /// since it was opened and no call panicked; `/readyz` uses it.
    pub fn check_ready(&self) -> Result<()> {
        if let Some(what) = self.shared.panicked.get() {
            return Err(StorageError::Panicked(what.clone()));
        }
        if let Some(failure) = self.write_failure() {
            return Err(StorageError::Unavailable(failure));
        }
        if let Some(free) = files::free_bytes(self.path()).filter(|free| *free < MIN_FREE_BYTES) {
            return Err(StorageError::Unavailable(format!("the data dir's file system has only {free} bytes free")));
        }
        self.noting_failure((|| {
            let txn = self.db()?.begin_read()?;
            let meta = txn.open_table(schema::META)?;
            meta.get(schema::SCHEMA_VERSION_KEY)?;
            Ok(())
        })())
    }
}

/// `create_waiting`, with a panic of redb's (a damaged file can make it
/// panic while opening) turned into `Damaged`.
fn create_waiting_unwinding(path: &Path, wait: Duration) -> Result<Database> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| create_waiting(path, wait)))
        .unwrap_or_else(|panic| Err(StorageError::Damaged { path: path.to_path_buf(), detail: panic_text(&*panic) }))
}

/// Checks every page of the opened database (redb's checksums) before
/// anything reads or writes it: a damaged file is refused at start instead
/// of serving, and then panicking on, the damaged part. Takes time in
/// proportion to the file (about a second per few hundred MB).
fn checked(db: Result<Database>, path: &Path) -> Result<Database> {
    let mut db = db?;
    let damaged = |detail: String| StorageError::Damaged { path: path.to_path_buf(), detail };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.check_integrity())) {
        Ok(Ok(true)) => Ok(db),
        Ok(Ok(false)) => {
            tracing::error!(
                path = %path.display(),
                "the database failed its integrity check and redb repaired it; the latest changes may be lost. Compare with your last backup"
            );
            Ok(db)
        }
        Ok(Err(error)) => Err(damaged(error.to_string())),
        Err(panic) => Err(damaged(panic_text(&*panic))),
    }
}

/// What a caught panic said, for logs and errors.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Opens `path` with redb, retrying while another process holds its lock,
/// for up to `wait`; says once that it waits.
fn create_waiting(path: &Path, wait: Duration) -> Result<Database> {
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        match Database::create(path) {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                if !said {
                    said = true;
                    tracing::info!(
                        "the database {} is locked by another process; waiting up to {}s in case it is one that is exiting",
                        path.display(),
                        wait.as_secs_f32()
                    );
                }
                std::thread::sleep(LOCK_RETRY.min(deadline.saturating_duration_since(Instant::now())));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StorageError::Locked { path: path.to_path_buf() })
            }
            Err(e) => return Err(StorageError::Redb(e.into())),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise infallibly")
}

/// Milliseconds since the Unix epoch; storage keeps times in this form.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A fresh store in its own temp dir; keep the dir alive as long as the store.
#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap();
    (dir, store)
}

/// An active, ordinary account for tests (its hash matches no password).
#[cfg(test)]
pub(crate) fn test_user(name: &str) -> UserRecord {
    UserRecord {
        username: crate::domain::Username::from_stored(name).expect("a valid test username"),
        email: String::new(),
        password_hash: "$argon2id$x".into(),
        is_superuser: false,
        is_active: true,
        created_at_ms: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_past_the_wait_is_refused_as_locked() {
        let (dir, _store) = test_store();
        let started = Instant::now();
        match Store::open_waiting(dir.path(), SchemaCheck::RequireCurrent, Duration::from_millis(300)) {
            Err(StorageError::Locked { .. }) => {}
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("expected Locked, got a second handle"),
        }
        assert!(started.elapsed() >= Duration::from_millis(300), "gave up before the wait was over");
    }

    #[test]
    fn a_lock_released_while_waiting_lets_the_open_through() {
        let (dir, store) = test_store();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            drop(store);
        });
        let started = Instant::now();
        let reopened = Store::open(dir.path(), SchemaCheck::RequireCurrent);
        releaser.join().unwrap();
        assert!(reopened.is_ok(), "{}", reopened.err().unwrap());
        assert!(started.elapsed() < LOCK_WAIT, "waited for the whole LOCK_WAIT");
    }

    #[test]
    fn an_empty_database_file_is_refused_not_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        let err = Store::open(dir.path(), SchemaCheck::RequireCurrent).err().expect("an empty file was opened");
        assert!(matches!(err, StorageError::EmptyDatabaseFile { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&dir.path().join(DB_FILE).display().to_string()), "{message}");
        assert!(message.contains("chatctl restore --data-dir"), "{message}");
        assert_eq!(std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len(), 0, "the empty file was written to");
    }

    #[test]
    fn an_unwritable_data_dir_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file, SchemaCheck::RequireCurrent).err().unwrap();
        assert!(matches!(err, StorageError::DataDirNotWritable { .. }), "{err}");
        assert!(err.to_string().contains("not-a-dir"));
    }
}
