//! Building and running the server. `serve`, the integration tests and
//! `smoke-test` all start it through `start`, so they run the same thing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::auth::setup::SetupToken;
use crate::chat::ephemeral::EphemeralBus;
use crate::chat::fanout::{FanOut, Targets};
use crate::chat::hub::Hub;
use crate::chat::live::LiveSockets;
use crate::chat::presence::Presence;
use crate::chat::rate_limit::MessageRateLimit;
use crate::chat::typing::TypingGate;
use crate::chat::Chat;
use crate::config::ServerConfig;
use crate::http::accounts::cluster_login_throttle;
use crate::http::tls::{Tls, TlsError};
use crate::log::cluster::{Cluster, ClusterConfig};
use crate::log::embedded::Embedded;
use crate::log::WriteLog;
use crate::metrics::Metrics;
use crate::relay::{Relay, RelayConfig};
use crate::shutdown::{Shutdown, Stopping};
use crate::storage::{now_ms, SchemaCheck, StorageError, Store};

/// Why the server could not start, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Opening the database failed; the storage error says why and what to do.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another process listens on the address.
    #[error("cannot listen on {addr}: the port is in use. Stop the other process or choose another address with --bind (or CHATCTL_BIND)")]
    PortInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Binding failed for another reason (no such address, no permission).
    #[error("cannot listen on {addr}: {source}. Choose another address with --bind")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `--amqp-url` does not parse; the text says what is wrong with it.
    #[error("{0}")]
    AmqpUrl(String),
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A cluster node's data dir started without a broker: its ids come from the stream.
    #[error("the data dir {0} belongs to a cluster node (it applied a RabbitMQ stream); start it with --amqp-url, or use another --data-dir for a single node")]
    ClusterDataDir(PathBuf),
    /// A single node's data dir started as a cluster node: its data is on no other node.
    #[error("the data dir {0} holds a single node's accounts or messages, which no other node has; a cluster node needs an empty data dir or a copy (`chatctl backup`) of another cluster node's. To make a cluster's first account from a shell, run `chatctl createsuperuser --amqp-url URL` on an empty data dir; later accounts: any node's /admin page or `chatctl createsuperuser` beside a running node")]
    SingleNodeDataDir(PathBuf),
}

/// A server that is accepting connections.
pub struct RunningServer {
    /// Where it actually listens: with port 0 in the config, the port the OS picked.
    pub addr: SocketAddr,
    /// The first-run setup URL, while the database has no user.
    pub setup_url: Option<String>,
    app: Arc<App>,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
}

/// Builds the whole server from `config` and starts accepting; the same call for
/// `serve`, tests and `smoke-test`. Nothing touches the disk if the config is bad.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    // A bad broker URL or TLS pair is refused before anything touches the disk.
    if let Some(cluster) = &config.cluster {
        crate::log::amqp_url::parse(&cluster.url).map_err(StartError::AmqpUrl)?;
    }
    let tls = config.tls.as_ref().map(Tls::load).transpose()?.map(Arc::new);
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, SchemaCheck::RequireCurrent))
        .await
        .expect("opening storage does not panic")?;
    let listener = crate::http::server::bind(config.bind).map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => StartError::PortInUse { addr: config.bind },
        _ => StartError::Bind { addr: config.bind, source },
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.bind, source })?;

    let metrics = Arc::new(Metrics::default());
    let hub = Arc::new(Hub::new(metrics.clone()));
    let live = Arc::new(LiveSockets::default());
    let has_users = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.user_count()).await.expect("counting users does not panic")? > 0
    };
    let setup_token = (!has_users).then(crate::auth::session::new_token);
    // A cluster node's own database may not have caught up with accounts
    // made elsewhere: its URL is announced once it has (`setup_url_when_ready`).
    let setup_url =
        setup_token.as_ref().filter(|_| config.cluster.is_none()).map(|token| setup_link(&config, addr, token));
    let setup = Arc::new(SetupToken::new(setup_token));
    let (joins, new_members) = tokio::sync::mpsc::channel(crate::chat::awareness::JOINS_BACKLOG);
    let targets =
        Targets { hub: hub.clone(), live: live.clone(), setup: setup.clone(), metrics: metrics.clone(), joins };
    let (log, fan_out) = start_log(&config, &store, targets).await?;
    let (shutdown_control, shutdown) = crate::shutdown::channel();
    // A single node's id only tells its own events from others', of which there are none.
    let node = match &log {
        WriteLog::Cluster(cluster) => cluster.node_id(),
        WriteLog::Embedded(_) => 0,
    };
    let ephemeral = ephemeral_bus(&config, &log, node, &shutdown);
    let presence = Presence::start(ephemeral.clone(), node, metrics.clone(), shutdown.clone());
    let login_throttle = cluster_login_throttle(&ephemeral, node, metrics.clone(), shutdown.clone());

    let chat = Arc::new(Chat {
        hub,
        live,
        log: log.clone(),
        store: store.clone(),
        message_rate: MessageRateLimit::new(config.message_rate, config.message_burst),
        history_frames: Arc::new(tokio::sync::Semaphore::new(crate::chat::socket::HISTORY_FRAMES_AT_ONCE)),
        metrics: metrics.clone(),
        socket_idle_timeout: config.socket_idle_timeout,
        ephemeral,
        presence,
        typing: TypingGate::new(metrics.clone()),
        typing_delivered: TypingGate::for_delivery(),
    });
    crate::chat::awareness::start(chat.clone(), shutdown.clone(), new_members);
    let app = Arc::new(App {
        login_throttle,
        // Leave a core to the chat: a login storm must not stall fan-out.
        password_checks: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).saturating_sub(1).max(1),
        ),
        config,
        store,
        chat,
        log,
        fan_out,
        metrics,
        shutdown: shutdown.clone(),
        setup,
    });
    // Compute the unknown-user hash now, so the first failed login for an
    // unknown name takes no longer than one for a known name.
    tokio::task::spawn_blocking(|| crate::auth::password::dummy_hash().len());
    tokio::spawn(sweep_expired_sessions(app.clone(), shutdown.clone()));
    tokio::spawn(crate::storage::recovery::run(app.store.clone(), shutdown.clone()));
    match crate::control::server::listen(app.clone(), shutdown.clone()) {
        Ok(path) => tracing::debug!(path = %path.display(), "control socket listening"),
        Err(error) => {
            tracing::warn!(%error, "no control socket in the data dir: admin commands cannot reach this server")
        }
    }
    let acceptor = tls.as_ref().map(|tls| tls.acceptor());
    tokio::spawn(crate::http::server::accept_loop(listener, acceptor, app.clone(), shutdown));
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        public_url = app.config.public_url.as_ref().map(|url| url.origin()),
        trusted_proxies = ?app.config.trusted_proxies,
        data_dir = %app.config.data_dir.display(),
        "chatctl is serving"
    );
    Ok(RunningServer { addr, setup_url, app, tls, shutdown: shutdown_control })
}

