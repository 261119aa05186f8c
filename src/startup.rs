//! Building and running the server. `serve`, the integration tests and
//! `smoke-test` all start it through `start`, so they run the same thing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::auth::throttle::LoginThrottle;
use crate::chat::hub::Hub;
use crate::chat::log::MessageLog;
use crate::chat::rate_limit::MessageRateLimit;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::storage::{now_ms, SchemaCheck, StorageError, Store};

/// Why the server could not start, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: the port is in use. Stop the other process or choose another address with --bind (or CHATCTL_BIND)")]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}. Choose another address with --bind")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A server that is accepting connections.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The first-run setup URL, while the database has no user.
    pub setup_url: Option<String>,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
}

pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, SchemaCheck::RequireCurrent))
        .await
        .expect("opening storage does not panic")?;
    let listener = TcpListener::bind(config.bind).await.map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => StartError::PortInUse { addr: config.bind },
        _ => StartError::Bind { addr: config.bind, source },
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.bind, source })?;

    let metrics = Arc::new(Metrics::default());
    let hub = Arc::new(Hub::new(metrics.clone()));
    let (log, writer) = MessageLog::start_embedded(store.clone(), hub.clone(), metrics.clone());
    let (stop, shutdown) = watch::channel(false);
    let has_users = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.user_count()).await.expect("counting users does not panic")? > 0
    };
    let setup_token = (!has_users).then(crate::auth::session::new_token);
    let setup_url = setup_token.as_ref().map(|token| format!("{}/setup?token={token}", browsable_url(addr)));

    let app = Arc::new(App {
        message_rate: MessageRateLimit::new(config.message_rate, config.message_burst),
        login_throttle: LoginThrottle::default(),
        password_checks: tokio::sync::Semaphore::new(
            2 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        ),
        config,
        store,
        hub,
        live: Default::default(),
        log,
        metrics,
        shutdown: shutdown.clone(),
        setup_token: Mutex::new(setup_token),
    });
    // Compute the unknown-user hash now, so the first failed login for an
    // unknown name takes no longer than one for a known name.
    tokio::task::spawn_blocking(|| crate::auth::password::dummy_hash().len());
    tokio::spawn(sweep_expired_sessions(app.clone(), shutdown.clone()));
    let accept_task = tokio::spawn(crate::http::server::accept_loop(listener, app.clone(), shutdown));
    tracing::info!(%addr, data_dir = %app.config.data_dir.display(), "chatctl is serving");
    Ok(RunningServer { addr, setup_url, app, stop, accept_task, writer })
}

/// A URL a browser on this machine can open: `0.0.0.0` is not one.
fn browsable_url(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => format!("http://127.0.0.1:{}", addr.port()),
        ip if ip.is_unspecified() => format!("http://[::1]:{}", addr.port()),
        _ => format!("http://{addr}"),
    }
}

impl RunningServer {
    pub fn url(&self) -> String {
        browsable_url(self.addr)
    }

    /// The shared state, for tests that need to look inside.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting, closes every socket with 1001, waits for storage to
    /// commit what was accepted, all within the configured grace period.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.app.config.shutdown_grace;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout_at(deadline.into(), self.accept_task).await;
        while self.app.metrics.open_sockets.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The writer thread ends once the last `App` (and its log handle) is
        // gone and its queue is drained.
        drop(self.app);
        let writer = tokio::task::spawn_blocking(move || self.writer.join());
        if tokio::time::timeout_at(deadline.into(), writer).await.is_err() {
            tracing::warn!("shutdown grace period ended before every socket closed; committed messages are safe");
        }
        tracing::info!("chatctl stopped");
    }
}

/// Removes expired sessions hourly, so the table does not grow forever.
async fn sweep_expired_sessions(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = crate::app::App::stopping(&mut shutdown) => return,
            _ = every_hour.tick() => {
                match app.storage(|store| store.delete_expired_sessions(now_ms())).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "expired sessions removed"),
                    Err(error) => tracing::warn!(%error, "sweeping expired sessions failed; will retry in an hour"),
                }
            }
        }
    }
}
