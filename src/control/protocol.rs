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
    pub v: u32,
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
        username: String,
        email: String,
        password: Secret,
    },
    /// A new password for an existing user; ends all of their sessions.
    SetPassword {
        username: String,
        password: Secret,
    },
    ListUsers,
    SetActive {
        username: String,
        active: bool,
    },
    /// Whether `username` exists (an interactive prompt asks before the
    /// password). With `any_case`, whether a new account could not take it:
    /// some user holds it in this or another ASCII case.
    UserExists {
        username: String,
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
        to: PathBuf,
        #[serde(default)]
        overwrite: bool,
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

    pub fn request(self) -> Request {
        Request { v: VERSION, command: self }
    }
}

/// A response line: `{"v":1,"status":"users","users":[...]}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    pub v: u32,
    #[serde(flatten)]
    pub reply: Reply,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    Done { message: String },
    Users { users: Vec<UserInfo> },
    Exists { exists: bool },
    BackedUp { summary: BackupSummary },
    Error { kind: ErrorKind, message: String },
}

impl Reply {
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
    pub username: String,
    pub email: String,
    pub is_superuser: bool,
    pub is_active: bool,
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
