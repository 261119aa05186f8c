//! Durable state in one redb file (`<data-dir>/chatctl.redb`): accounts,
//! sessions, rooms, memberships and messages. redb is blocking, so async code
//! calls these methods through `spawn_blocking` or the message writer thread.

pub(crate) mod accounts;
pub mod backup;
pub mod files;
pub(crate) mod messages;
pub mod migrations;
pub(crate) mod rooms;
pub(crate) mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase};

pub use accounts::{SessionRecord, UserRecord};
pub use messages::{Message, NewMessage, SocketHistory};
pub use rooms::ConversationSummary;

/// The file name inside the data dir.
pub const DB_FILE: &str = "chatctl.redb";

/// Everything that can go wrong with storage, worded with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "cannot create or write the data dir {path}: {source}. Choose a writable --data-dir or fix its permissions"
    )]
    DataDirNotWritable { path: PathBuf, source: std::io::Error },
    #[error("the database {path} is in use by another running chatctl (redb holds a lock on it). Stop that process, or point this one at another --data-dir")]
    Locked { path: PathBuf },
    #[error("the database {path} was written by a newer chatctl (schema version {found}, this build knows up to {supported}). Run the newer chatctl, or restore a backup made with this version")]
    NewerSchema { path: PathBuf, found: u64, supported: u64 },
    #[error("the database {path} is at schema version {found} and this chatctl needs {current}. Run `chatctl migrate --data-dir {dir}` first", dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    NeedsMigration { path: PathBuf, found: u64, current: u64 },
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("setup is closed: an account already exists")]
    SetupClosed,
    #[error("stored record is unreadable ({0}); restore the data dir from a backup")]
    Corrupt(String),
    #[error("storage error: {0}. If the disk is full, free space and retry")]
    Redb(#[from] redb::Error),
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

pub type Result<T> = std::result::Result<T, StorageError>;

/// A handle on the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
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
    /// A new database is created at the current schema version.
    pub fn open(data_dir: &Path, check: SchemaCheck) -> Result<Store> {
        let not_writable = |source| StorageError::DataDirNotWritable { path: data_dir.to_path_buf(), source };
        files::create_data_dir(data_dir).map_err(not_writable)?;
        let path = data_dir.join(DB_FILE);
        // Probe writability ourselves: redb's own error for a read-only dir is
        // an unhelpful "permission denied" without the path.
        let probe = data_dir.join(".chatctl-write-probe");
        std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)).map_err(not_writable)?;
        // redb would create a missing file with the umask's mode (often 0644).
        files::create_db_file(&path).map_err(not_writable)?;
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StorageError::Locked { path }),
            Err(e) => return Err(StorageError::Redb(e.into())),
        };
        for loose in files::loose_permissions(data_dir) {
            tracing::warn!("{loose}");
        }
        let store = Store { db: Arc::new(db), path };
        migrations::initialise_if_new(&store.db)?;
        let found = migrations::schema_version(&store.db)?;
        let current = migrations::CURRENT_VERSION;
        if found > current {
            return Err(StorageError::NewerSchema { path: store.path, found, supported: current });
        }
        if check == SchemaCheck::RequireCurrent && found < current {
            return Err(StorageError::NeedsMigration { path: store.path, found, current });
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw database, for the storage modules and `chatctl migrate`.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Cluster nodes: the next stream offset to apply; `None` for a node
    /// that has applied nothing from a stream.
    pub fn stream_next_offset(&self) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(schema::META)?;
        let next = meta.get(schema::STREAM_NEXT_OFFSET_KEY)?.map(|v| v.value());
        Ok(next)
    }

    /// Whether this database holds a single node's data (accounts, or
    /// messages with ids from the local counter), which never went through
    /// a cluster's stream and so must not be mixed into one.
    pub fn has_single_node_data(&self) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(schema::META)?;
        let next_local = meta.get(schema::NEXT_MESSAGE_ID_KEY)?.map_or(1, |v| v.value());
        let users = txn.open_table(schema::USERS)?;
        Ok(self.stream_next_offset()?.is_none() && (next_local > 1 || redb::ReadableTableMetadata::len(&users)? > 0))
    }

    /// A cheap read that proves the file is readable; `/readyz` uses it.
    pub fn check_readable(&self) -> Result<()> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(schema::META)?;
        meta.get(schema::SCHEMA_VERSION_KEY)?;
        Ok(())
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
        username: name.into(),
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
    fn a_second_open_of_the_same_dir_is_refused_as_locked() {
        let (dir, _store) = test_store();
        match Store::open(dir.path(), SchemaCheck::RequireCurrent) {
            Err(StorageError::Locked { .. }) => {}
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("expected Locked, got a second handle"),
        }
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
