//! The administrator's operations, in ONE place: the control socket's
//! server calls `execute` with the running server's store and log, and the
//! command line calls it with a store (and log) it opened itself. Writes go
//! through `WriteLog::apply`, so their effects (sockets closed, setup page
//! closed) happen wherever the write is applied, on every node.

use std::path::PathBuf;

use super::protocol::{Command, ErrorKind, Reply, Secret, UserInfo};
use crate::auth::password;
use crate::domain::Username;
use crate::log::write::{Outcome, Write};
use crate::log::{LogError, WriteLog};
use crate::storage::backup::{self, BackupError};
use crate::storage::{now_ms, Store, UserRecord};

/// Runs one command. `log` is `None` when the data dir was opened for
/// reading only (a stopped cluster node listing its users, or a backup).
pub async fn execute(store: &Store, log: Option<&WriteLog>, command: Command) -> Reply {
    let result = match command {
        Command::Ping => Ok(Reply::Done { message: "a chatctl server answers here".into() }),
        Command::ListUsers => list_users(store).await,
        Command::UserExists { username, any_case: false } => {
            blocking(store, move |store| store.user(&username)).await.map(|u| Reply::Exists { exists: u.is_some() })
        }
        Command::UserExists { username, any_case: true } => {
            blocking(store, move |store| store.username_taken(&username)).await.map(|exists| Reply::Exists { exists })
        }
        Command::Backup { attached: true, .. } => Err(Reply::error(
            ErrorKind::BadRequest,
            "the backup's file was to come with the request, and none did; use the chatctl binary of the running server",
        )),
        Command::Backup { to, overwrite, attached: false } => backup(store, to, overwrite).await,
        Command::CreateSuperuser { username, email, password } => match log {
            Some(log) => create_superuser(log, &username, email.trim(), password).await,
            None => Err(no_log()),
        },
        Command::SetPassword { username, password } => match log {
            Some(log) => set_password(store, log, &username, password).await,
            None => Err(no_log()),
        },
        Command::SetActive { username, active } => match log {
            Some(log) => set_active(log, &username, active).await,
            None => Err(no_log()),
        },
    };
    result.unwrap_or_else(|error| error)
}

fn no_log() -> Reply {
    Reply::error(ErrorKind::Unavailable, "this data dir was opened for reading only; nothing was changed")
}

/// Runs a storage call on the blocking pool; a failure becomes a reply.
async fn blocking<T: Send + 'static>(
    store: &Store,
    call: impl FnOnce(&Store) -> crate::storage::Result<T> + Send + 'static,
) -> Result<T, Reply> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || call(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Reply::error(ErrorKind::Failed, error.to_string())),
        Err(_) => Err(Reply::error(ErrorKind::Failed, "a storage call failed unexpectedly; see the server log")),
    }
}

/// Applies a write through the log: the one path every write takes.
async fn apply(log: &WriteLog, write: Write) -> Result<Outcome, Reply> {
    log.apply(write).await.map_err(|error| match error {
        LogError::Unavailable(reason) => {
            Reply::error(ErrorKind::Unavailable, format!("the write log cannot take writes now ({reason}); try again"))
        }
        LogError::Storage(reason) => Reply::error(ErrorKind::Failed, format!("storing the change failed: {reason}")),
    })
}

/// Why a name that no account shows exactly can still be taken.
pub const TAKEN_WHY: &str = "usernames that differ only in case count as the same";

fn no_such_user(username: &str) -> Reply {
    Reply::error(
        ErrorKind::NotFound,
        format!("there is no user named {username:?}; `chatctl users list` shows who exists"),
    )
}

/// Django's rules, then argon2 on the blocking pool (about 30 ms of CPU).
async fn checked_hash(password: Secret, username: &str, email: &str) -> Result<String, Reply> {
    let problems = password::check_rules(&password.0, username, email);
    if !problems.is_empty() {
        return Err(Reply::error(ErrorKind::Invalid, format!("the password was refused: {}", problems.join(" "))));
    }
    tokio::task::spawn_blocking(move || password::hash(&password.0))
        .await
        .map_err(|_| Reply::error(ErrorKind::Failed, "hashing the password failed unexpectedly"))
}

