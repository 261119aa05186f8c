//! Users and server-side sessions.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::{decode, schema, Result, Store};
use crate::domain::Username;

/// An account as stored, and as written into the log by `CreateUser`: its JSON form
/// is the stream's, so fields are only added (with defaults).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    /// The unique key; another account cannot take it in another ASCII case.
    pub username: Username,
    /// Optional and never verified: the admin page and `users list` show
    /// it, and a password too like it is refused.
    #[serde(default)]
    pub email: String,
    /// PHC string (`$argon2id$...`).
    pub password_hash: String,
    /// May open `/admin` and create, deactivate and activate accounts there.
    pub is_superuser: bool,
    /// A deactivated account cannot sign in and has no sessions.
    pub is_active: bool,
    /// When the account was made, in Unix milliseconds.
    pub created_at_ms: u64,
}

/// A signed-in session, stored under the hash of its cookie's token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    /// Whose session it is; a deactivated user's sessions are deleted with it.
    pub username: Username,
    /// When the session began, in Unix milliseconds.
    pub created_at_ms: u64,
    /// After this (Unix ms) the session is dead, even before the hourly sweep deletes it.
    pub expires_at_ms: u64,
}

/// The key under which a username is unique: two names that differ only in
/// ASCII case fold alike (`Bob`, `bob`), so only one of them can be created.
pub(crate) fn folded(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// The write operations, inside a caller's transaction, so that a batch of
/// writes (see `log::apply`) commits as one.
pub(crate) mod in_txn {
    use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

    use super::{folded, SessionRecord, UserRecord};
    use crate::storage::{decode, encode, schema, Result, StorageError};

    /// Adds a user; a username already held, in any ASCII case, is an
    /// error, never an overwrite. With `only_if_first`, only while there is
    /// no user at all. Both checks run in the caller's transaction, so of two
    /// writes racing for `Bob` and `bob` the one applied first wins on every
    /// node.
    pub fn insert_user(txn: &WriteTransaction, user: &UserRecord, only_if_first: bool) -> Result<()> {
        let mut users = txn.open_table(schema::USERS)?;
        if only_if_first && users.len()? > 0 {
            return Err(StorageError::SetupClosed);
        }
        let mut folds = txn.open_table(schema::USERNAME_FOLDS)?;
        let fold = folded(&user.username);
        // The exact lookup too: a database migrated with two names that
        // differ only in case indexes just one of them.
        if folds.get(fold.as_str())?.is_some() || users.get(user.username.as_str())?.is_some() {
            return Err(StorageError::UsernameTaken);
        }
        users.insert(user.username.as_str(), encode(user).as_slice())?;
        folds.insert(fold.as_str(), user.username.as_str())?;
        Ok(())
    }

    /// Activates or deactivates a user; deactivation also ends their
    /// sessions. Returns false when there is no such user.
    pub fn set_user_active(txn: &WriteTransaction, username: &str, active: bool) -> Result<bool> {
        let mut users = txn.open_table(schema::USERS)?;
        let Some(mut user) = users.get(username)?.map(|v| decode::<UserRecord>(v.value())).transpose()? else {
            return Ok(false);
        };
        user.is_active = active;
        users.insert(username, encode(&user).as_slice())?;
        if !active {
            delete_sessions_of(txn, username, None)?;
        }
        Ok(true)
    }

    /// Whether `username` is an active superuser (who may delete anyone's message).
    pub fn is_active_superuser(txn: &WriteTransaction, username: &str) -> Result<bool> {
        let users = txn.open_table(schema::USERS)?;
        let user = users.get(username)?.map(|v| decode::<UserRecord>(v.value())).transpose()?;
        Ok(user.is_some_and(|user| user.is_superuser && user.is_active))
    }

    /// Replaces a user's password hash and ends all of their sessions but
    /// `keep` (the one that changed its own password). Returns false when
    /// there is no such user.
    pub fn set_password(
        txn: &WriteTransaction,
        username: &str,
        password_hash: &str,
        keep: Option<&[u8; 32]>,
    ) -> Result<bool> {
        let mut users = txn.open_table(schema::USERS)?;
        let Some(mut user) = users.get(username)?.map(|v| decode::<UserRecord>(v.value())).transpose()? else {
            return Ok(false);
        };
        user.password_hash = password_hash.to_owned();
        users.insert(username, encode(&user).as_slice())?;
        delete_sessions_of(txn, username, keep)?;
        Ok(true)
    }

    /// Deletes every session of `username` except `keep`.
    fn delete_sessions_of(txn: &WriteTransaction, username: &str, keep: Option<&[u8; 32]>) -> Result<()> {
        let mut sessions = txn.open_table(schema::SESSIONS)?;
        sessions.retain(|key, value| {
            keep.is_some_and(|keep| key == keep.as_slice())
                || serde_json::from_slice::<SessionRecord>(value).map(|s| s.username != username).unwrap_or(false)
        })?;
        Ok(())
    }

    /// Stores a new session under its token's hash; the caller already checked the password.
    pub fn insert_session(txn: &WriteTransaction, token_hash: &[u8; 32], session: &SessionRecord) -> Result<()> {
        txn.open_table(schema::SESSIONS)?.insert(token_hash.as_slice(), encode(session).as_slice())?;
        Ok(())
    }

    /// Ends one session (signing out); an unknown hash is not an error.
    pub fn delete_session(txn: &WriteTransaction, token_hash: &[u8; 32]) -> Result<()> {
        txn.open_table(schema::SESSIONS)?.remove(token_hash.as_slice())?;
        Ok(())
    }
}

impl Store {
    /// Runs `write` in one durable transaction.
    /// A write that fails on the file (disk full) is noted, so that
    /// `recovery` reopens the database once the disk takes writes again.
    pub(crate) fn write<T>(&self, write: impl FnOnce(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        self.noting_failure((|| {
            let txn = self.db()?.begin_write()?;
            let value = write(&txn)?;
            txn.commit()?;
            Ok(value)
        })())
    }

    /// Adds a user; an existing username is an error, never an overwrite.
    pub fn create_user(&self, user: &UserRecord) -> Result<()> {
        self.write(|txn| in_txn::insert_user(txn, user, false))
    }

    /// Adds the first user, only while there is none.
    pub fn create_first_user(&self, user: &UserRecord) -> Result<()> {
        self.write(|txn| in_txn::insert_user(txn, user, true))
    }

    /// The account under exactly this name (no case folding), whether active or not.
    pub fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        let txn = self.db()?.begin_read()?;
        let users = txn.open_table(schema::USERS)?;
        let found = users.get(username)?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// Active users whose name starts with `prefix` ignoring ASCII case:
    /// the first `limit` in byte order of the name.
    pub fn active_users_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let txn = self.db()?.begin_read()?;
        let users = txn.open_table(schema::USERS)?;
        let active = |name: &str| -> Result<bool> {
            Ok(users.get(name)?.map(|v| decode::<UserRecord>(v.value())).transpose()?.is_some_and(|u| u.is_active))
        };
        let mut names = Vec::new();
        if prefix.is_empty() {
            // The users table is already in byte order.
            for entry in users.iter()? {
                let (name, _) = entry?;
                if active(name.value())? {
                    names.push(name.value().to_owned());
                    if names.len() == limit {
                        break;
                    }
                }
            }
            return Ok(names);
        }
        // Every case of the prefix folds alike: read the folded range, then
        // order the real names by bytes (`Bob` before `alice`).
        let fold = folded(prefix);
        let folds = txn.open_table(schema::USERNAME_FOLDS)?;
        for entry in folds.range(fold.as_str()..)? {
            let (key, name) = entry?;
            if !key.value().starts_with(fold.as_str()) {
                break;
            }
            if active(name.value())? {
                names.push(name.value().to_owned());
            }
        }
        names.sort_unstable();
        names.truncate(limit);
        Ok(names)
    }

    /// Whether a new account could not take `username`: some user holds it
    /// in this or another ASCII case.
    pub fn username_taken(&self, username: &str) -> Result<bool> {
        let txn = self.db()?.begin_read()?;
        if txn.open_table(schema::USERNAME_FOLDS)?.get(folded(username).as_str())?.is_some() {
            return Ok(true);
        }
        Ok(txn.open_table(schema::USERS)?.get(username)?.is_some())
    }

    /// Users whose name differs only in case from the one holding its folded
    /// form, as (this user, the holder): possible only in a database created
    /// before the rule. A scan, for `chatctl migrate` to report.
    pub fn case_twins(&self) -> Result<Vec<(String, String)>> {
        let txn = self.db()?.begin_read()?;
        let folds = txn.open_table(schema::USERNAME_FOLDS)?;
        let mut twins = Vec::new();
        for entry in txn.open_table(schema::USERS)?.iter()? {
            let (name, _) = entry?;
            let name = name.value();
            if let Some(holder) = folds.get(folded(name).as_str())? {
                if holder.value() != name {
                    twins.push((name.to_owned(), holder.value().to_owned()));
                }
            }
        }
        Ok(twins)
    }

    /// Zero means setup is open: startup makes a setup token only then.
    pub fn user_count(&self) -> Result<u64> {
        let txn = self.db()?.begin_read()?;
        Ok(txn.open_table(schema::USERS)?.len()?)
    }

    /// Every user, by username.
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        let txn = self.db()?.begin_read()?;
        let users = txn.open_table(schema::USERS)?;
        let mut out = Vec::new();
        for entry in users.iter()? {
            let (_, value) = entry?;
            out.push(decode(value.value())?);
        }
        Ok(out)
    }

    /// `in_txn::set_user_active` in a transaction of its own, bypassing the log: for tests.
    pub fn set_user_active(&self, username: &str, active: bool) -> Result<bool> {
        self.write(|txn| in_txn::set_user_active(txn, username, active))
    }

    /// `in_txn::insert_session` in a transaction of its own, bypassing the log: for tests.
    pub fn create_session(&self, token_hash: &[u8; 32], session: &SessionRecord) -> Result<()> {
        self.write(|txn| in_txn::insert_session(txn, token_hash, session))
    }

    /// The stored session, expired or not; `session_user` is the check requests use.
    pub fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
        let txn = self.db()?.begin_read()?;
        let sessions = txn.open_table(schema::SESSIONS)?;
        let found = sessions.get(token_hash.as_slice())?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// The active user a live session belongs to; `None` for an unknown or
    /// expired session or a deactivated user.
    pub fn session_user(&self, token_hash: &[u8; 32], now_ms: u64) -> Result<Option<UserRecord>> {
        let Some(session) = self.session(token_hash)? else { return Ok(None) };
        if session.expires_at_ms <= now_ms {
            return Ok(None);
        }
        Ok(self.user(&session.username)?.filter(|user| user.is_active))
    }

    /// `in_txn::delete_session` in a transaction of its own, bypassing the log: for tests.
    pub fn delete_session(&self, token_hash: &[u8; 32]) -> Result<()> {
        self.write(|txn| in_txn::delete_session(txn, token_hash))
    }

    /// Removes sessions that expired before `now_ms`; returns how many. Each
    /// node sweeps its own copy: expiry is a function of time alone.
    pub fn delete_expired_sessions(&self, now_ms: u64) -> Result<usize> {
        self.write(|txn| {
            let mut removed = 0;
            let mut sessions = txn.open_table(schema::SESSIONS)?;
            sessions.retain(|_, value| {
                let keep =
                    serde_json::from_slice::<SessionRecord>(value).map(|s| s.expires_at_ms > now_ms).unwrap_or(false);
                removed += usize::from(!keep);
                keep
            })?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{test_store, test_user as user, StorageError};

    #[test]
    fn a_duplicate_username_is_refused_not_overwritten() {
        let (_dir, store) = test_store();
        store.create_user(&user("alice")).unwrap();
        let mut again = user("alice");
        again.is_superuser = true;
        assert!(matches!(store.create_user(&again), Err(StorageError::UsernameTaken)));
        assert!(!store.user("alice").unwrap().unwrap().is_superuser);
        assert_eq!(store.user_count().unwrap(), 1);
    }

    #[test]
    fn a_username_differing_only_in_case_is_taken_and_lookups_stay_exact() {
        let (_dir, store) = test_store();
        store.create_user(&user("bob")).unwrap();
        for other in ["Bob", "BOB", "bOb"] {
            assert!(matches!(store.create_user(&user(other)), Err(StorageError::UsernameTaken)), "{other}");
            assert!(store.username_taken(other).unwrap());
            assert!(store.user(other).unwrap().is_none(), "{other} is looked up exactly");
        }
        assert!(!store.username_taken("bobby").unwrap());
        store.create_user(&user("bobby")).unwrap();
        assert_eq!(store.user_count().unwrap(), 2);
    }

    #[test]
    fn setup_creates_only_the_first_user() {
        let (_dir, store) = test_store();
        store.create_first_user(&user("root")).unwrap();
        assert!(matches!(store.create_first_user(&user("second")), Err(StorageError::SetupClosed)));
    }

    fn session(name: &str) -> SessionRecord {
        SessionRecord {
            username: crate::domain::Username::parse(name).unwrap(),
            created_at_ms: 0,
            expires_at_ms: u64::MAX,
        }
    }

    #[test]
    fn deactivation_ends_that_users_sessions_only() {
        let (_dir, store) = test_store();
        store.create_user(&user("alice")).unwrap();
        store.create_session(&[1; 32], &session("alice")).unwrap();
        store.create_session(&[2; 32], &session("bob")).unwrap();
        assert!(store.set_user_active("alice", false).unwrap());
        assert!(store.session(&[1; 32]).unwrap().is_none());
        assert!(store.session(&[2; 32]).unwrap().is_some());
        assert!(!store.user("alice").unwrap().unwrap().is_active);
        assert!(!store.set_user_active("nobody", false).unwrap());
    }

    #[test]
    fn a_new_password_ends_that_users_sessions_but_the_kept_one() {
        let (_dir, store) = test_store();
        store.create_user(&user("alice")).unwrap();
        for (key, name) in [(1, "alice"), (2, "alice"), (3, "bob")] {
            store.create_session(&[key; 32], &session(name)).unwrap();
        }
        assert!(store.write(|txn| in_txn::set_password(txn, "alice", "$new", Some(&[1; 32]))).unwrap());
        assert_eq!(store.user("alice").unwrap().unwrap().password_hash, "$new");
        assert!(store.session(&[1; 32]).unwrap().is_some(), "the kept session ended");
        assert!(store.session(&[2; 32]).unwrap().is_none(), "another session survived");
        assert!(store.session(&[3; 32]).unwrap().is_some(), "another user's session ended");
        assert!(store.write(|txn| in_txn::set_password(txn, "alice", "$newer", None)).unwrap());
        assert!(store.session(&[1; 32]).unwrap().is_none());
        assert!(!store.write(|txn| in_txn::set_password(txn, "nobody", "$h", None)).unwrap());
    }

    #[test]
    fn expired_sessions_are_swept() {
        let (_dir, store) = test_store();
        let s = |exp| SessionRecord {
            username: crate::domain::Username::parse("a").unwrap(),
            created_at_ms: 0,
            expires_at_ms: exp,
        };
        store.create_session(&[1; 32], &s(100)).unwrap();
        store.create_session(&[2; 32], &s(300)).unwrap();
        assert_eq!(store.delete_expired_sessions(200).unwrap(), 1);
        assert!(store.session(&[2; 32]).unwrap().is_some());
    }
}
