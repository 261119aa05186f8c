//! Versioned schema steps. Each step runs in its own write transaction that
//! also records the new version, so a step is applied entirely or not at all.
//! A new database gets every step at once, in one transaction.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::{schema, Result, StorageError};

/// Reports progress of a step that walks data: (done, total).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// One schema step: it takes the database from `version - 1` to `version`.
pub struct Step {
    /// The version the step brings the database to; steps are numbered from 1 without gaps.
    pub version: u64,
    /// What the step does, as `chatctl migrate` prints it.
    pub description: &'static str,
    /// Runs the step in the caller's transaction, which also records `version`.
    pub apply: fn(&WriteTransaction, Progress) -> Result<()>,
}

/// Every step, in order. Append new steps; never edit a released one.
pub static STEPS: &[Step] = &[
    Step {
        version: 1,
        description: "create the users, sessions, rooms, memberships and messages tables",
        apply: create_initial_tables,
    },
    Step {
        version: 2,
        description: "index usernames ignoring ASCII case, so that `Bob` cannot be created beside `bob`",
        apply: index_folded_usernames,
    },
    Step {
        version: 3,
        description: "index each conversation's members and add read markers, for unread counts and presence",
        apply: index_members_and_add_read_markers,
    },
];

/// The schema version this build reads and writes: the last step's.
pub const CURRENT_VERSION: u64 = 3;

fn create_initial_tables(txn: &WriteTransaction, _progress: Progress) -> Result<()> {
    txn.open_table(schema::USERS)?;
    txn.open_table(schema::SESSIONS)?;
    txn.open_table(schema::ROOMS)?;
    txn.open_table(schema::MEMBERSHIPS)?;
    let mut meta = txn.open_table(schema::META)?;
    if meta.get(schema::NEXT_MESSAGE_ID_KEY)?.is_none() {
        meta.insert(schema::NEXT_MESSAGE_ID_KEY, 1)?;
    }
    drop(meta);
    txn.open_table(schema::MESSAGES)?;
    Ok(())
}

/// Fills `USERNAME_FOLDS` from the users. A database may already hold two
/// names that differ only in case (older versions allowed it): both stay,
/// and the first in byte order (`Bob` before `bob`) holds the folded name;
/// the other keeps signing in, and neither case of it can be created again.
/// `chatctl migrate` names them afterwards (`Store::case_twins`).
fn index_folded_usernames(txn: &WriteTransaction, progress: Progress) -> Result<()> {
    let users = txn.open_table(schema::USERS)?;
    let mut folds = txn.open_table(schema::USERNAME_FOLDS)?;
    let total = users.len()?;
    for (done, entry) in users.iter()?.enumerate() {
        let (name, _) = entry?;
        let name = name.value();
        let fold = super::accounts::folded(name);
        if folds.get(fold.as_str())?.is_none() {
            folds.insert(fold.as_str(), name)?;
        }
        progress(done as u64 + 1, total);
    }
    Ok(())
}

/// Fills `MEMBERS` from `MEMBERSHIPS` and creates `READ_MARKERS` (empty:
/// every message written before counts as unread until the user reads).
fn index_members_and_add_read_markers(txn: &WriteTransaction, progress: Progress) -> Result<()> {
    let memberships = txn.open_table(schema::MEMBERSHIPS)?;
    let mut members = txn.open_table(schema::MEMBERS)?;
    let total = memberships.len()?;
    for (done, entry) in memberships.iter()?.enumerate() {
        let (key, joined) = entry?;
        let (user, conversation) = key.value();
        members.insert((conversation, user), joined.value())?;
        progress(done as u64 + 1, total);
    }
    txn.open_table(schema::READ_MARKERS)?;
    Ok(())
}

/// The version recorded in the database; 0 when none is.
pub fn schema_version(db: &Database) -> Result<u64> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(schema::META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(meta.get(schema::SCHEMA_VERSION_KEY)?.map(|v| v.value()).unwrap_or(0))
}

/// A database with no tables at all is new: bring it to the current version
/// in one transaction, so `serve` on an empty data dir just works.
pub(super) fn initialise_if_new(db: &Database) -> Result<()> {
    if schema_version(db)? != 0 || has_any_table(db)? {
        return Ok(());
    }
    let txn = db.begin_write()?;
    for step in STEPS {
        (step.apply)(&txn, &|_, _| {})?;
    }
    set_version(&txn, CURRENT_VERSION)?;
    txn.commit()?;
    Ok(())
}

fn has_any_table(db: &Database) -> Result<bool> {
    let txn = db.begin_read()?;
    let any = txn.list_tables().map_err(StorageError::from)?.next().is_some();
    Ok(any)
}

fn set_version(txn: &WriteTransaction, version: u64) -> Result<()> {
    let mut meta = txn.open_table(schema::META)?;
    meta.insert(schema::SCHEMA_VERSION_KEY, version)?;
    Ok(())
}

/// The steps not yet applied to `db`.
pub fn pending(db: &Database) -> Result<Vec<&'static Step>> {
    pending_of(db, STEPS)
}

