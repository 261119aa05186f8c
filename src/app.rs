//! The state every request handler and socket shares. Built once by
//! `startup`; handlers get it as `Arc<App>`.

use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::setup::SetupToken;
use crate::auth::throttle::LoginThrottle;
use crate::chat::fanout::FanOut;
use crate::chat::hub::Hub;
use crate::chat::live::LiveSockets;
use crate::chat::rate_limit::MessageRateLimit;
use crate::config::ServerConfig;
use crate::log::WriteLog;
use crate::metrics::Metrics;
use crate::storage::{self, StorageError, Store};

pub struct App {
    pub config: ServerConfig,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub live: Arc<LiveSockets>,
    /// Every write to shared state goes through here (see `crate::log`).
    pub log: WriteLog,
    /// Turns the log's events into frames and closes (see `chat::fanout`).
    pub fan_out: FanOut,
    pub message_rate: MessageRateLimit,
    pub login_throttle: LoginThrottle,
    /// Password checks (argon2) allowed to run at once.
    pub password_checks: tokio::sync::Semaphore,
    /// History frames and pages built (and, for sockets, sent) at once:
    /// each may hold up to 1 MiB (see `chat::socket::HISTORY_FRAMES_AT_ONCE`).
    pub history_frames: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<Metrics>,
    /// Flips to true when the server begins to shut down.
    pub shutdown: watch::Receiver<bool>,
    /// The first-run setup token, while the database has no user.
    pub setup: Arc<SetupToken>,
    /// Set when a storage call panicked: the node says it is not ready
    /// (`/readyz`) until restarted, since the database may be damaged.
    pub storage_failed: std::sync::OnceLock<String>,
}

impl App {
    /// Runs a storage call on the blocking pool so that disk waits never
    /// stall the sockets served by this runtime.
    pub async fn storage<T, F>(&self, call: F) -> storage::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> storage::Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || call(&store)).await {
            Ok(result) => result,
            // A panic in the database layer (a damaged file, a bug) fails
            // this request with a 503, not the worker or the connection.
            Err(join_error) => {
                let what = panic_text(join_error);
                let error = StorageError::Panicked(what.clone());
                if self.storage_failed.set(what).is_ok() {
                    tracing::error!(%error, "storage call panicked; this node now reports itself unready");
                }
                Err(error)
            }
        }
    }

    /// Resolves once the server begins to shut down.
    pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
        // The guard `wait_for` returns is not `Send`: drop it at once.
        let _ = shutdown.wait_for(|stopping| *stopping).await.map(|_| ());
    }
}

/// What a failed blocking task said, for the log and `/readyz`.
fn panic_text(join_error: tokio::task::JoinError) -> String {
    match join_error.try_into_panic() {
        Ok(payload) => storage::panic_text(&*payload),
        Err(_) => "the storage task was cancelled".to_owned(),
    }
}
