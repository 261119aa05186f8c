//! chatctl: a real-time chat server in one binary.
//!
//! Read it as a table of contents:
//! - `domain`: validated names, ids and message text.
//! - `storage`: the redb database (accounts, sessions, rooms, messages) and its migrations.
//! - `auth`: password hashing and rules, session and CSRF tokens, login throttling.
//! - `chat`: a message's path: `socket` → `frames` → `crate::log` (store), then `fanout` → `hub` → sockets;
//!   `ephemeral` carries typing and presence between sockets and nodes, `presence` says who is
//!   online cluster-wide, `typing` gates typing frames.
//! - `log`: every write in one order: a local writer thread, or a RabbitMQ stream shared by many nodes.
//! - `relay`: best-effort messages between nodes (typing, presence, failed sign-ins), never stored.
//! - `http`: the routes of PROTOCOL.md, pages and the JSON API.
//! - `app`, `config`, `startup`, `shutdown`: the shared state and how a server is built and stopped.
//! - `control`: the local control socket and the admin operations it and the command line share.
//! - `client`: a small HTTP + WebSocket client, used by `smoke-test` and the tests.
//! - `commands`: one module per subcommand.

// Every public item says why it exists (issue 10); the build keeps it so.
#![warn(missing_docs)]

/// What `chatctl --version` prints after the name: the package version, the
/// git commit and the UTC build date, stamped by `build.rs`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CHATCTL_GIT_COMMIT"),
    ", built ",
    env!("CHATCTL_BUILD_DATE"),
    ")"
);

pub mod app;
pub mod auth;
pub mod chat;
pub mod client;
pub mod commands;
pub mod config;
pub mod control;
pub mod domain;
pub mod http;
pub mod log;
pub mod metrics;
pub mod relay;
pub mod shutdown;
pub mod startup;
pub mod storage;
pub mod telemetry;
