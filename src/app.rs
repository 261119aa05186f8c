//! The state every request handler and socket shares. Built once by
//! `startup`; handlers get it as `Arc<App>`.

use std::sync::Arc;

use crate::auth::setup::SetupToken;
use crate::auth::throttle::LoginThrottle;
use crate::chat::fanout::FanOut;
use crate::chat::Chat;
use crate::config::ServerConfig;
use crate::log::WriteLog;
use crate::metrics::Metrics;
use crate::shutdown::Stopping;
use crate::storage::Store;

/// The server's shared state: its settings, the services it is built
/// from, and the limits that span requests.
pub struct App {
    /// The settings it was started with: limits, cookie and origin rules, the data dir.
    pub config: ServerConfig,
    /// For reads (through `Store::call`) and node-local upkeep; changes to
    /// shared state go through `log`, so every node applies them in one order.
    pub store: Store,
    /// Live chat: the hub, the open sockets and what every socket shares.
    pub chat: Arc<Chat>,
    /// Every write to shared state goes through here (see `crate::log`).
    pub log: WriteLog,
    /// Turns the log's events into frames and closes (see `chat::fanout`).
    pub fan_out: FanOut,
    /// Refuses repeated password guesses per address and per address and
    /// name, before argon2 spends a core on them; in a cluster it counts
    /// every node's failures (`http::accounts::cluster_login_throttle`).
    pub login_throttle: Arc<LoginThrottle>,
    /// Password checks (argon2) allowed to run at once.
    pub password_checks: tokio::sync::Semaphore,
    /// What `/metrics` serves; the log, the hub and the sockets count into the same one.
    pub metrics: Arc<Metrics>,
    /// Says when the server begins to shut down; long-running tasks hold
    /// its `Running` guard so that shutdown knows when they have ended.
    pub shutdown: Stopping,
    /// The first-run setup token, while the database has no user.
    pub setup: Arc<SetupToken>,
}
