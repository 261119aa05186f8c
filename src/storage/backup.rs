//! Online backups and restores of the database file. A backup copies every
//! table (`schema::for_each_table`) out of ONE read transaction: redb's MVCC
//! snapshot, so the writer is never blocked and the copy is consistent. It
//! is written to a temp file next to the target, fsynced and renamed into
//! place, so a half-written backup never carries the target's name.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, TableHandle, WriteTransaction};

use super::{migrations, schema, StorageError, Store, DB_FILE};

/// What can stop a backup or a restore, worded with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database could not be opened or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A file operation failed; `what` and `path` say which.
    #[error("cannot {what} {path}: {cause}")]
    Io {
        /// The operation, as a verb phrase (`create`, `fsync`).
        what: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// What the OS said.
        cause: io::Error,
    },
    /// A table this build does not know: a copy without it would lose data silently.
    #[error("the database holds a table this chatctl does not know ({0}); refusing to write an incomplete backup. Back it up with the chatctl version that wrote it")]
    UnknownTable(String),
    /// The target exists and `--force` was not given.
    #[error("{0} already exists; pass --force to replace it, or choose another file")]
    Exists(PathBuf),
    /// The file to restore is not a redb database with chatctl's tables.
    #[error("{path} is not a chatctl database ({reason}); pass a file written by `chatctl backup`")]
    NotADatabase {
        /// The file given to restore.
        path: PathBuf,
        /// What redb or the schema check said.
        reason: String,
    },
    /// The file to restore was written by a newer chatctl.
    #[error("{path} was written by a newer chatctl (schema version {found}, this build reads up to {supported}); restore it with that version")]
    NewerSchema {
        /// The file given to restore.
        path: PathBuf,
        /// Its schema version.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |cause| BackupError::Io { what, path: path.to_path_buf(), cause }
}

/// What a backup wrote.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BackupSummary {
    /// Where the backup is; `snapshot_into` leaves it empty for its caller to fill in.
    pub path: PathBuf,
    /// Tables copied, for the summary line.
    pub tables: u64,
    /// Rows copied, across all tables.
    pub rows: u64,
    /// The backup file's size.
    pub bytes: u64,
    /// Cluster nodes: the stream offset the copy resumes from.
    pub stream_next_offset: Option<u64>,
}

/// Copies a consistent snapshot of `store` to `to` (mode 0600) through a
/// temp file next to it. Blocking: call it on a blocking thread.
pub fn write_backup(store: &Store, to: &Path, overwrite: bool) -> Result<BackupSummary, BackupError> {
    if !overwrite && to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let temp = PendingBackup::create(to)?;
    let file = temp.file.try_clone().map_err(io_error("reopen", &temp.path))?;
    let summary = snapshot_into(store, file)?;
    let bytes = temp.publish(to, overwrite)?;
    Ok(BackupSummary { path: to.to_path_buf(), bytes, ..summary })
}

/// Writes a consistent snapshot of `store` into `file`, an empty file opened
/// for writing (the server gets it from the client over the control socket,
/// so it needs no access to the backup's directory). Durable when it
/// returns. Blocking.
pub fn snapshot_into(store: &Store, file: File) -> Result<BackupSummary, BackupError> {
    // The snapshot is taken first: everything committed before this line is in the copy.
    let snapshot = store.db()?.begin_read().map_err(StorageError::from)?;
    let known = schema::table_names();
    for table in snapshot.list_tables().map_err(StorageError::from)? {
        if !known.iter().any(|name| name == table.name()) {
            return Err(BackupError::UnknownTable(table.name().to_owned()));
        }
    }
    if let Some(table) = snapshot.list_multimap_tables().map_err(StorageError::from)?.next() {
        return Err(BackupError::UnknownTable(redb::MultimapTableHandle::name(&table).to_owned()));
    }
    if !file.metadata().is_ok_and(|m| m.is_file() && m.len() == 0) {
        return Err(BackupError::Io {
            what: "write a backup into",
            path: PathBuf::from("the file sent with the request"),
            cause: io::Error::new(io::ErrorKind::InvalidInput, "it is not an empty regular file"),
        });
    }
    let backend = FileBackend::new(file).map_err(|e| StorageError::Redb(e.into()))?;
    let db = Database::builder().create_with_backend(backend).map_err(|e| StorageError::Redb(e.into()))?;
    let txn = db.begin_write().map_err(StorageError::from)?;
    let mut copier = Copier { from: &snapshot, to: &txn, tables: 0, rows: 0 };
    schema::for_each_table(&mut copier)?;
    let (tables, rows) = (copier.tables, copier.rows);
    txn.commit().map_err(StorageError::from)?; // durable: redb fsyncs on commit
    drop(db);
    let meta = snapshot.open_table(schema::META).map_err(StorageError::from)?;
    let stream_next_offset = meta.get(schema::STREAM_NEXT_OFFSET_KEY).map_err(StorageError::from)?.map(|v| v.value());
    Ok(BackupSummary { path: PathBuf::new(), tables, rows, bytes: 0, stream_next_offset })
}