/// A data dir's storage and write log with no listener: what the admin
/// commands use when no server runs on the data dir. Nobody is connected,
/// so the log's effects (fan-out, closing sockets) reach nobody.
pub struct Core {
    /// The data dir's database, for reads (and the admin commands' own checks).
    pub store: Store,
    /// Where the admin commands' writes go, so a cluster's other nodes see them too.
    pub log: WriteLog,
    /// Answers the log's tickets (there are no sockets to tell).
    fan_out: FanOut,
}

/// Opens `data_dir` and starts its log: the embedded writer, or (with
/// `cluster`) this node's place in the cluster's stream. The same mode
/// checks as `start` apply.
pub async fn open_core(data_dir: PathBuf, cluster: Option<ClusterConfig>) -> Result<Core, StartError> {
    if let Some(cluster) = &cluster {
        crate::log::amqp_url::parse(&cluster.url).map_err(StartError::AmqpUrl)?;
    }
    let mut config = ServerConfig::new(data_dir);
    config.cluster = cluster;
    let dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, SchemaCheck::RequireCurrent))
        .await
        .expect("opening storage does not panic")?;
    let metrics = Arc::new(Metrics::default());
    let hub = Arc::new(Hub::new(metrics.clone()));
    // No sockets here: new members have nobody to be shown to.
    let (joins, _) = tokio::sync::mpsc::channel(1);
    let targets = Targets { hub, live: Arc::default(), setup: Arc::default(), metrics, joins };
    let (log, fan_out) = start_log(&config, &store, targets).await?;
    Ok(Core { store, log, fan_out })
}