async fn create_superuser(log: &WriteLog, username: &str, email: &str, password: Secret) -> Result<Reply, Reply> {
    let username = Username::parse(username)
        .map_err(|e| Reply::error(ErrorKind::Invalid, format!("invalid username {username:?}: {e}")))?;
    let password_hash = checked_hash(password, username.as_str(), email).await?;
    let user = UserRecord {
        username: username.clone(),
        email: email.to_owned(),
        password_hash,
        is_superuser: true,
        is_active: true,
        created_at_ms: now_ms(),
    };
    match apply(log, Write::CreateUser { user, only_if_first: false }).await? {
        Outcome::Applied => Ok(Reply::Done { message: format!("Superuser {} created.", username.as_str()) }),
        Outcome::UsernameTaken => Err(Reply::error(
            ErrorKind::Taken,
            format!("the username {} is already taken ({TAKEN_WHY}); choose another", username.as_str()),
        )),
        other => Err(unexpected(other)),
    }
}

async fn set_password(store: &Store, log: &WriteLog, username: &str, password: Secret) -> Result<Reply, Reply> {
    let Ok(account) = Username::from_stored(username) else { return Err(no_such_user(username)) };
    let name = username.to_owned();
    let Some(user) = blocking(store, move |store| store.user(&name)).await? else {
        return Err(no_such_user(username));
    };
    let password_hash = checked_hash(password, username, &user.email).await?;
    match apply(log, Write::SetPassword { username: account, password_hash, keep_session: None }).await? {
        Outcome::Applied => Ok(Reply::Done {
            message: format!("Password changed successfully for user {username}; their sessions have ended."),
        }),
        Outcome::NoSuchUser => Err(no_such_user(username)),
        other => Err(unexpected(other)),
    }
}

async fn set_active(log: &WriteLog, username: &str, active: bool) -> Result<Reply, Reply> {
    let Ok(account) = Username::from_stored(username) else { return Err(no_such_user(username)) };
    match apply(log, Write::SetUserActive { username: account, active }).await? {
        Outcome::Applied if active => Ok(Reply::Done { message: format!("User {username} activated.") }),
        Outcome::Applied => {
            Ok(Reply::Done { message: format!("User {username} deactivated; their sessions have ended.") })
        }
        Outcome::NoSuchUser => Err(no_such_user(username)),
        other => Err(unexpected(other)),
    }
}

fn unexpected(outcome: Outcome) -> Reply {
    Reply::error(ErrorKind::Failed, format!("the write came to {outcome:?}, which this command does not expect"))
}

async fn list_users(store: &Store) -> Result<Reply, Reply> {
    let users = blocking(store, |store| store.users()).await?;
    let users = users
        .into_iter()
        .map(|u| UserInfo {
            username: u.username.into(),
            email: u.email,
            is_superuser: u.is_superuser,
            is_active: u.is_active,
            created_at_ms: u.created_at_ms,
        })
        .collect();
    Ok(Reply::Users { users })
}

async fn backup(store: &Store, to: PathBuf, overwrite: bool) -> Result<Reply, Reply> {
    if !to.is_absolute() {
        return Err(Reply::error(ErrorKind::Invalid, format!("the backup path {} must be absolute", to.display())));
    }
    match to.parent() {
        Some(dir) if dir.is_dir() => {}
        _ => {
            return Err(Reply::error(
                ErrorKind::Invalid,
                format!("the directory of {} does not exist; create it first", to.display()),
            ))
        }
    }
    if backup::names_the_database(store.path(), &to) {
        return Err(Reply::error(
            ErrorKind::Invalid,
            format!("{} is the live database itself; write the backup to another file", to.display()),
        ));
    }
    let store = store.clone();
    let written = tokio::task::spawn_blocking(move || backup::write_backup(&store, &to, overwrite)).await;
    match written {
        Ok(Ok(summary)) => Ok(Reply::BackedUp { summary }),
        Ok(Err(error @ BackupError::Exists(_))) => Err(Reply::error(ErrorKind::Invalid, error.to_string())),
        Ok(Err(error)) => Err(Reply::error(ErrorKind::Failed, error.to_string())),
        Err(_) => Err(Reply::error(ErrorKind::Failed, "the backup failed unexpectedly; see the server log")),
    }
}

/// A backup into a file the client created next to `to` and sent with the
/// request; the client renames it into place once this answers.
pub async fn backup_into(store: &Store, file: std::fs::File, to: PathBuf) -> Reply {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || backup::snapshot_into(&store, file)).await {
        Ok(Ok(summary)) => Reply::BackedUp { summary: backup::BackupSummary { path: to, ..summary } },
        Ok(Err(error)) => Reply::error(ErrorKind::Failed, error.to_string()),
        Err(_) => Reply::error(ErrorKind::Failed, "the backup failed unexpectedly; see the server log"),
    }
}