/// A backup being written: an owner-only temp file next to its target
/// (same file system, so the final rename is atomic), removed unless
/// published.
pub struct PendingBackup {
    /// The temp file's path, removed on drop unless published.
    pub path: PathBuf,
    /// Open for writing: the caller (or the server, sent over the
    /// control socket) writes the copy into it.
    pub file: File,
    published: bool,
}

impl PendingBackup {
    /// Creates `.<name>.partial-<random>` (0600) in `to`'s directory.
    pub fn create(to: &Path) -> Result<PendingBackup, BackupError> {
        let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "chatctl-backup".into());
        let dir = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let path = dir.join(format!(".{name}.partial-{}", crate::auth::session::random_hex::<4>()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("create", &path))?;
        Ok(PendingBackup { path, file, published: false })
    }

    /// fsync, 0600, rename to `to` (refused if `to` appeared meanwhile and
    /// `overwrite` is off), fsync the directory; returns the size.
    pub fn publish(mut self, to: &Path, overwrite: bool) -> Result<u64, BackupError> {
        self.file.sync_all().map_err(io_error("fsync", &self.path))?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_error("set permissions on", &self.path))?;
        let bytes = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if !overwrite && to.exists() {
            return Err(BackupError::Exists(to.to_path_buf()));
        }
        std::fs::rename(&self.path, to).map_err(io_error("rename the finished backup to", to))?;
        self.published = true;
        sync_dir(to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
        Ok(bytes)
    }
}

impl Drop for PendingBackup {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Copies a table's rows, whatever its types.
struct Copier<'a> {
    from: &'a ReadTransaction,
    to: &'a WriteTransaction,
    tables: u64,
    rows: u64,
}

impl schema::TableVisitor for Copier<'_> {
    type Error = StorageError;

    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: redb::TableDefinition<'static, K, V>,
    ) -> Result<(), StorageError> {
        let source = match self.from.open_table(table) {
            Ok(source) => source,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let mut target = self.to.open_table(table)?;
        for entry in redb::ReadableTable::iter(&source)? {
            let (key, value) = entry?;
            target.insert(key.value(), value.value())?;
            self.rows += 1;
        }
        self.tables += 1;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("fsync the directory", dir))
}

/// Checks that `path` is a chatctl database this build can read; returns
/// its schema version and, for a cluster node's copy, its stream offset.
pub fn check_backup(path: &Path) -> Result<(u64, Option<u64>), BackupError> {
    let not_db = |reason: String| BackupError::NotADatabase { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(not_db("no such file".into()));
    }
    let db = ReadOnlyDatabase::open(path).map_err(|e| not_db(e.to_string()))?;
    let txn = db.begin_read().map_err(|e| not_db(e.to_string()))?;
    let meta = txn.open_table(schema::META).map_err(|e| not_db(format!("no meta table: {e}")))?;
    let version = meta.get(schema::SCHEMA_VERSION_KEY).map_err(|e| not_db(e.to_string()))?.map_or(0, |v| v.value());
    if version == 0 {
        return Err(not_db("it records no schema version".into()));
    }
    if version > migrations::CURRENT_VERSION {
        return Err(BackupError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: migrations::CURRENT_VERSION,
        });
    }
    let offset = meta.get(schema::STREAM_NEXT_OFFSET_KEY).map_err(|e| not_db(e.to_string()))?.map(|v| v.value());
    Ok((version, offset))
}