impl Core {
    /// Waits until the log takes writes: at once for a single node; a
    /// cluster node must connect and catch up on the stream. Gives up when
    /// the broker stays unreachable for `patience` (catching up may take
    /// longer: it is progress). `progress` hears why it still waits.
    pub async fn wait_ready(&self, patience: Duration, progress: impl Fn(&str)) -> Result<(), String> {
        let mut deadline = Instant::now() + patience;
        let mut next_note = Instant::now() + Duration::from_secs(5);
        loop {
            let reason = match self.log.readiness().and_then(|()| self.fan_out.readiness()) {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if self.log.connected() {
                deadline = Instant::now() + patience; // catching up is progress
            }
            if Instant::now() >= deadline {
                return Err(reason);
            }
            if Instant::now() >= next_note {
                progress(&reason);
                next_note = Instant::now() + Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Lets the log finish what it accepted, then releases the database.
    pub async fn close(self) {
        self.log.close(Duration::from_secs(30)).await;
        drop(self.store);
    }
}

/// The single node's writer, or the cluster's stream, and the fan-out that
/// consumes its events; a data dir stays with the mode it was made in
/// (message ids of the two do not mix).
async fn start_log(config: &ServerConfig, store: &Store, targets: Targets) -> Result<(WriteLog, FanOut), StartError> {
    let probe = store.clone();
    let (cluster_dir, single_node_dir) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
        Ok((probe.stream_next_offset()?.is_some(), probe.has_single_node_data()?))
    })
    .await
    .expect("reading storage does not panic")?;
    match &config.cluster {
        None if cluster_dir => return Err(StartError::ClusterDataDir(config.data_dir.clone())),
        Some(_) if single_node_dir => return Err(StartError::SingleNodeDataDir(config.data_dir.clone())),
        _ => {}
    }
    let (events, received) = crate::log::events();
    let metrics = targets.metrics.clone();
    let fan_out = crate::chat::fanout::start(received, targets);
    let log = match &config.cluster {
        None => WriteLog::Embedded(Embedded::start(store.clone(), events, metrics)),
        Some(cluster) => WriteLog::Cluster(Cluster::start(cluster.clone(), store.clone(), events, metrics)),
    };
    Ok((log, fan_out))
}

/// The setup page's URL, for the operator to open: on the public URL when
/// there is one, else on the address served.
fn setup_link(config: &ServerConfig, addr: SocketAddr, token: &str) -> String {
    let base = config
        .public_url
        .as_ref()
        .map_or_else(|| browsable_url(addr, config.tls.is_some()), |url| url.origin().to_owned());
    format!("{base}/setup?token={token}")
}

/// A URL a browser on this machine can open: `0.0.0.0` is not one.
fn browsable_url(addr: SocketAddr, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => format!("{scheme}://127.0.0.1:{}", addr.port()),
        ip if ip.is_unspecified() => format!("{scheme}://[::1]:{}", addr.port()),
        _ => format!("{scheme}://{addr}"),
    }
}

impl RunningServer {
    /// A URL to reach the server from this machine (`0.0.0.0`
    /// becomes loopback); tests connect to it.
    pub fn url(&self) -> String {
        browsable_url(self.addr, self.tls.is_some())
    }

    /// Reads `--tls-cert` and `--tls-key` again (SIGHUP calls this): the
    /// next handshake uses the new pair. A bad pair is refused, logged at
    /// error, and the old one stays in use.
    pub async fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().await,
            None => Err(TlsError::Off),
        }
    }

    /// The first-run setup URL once this node knows whether any account
    /// exists: at once for a single node; for a cluster node, after it has
    /// caught up on the stream (a setup token closes when any CreateUser is
    /// applied). Never resolves while a cluster node cannot catch up.
    pub async fn setup_url_when_ready(&self) -> Option<String> {
        if self.app.config.cluster.is_none() {
            return self.setup_url.clone();
        }
        while self.app.log.readiness().and_then(|()| self.app.fan_out.readiness()).is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.app.setup.get().map(|token| setup_link(&self.app.config, self.addr, &token))
    }

    /// The shared state, for tests that need to look inside.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting, closes every socket with 1001, waits for every
    /// task to end and for storage to commit what was accepted, then
    /// releases the database; all within the configured grace period.
    pub async fn shutdown(mut self) {
        let deadline = Instant::now() + self.app.config.shutdown_grace;
        self.shutdown.begin();
        self.app.chat.live.close_all(1001, "server shutting down");
        // The accept loops, every connection and socket, the control socket
        // and the background tasks each hold a `Running` guard.
        let finished = self.shutdown.tasks_finished(deadline).await;
        self.app.log.close(deadline.saturating_duration_since(Instant::now())).await;
        if !finished {
            tracing::warn!("shutdown grace period ended before every task finished; committed writes are safe");
        }
        // The database closes with the last handle on it, so that a restart
        // can open it again. Every task that held one has ended by now.
        if let Err(app) = Arc::try_unwrap(self.app) {
            tracing::warn!(
                holders = Arc::strong_count(&app) - 1,
                "something still holds the server's state; the database is released when it lets go"
            );
        }
        tracing::info!("chatctl stopped");
    }
}

/// A single node's bus, or one that relays to the cluster's other nodes.
/// The relay names this node by `node`, the id it writes to the stream under.
fn ephemeral_bus(config: &ServerConfig, log: &WriteLog, node: u64, stopping: &Stopping) -> Arc<EphemeralBus> {
    let (Some(cluster), WriteLog::Cluster(_)) = (&config.cluster, log) else { return EphemeralBus::local() };
    let relay = RelayConfig::for_stream(&cluster.url, &cluster.stream);
    let (relay, from_other_nodes) = Relay::start(relay, node, stopping.clone());
    EphemeralBus::clustered(relay, from_other_nodes)
}

/// Removes expired sessions hourly, so the table does not grow forever.
async fn sweep_expired_sessions(app: Arc<App>, mut shutdown: Stopping) {
    let _running = shutdown.running();
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = every_hour.tick() => {
                match app.store.call(|store| store.delete_expired_sessions(now_ms())).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "expired sessions removed"),
                    Err(error) => tracing::warn!(%error, "sweeping expired sessions failed; will retry in an hour"),
                }
            }
        }
    }
}
