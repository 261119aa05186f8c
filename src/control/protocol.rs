//! The control socket's wire format, shared by the server and the client:
//! one JSON request line, one JSON response line. `v` is the protocol
//! version; a server refuses a version it does not speak. Only ever add
//! variants and fields (with defaults), so an older client keeps working.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::storage::backup::BackupSummary;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The socket's file name inside the data dir.
pub const SOCKET_FILE: &str = "control.sock";

/// A request line: `{"v":1,"command":"list_users"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// The protocol version of the sender; the server refuses one it does not speak.
    pub v: u32,
    /// What to do; its fields sit beside `v` in the same object.
    #[serde(flatten)]
    pub command: Command,
}

/// What an administrator can ask a running server (or a stopped data dir) to do.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Answers `Done`: proves a server is there.
    Ping,
    /// A superuser, as `createsuperuser`; the password is checked against
    /// Django's rules and hashed by whoever applies it.
    CreateSuperuser {
        /// The new account's name; validated where the command is applied.
        username: String,
        /// May be empty, as in Django.
        email: String,
        /// Checked against the password rules (with the name and email) and hashed where applied.
        password: Secret,
    },
    /// A new password for an existing user; ends all of their sessions.
    SetPassword {
        /// The account whose password changes.
        username: String,
        /// Checked against the password rules and hashed where applied.
        password: Secret,
    },
    /// Answers `Users`: every account, for `users list`.
    ListUsers,
    /// Deactivates (ending every session) or activates an account; `NotFound` if there is none.
    SetActive {
        /// The account, exactly as written.
        username: String,
        /// `false` deactivates, `true` activates again.
        active: bool,
    },
    /// Whether `username` exists (an interactive prompt asks before the
    /// password). With `any_case`, whether a new account could not take it:
    /// some user holds it in this or another ASCII case.
    UserExists {
        /// The name to look up.
        username: String,
        /// Also count names that differ only in ASCII case (absent: exact match).
        #[serde(default)]
        any_case: bool,
    },
    /// A consistent copy of the database for `to` (an absolute path). With
    /// `attached`, the client sends an empty file it created next to `to`
    /// with the request (SCM_RIGHTS): the server writes the copy into it and
    /// the client renames it, so the server needs no access to `to`'s
    /// directory (a sandboxed service cannot write there, or sees its own
    /// /tmp). Without, the server writes `to` itself.
    Backup {
        /// Where the backup ends up; absolute, since the server's
        /// working directory is not the client's.
        to: PathBuf,
        /// Replace `to` if it exists (`--force`).
        #[serde(default)]
        overwrite: bool,
        /// The client sent the file to write into with the request.
        #[serde(default)]
        attached: bool,
    },
}

/// A password on its way to be hashed: never shown by `Debug`, so a log
/// line cannot leak it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Command {
    /// The command's name, for log lines (never its arguments).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::CreateSuperuser { .. } => "create_superuser",
            Command::SetPassword { .. } => "set_password",
            Command::ListUsers => "list_users",
            Command::SetActive { .. } => "set_active",
            Command::UserExists { .. } => "user_exists",
            Command::Backup { .. } => "backup",
        }
    }

    /// Wraps the command with this build's protocol version, ready to send.
    pub fn request(self) -> Request {
        Request { v: VERSION, command: self }
    }
}

/// A response line: `{"v":1,"status":"users","users":[...]}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    /// The protocol version of the server; the client refuses one it does not read.
    pub v: u32,
    /// The answer; its fields sit beside `v` in the same object.
    #[serde(flatten)]
    pub reply: Reply,
}

/// What a command came to; `Error` carries what to tell the operator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// Success; `message` is what the command prints.
    Done {
        /// For a person: what was done.
        message: String,
    },
    /// The answer to `ListUsers`, by username.
    Users {
        /// Every account, by username.
        users: Vec<UserInfo>,
    },
    /// The answer to `UserExists`.
    Exists {
        /// Whether the name is held (in any case, if asked).
        exists: bool,
    },
    /// The answer to `Backup`: what was written.
    BackedUp {
        /// What was written; the client fills in `path` and `bytes` when it renamed the file.
        summary: BackupSummary,
    },
    /// Refused or failed: `kind` picks the exit code, `message` says why and what to do.
    Error {
        /// Decides the exit code (2 for usage errors).
        kind: ErrorKind,
        /// What happened and what to do next, printed as it is.
        message: String,
    },
}

impl Reply {
    /// Shorthand for `Reply::Error`, so callers can pass any string-like message.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply::Error { kind, message: message.into() }
    }
}

/// Why a command failed; the command line maps it to an exit code.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No such user.
    NotFound,
    /// Bad input: a refused password, an invalid username, a file that exists.
    Invalid,
    /// The username is taken.
    Taken,
    /// The log cannot take writes now (broker down, shutting down).
    Unavailable,
    /// This server does not speak the request's version, or the line is not a request.
    BadRequest,
    /// Storage or file system failure.
    Failed,
    /// The peer is neither root nor the user running the server.
    Forbidden,
}

/// One account, as `users list` shows it (never the password hash).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    /// The account's name.
    pub username: String,
    /// Empty when none was given.
    pub email: String,
    /// May use `/admin`.
    pub is_superuser: bool,
    /// Whether the account can sign in.
    pub is_active: bool,
    /// When the account was made, in Unix milliseconds.
    pub created_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_one_flat_json_object() {
        let line = serde_json::to_string(&Command::ListUsers.request()).unwrap();
        assert_eq!(line, r#"{"v":1,"command":"list_users"}"#);
        let request: Request =
            serde_json::from_str(r#"{"v":1,"command":"set_active","username":"amy","active":false}"#).unwrap();
        assert_eq!(request.command, Command::SetActive { username: "amy".into(), active: false });
        let response = Response { v: VERSION, reply: Reply::error(ErrorKind::NotFound, "no user amy") };
        let line = serde_json::to_string(&response).unwrap();
        assert_eq!(line, r#"{"v":1,"status":"error","kind":"not_found","message":"no user amy"}"#);
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), response);
    }
}