/// Puts the backup `from` in place as `data_dir`'s database. The caller has
/// made sure no server runs there. An existing database is kept beside it
/// as `chatctl.redb.replaced-<ms>`, never deleted.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Option<PathBuf>, BackupError> {
    create_private_dir(data_dir)?;
    let target = data_dir.join(DB_FILE);
    let temp = data_dir.join(format!(".{DB_FILE}.restoring-{}", crate::auth::session::random_hex::<4>()));
    let copied = (|| {
        let mut source = File::open(from).map_err(io_error("open", from))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        io::copy(&mut source, &mut out).map_err(io_error("write", &temp))?;
        out.sync_all().map_err(io_error("fsync", &temp))
    })();
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    let kept = if target.exists() {
        let kept = data_dir.join(format!("{DB_FILE}.replaced-{}", super::now_ms()));
        if let Err(error) = std::fs::hard_link(&target, &kept) {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error("keep the replaced database as", &kept)(error));
        }
        Some(kept)
    } else {
        None
    };
    if let Err(error) = std::fs::rename(&temp, &target) {
        let _ = std::fs::remove_file(&temp);
        if let Some(kept) = &kept {
            let _ = std::fs::remove_file(kept);
        }
        return Err(io_error("move the restored database to", &target)(error));
    }
    sync_dir(data_dir)?;
    Ok(kept)
}

/// Whether `path` names the live database file `database` (resolving the
/// directories, so `./d/chatctl.redb` and `/srv/d/chatctl.redb` match): a
/// backup renamed over it would unlink the file under the server.
pub fn names_the_database(database: &Path, path: &Path) -> bool {
    let resolve = |path: &Path| {
        let dir = path
            .parent()
            .and_then(|d| std::fs::canonicalize(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok());
        dir.zip(path.file_name()).map(|(dir, name)| dir.join(name))
    };
    matches!((resolve(database), resolve(path)), (Some(a), Some(b)) if a == b)
}

/// Creates the data dir owner-only (0700) when it is missing.
fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    super::files::create_data_dir(dir).map_err(io_error("create the data dir", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{test_store, test_user, SchemaCheck};

    #[test]
    fn a_backup_copies_every_table_and_restores_to_an_equal_database() {
        let (_dir, store) = test_store();
        store.create_user(&test_user("amy")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.redb");
        let summary = write_backup(&store, &file, false).unwrap();
        assert_eq!(summary.tables, schema::table_names().len() as u64);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_backup(&store, &file, false), Err(BackupError::Exists(_))));
        assert_eq!(check_backup(&file).unwrap(), (migrations::CURRENT_VERSION, None));
        let restored = out.path().join("data");
        assert!(restore(&file, &restored).unwrap().is_none());
        let copy = Store::open(&restored, SchemaCheck::RequireCurrent).unwrap();
        assert_eq!(copy.users().unwrap(), store.users().unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_read_only_open_keeps_a_server_off_the_file_being_replaced() {
        // `chatctl restore` holds such an open while it swaps the file.
        let (dir, store) = test_store();
        drop(store);
        let held = redb::ReadOnlyDatabase::open(dir.path().join(DB_FILE)).unwrap();
        let short = std::time::Duration::from_millis(200);
        let refused = Store::open_waiting(dir.path(), SchemaCheck::RequireCurrent, short);
        assert!(matches!(refused, Err(StorageError::Locked { .. })));
        drop(held);
        assert!(Store::open(dir.path(), SchemaCheck::RequireCurrent).is_ok());
    }

    #[test]
    fn a_backup_from_a_newer_chatctl_is_refused() {
        let (dir, store) = test_store();
        store
            .write(|txn| {
                txn.open_table(schema::META)?.insert(schema::SCHEMA_VERSION_KEY, migrations::CURRENT_VERSION + 1)?;
                Ok(())
            })
            .unwrap();
        drop(store);
        let found = check_backup(&dir.path().join(DB_FILE));
        assert!(matches!(found, Err(BackupError::NewerSchema { .. })), "{found:?}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x");
        std::fs::write(&file, b"hello").unwrap();
        assert!(matches!(check_backup(&file), Err(BackupError::NotADatabase { .. })));
    }
}