fn pending_of(db: &Database, steps: &'static [Step]) -> Result<Vec<&'static Step>> {
    let found = schema_version(db)?;
    Ok(steps.iter().filter(|s| s.version > found).collect())
}

/// Applies one step and records its version, atomically.
pub fn apply(db: &Database, step: &Step, progress: Progress) -> Result<()> {
    let txn = db.begin_write()?;
    (step.apply)(&txn, progress)?;
    set_version(&txn, step.version)?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{SchemaCheck, Store};

    #[test]
    fn a_new_database_is_created_at_the_current_version() {
        let (_dir, store) = crate::storage::test_store();
        assert_eq!(schema_version(&store.db().unwrap()).unwrap(), CURRENT_VERSION);
        assert!(pending(&store.db().unwrap()).unwrap().is_empty());
    }

    #[test]
    fn steps_are_numbered_in_order_up_to_the_current_version() {
        for (index, step) in STEPS.iter().enumerate() {
            assert_eq!(step.version, index as u64 + 1);
        }
        assert_eq!(STEPS.last().unwrap().version, CURRENT_VERSION);
    }

    static TEST_STEPS: &[Step] = &[
        Step { version: 1, description: "one", apply: |_, _| Ok(()) },
        Step {
            version: 2,
            description: "two",
            apply: |txn, _| {
                txn.open_table(schema::USERS)?.insert("marker", b"{}".as_slice())?;
                Ok(())
            },
        },
        Step {
            version: 3,
            description: "fails",
            apply: |txn, _| {
                txn.open_table(schema::USERS)?.insert("half-done", b"{}".as_slice())?;
                Err(StorageError::Corrupt("boom".into()))
            },
        },
    ];

    #[test]
    fn a_failing_step_leaves_nothing_behind_and_a_rerun_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        for step in pending_of(&db, &TEST_STEPS[..2]).unwrap() {
            apply(&db, step, &|_, _| {}).unwrap();
        }
        assert_eq!(schema_version(&db).unwrap(), 2);
        assert!(pending_of(&db, &TEST_STEPS[..2]).unwrap().is_empty());
        assert!(apply(&db, &TEST_STEPS[2], &|_, _| {}).is_err());
        assert_eq!(schema_version(&db).unwrap(), 2);
        let txn = db.begin_read().unwrap();
        let users = txn.open_table(schema::USERS).unwrap();
        assert!(users.get("marker").unwrap().is_some());
        assert!(users.get("half-done").unwrap().is_none());
    }

    /// A data dir as version 1 left it, holding `names`.
    fn version_1_data_dir(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join(crate::storage::DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        (STEPS[0].apply)(&txn, &|_, _| {}).unwrap();
        set_version(&txn, 1).unwrap();
        let mut users = txn.open_table(schema::USERS).unwrap();
        for name in names {
            let record = crate::storage::test_user(name);
            users.insert(*name, crate::storage::encode(&record).as_slice()).unwrap();
        }
        drop(users);
        txn.commit().unwrap();
        dir
    }

    #[test]
    fn migrating_indexes_existing_names_and_keeps_names_that_differ_only_in_case() {
        let dir = version_1_data_dir(&["bob", "Bob", "alice", ".."]);
        let store = Store::open(dir.path(), SchemaCheck::ForMigration).unwrap();
        let seen = std::cell::Cell::new((0, 0));
        for step in pending(&store.db().unwrap()).unwrap() {
            apply(&store.db().unwrap(), step, &|done, total| seen.set((done, total))).unwrap();
        }
        assert_eq!(schema_version(&store.db().unwrap()).unwrap(), CURRENT_VERSION);
        assert_eq!(seen.get(), (4, 4));
        drop(store);
        let store = Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap();
        // Both old names stay, each found exactly as written.
        assert_eq!(store.user("Bob").unwrap().unwrap().username, "Bob");
        assert_eq!(store.user("bob").unwrap().unwrap().username, "bob");
        assert_eq!(store.user("..").unwrap().unwrap().username, "..");
        assert_eq!(store.user_count().unwrap(), 4);
        assert_eq!(store.case_twins().unwrap(), [("bob".to_owned(), "Bob".to_owned())]);
        for taken in ["BOB", "bob", "Bob", "ALICE", ".."] {
            let err = store.create_user(&crate::storage::test_user(taken)).unwrap_err();
            assert!(matches!(err, StorageError::UsernameTaken), "{taken}: {err}");
        }
        store.create_user(&crate::storage::test_user("carol")).unwrap();
        assert!(store.username_taken("CAROL").unwrap());
    }

    #[test]
    fn serve_refuses_old_and_newer_schemas_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap());
        let set = |v: u64| {
            let db = Database::create(dir.path().join(crate::storage::DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            set_version(&txn, v).unwrap();
            txn.commit().unwrap();
        };
        set(CURRENT_VERSION + 1);
        let err = Store::open(dir.path(), SchemaCheck::RequireCurrent).err().unwrap();
        assert!(matches!(err, StorageError::NewerSchema { .. }), "{err}");
        set(CURRENT_VERSION - 1);
        let err = Store::open(dir.path(), SchemaCheck::RequireCurrent).err().unwrap();
        assert!(err.to_string().contains("chatctl migrate"), "{err}");
        assert!(Store::open(dir.path(), SchemaCheck::ForMigration).is_ok());
    }
}
