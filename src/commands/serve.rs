//! `chatctl serve`: runs the server until SIGINT or SIGTERM; SIGHUP reloads
//! the TLS certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::DataDir;
use ipnet::IpNet;

use crate::config::{
    ForwardedHeader, PublicUrl, ServerConfig, TlsFiles, TrustedProxies, BODY_DEADLINE,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_SOCKETS_PER_USER, SOCKET_IDLE_TIMEOUT,
};
use crate::log::cluster::ClusterConfig;
use crate::telemetry::{self, LogFormat};

/// `chatctl serve`'s flags, each with its `CHATCTL_*` variable.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "CHATCTL_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Where the database and the control socket live.
    #[command(flatten)]
    pub data_dir: DataDir,
    /// An origin (scheme://host[:port]) allowed to open sockets besides the
    /// server's own; repeat for more. The variable takes a comma-separated list.
    #[arg(long = "allowed-origin", env = "CHATCTL_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// The URL users open (e.g. https://chat.example.com) when it is not the
    /// bind address: an allowed Origin, the base of printed URLs, and with
    /// https it makes cookies Secure.
    #[arg(long, env = "CHATCTL_PUBLIC_URL", value_parser = clap::value_parser!(PublicUrl))]
    pub public_url: Option<PublicUrl>,
    /// A reverse proxy's address or CIDR range (e.g. 127.0.0.1/32); repeat
    /// for more. Only requests from these may name the client in
    /// X-Forwarded-For/Forwarded. The variable takes a comma-separated list.
    #[arg(long = "trusted-proxy", env = "CHATCTL_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = TrustedProxies::parse_range)]
    pub trusted_proxies: Vec<IpNet>,
    /// Which forwarding header the trusted proxies write: auto (X-Forwarded-For
    /// when present, else Forwarded), x-forwarded-for, or forwarded (RFC 7239).
    #[arg(long, env = "CHATCTL_FORWARDED_HEADER", value_enum, default_value = "auto")]
    pub forwarded_header: ForwardedHeader,
    /// Log lines as text for a person, or JSON lines for a log collector.
    #[arg(long, env = "CHATCTL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Messages per second per user on this node (0 turns the limit off).
    #[arg(long, env = "CHATCTL_MESSAGE_RATE", default_value_t = 20)]
    pub message_rate: u32,
    /// Messages a user may send at once before the rate applies.
    #[arg(long, env = "CHATCTL_MESSAGE_BURST", default_value_t = 40)]
    pub message_burst: u32,
    /// Mark cookies Secure; set this when users reach chatctl over HTTPS.
    #[arg(long, env = "CHATCTL_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Open connections (HTTP and WebSocket) one client address may hold; an
    /// IPv6 client counts by its /64. Past it new connections are refused.
    /// Trusted proxies are exempt. 0 turns the cap off.
    #[arg(long, env = "CHATCTL_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)]
    pub max_connections_per_address: u32,
    /// Open WebSockets one user may hold on this node, across sessions and
    /// addresses; past it an upgrade gets 429. 0 turns the cap off.
    #[arg(long, env = "CHATCTL_MAX_SOCKETS_PER_USER", default_value_t = DEFAULT_MAX_SOCKETS_PER_USER)]
    pub max_sockets_per_user: u32,
    /// Serve /metrics to every client, not only loopback ones.
    #[arg(long, env = "CHATCTL_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// RabbitMQ to run as one node of a cluster (e.g. amqp://user:pass@host:5672/%2f).
    /// Without it chatctl runs as a single node with no broker.
    #[arg(long, env = "CHATCTL_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// The stream queue holding the cluster's log; every node of one chat uses the same.
    #[arg(long, env = "CHATCTL_AMQP_STREAM", default_value = crate::log::stream::DEFAULT_STREAM)]
    pub amqp_stream: String,
    /// Stream retention by age (RabbitMQ's x-max-age: e.g. 30D, 12h). Unset: kept forever.
    #[arg(long, env = "CHATCTL_STREAM_MAX_AGE")]
    pub stream_max_age: Option<String>,
    /// Stream retention by size in bytes (x-max-length-bytes). Unset: no limit.
    #[arg(long, env = "CHATCTL_STREAM_MAX_BYTES")]
    pub stream_max_bytes: Option<u64>,
    /// Seconds shutdown waits for sockets to close and storage to finish.
    #[arg(long, env = "CHATCTL_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Serve HTTPS and WSS with this PEM certificate (then any intermediates);
    /// needs --tls-key. SIGHUP reloads both files.
    #[arg(long, env = "CHATCTL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CHATCTL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Runs the server until SIGINT or SIGTERM (SIGHUP reloads TLS), then shuts it down
/// gracefully; exits 1 when it cannot start.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    telemetry::init(args.log_format);
    tracing::info!("chatctl {} starting", crate::VERSION);
    raise_open_file_limit();
    // Plain-text banners are for a person at a terminal; JSON logs carry
    // the same facts as log lines only, so every line parses.
    let banners = args.log_format == LogFormat::Text;
    let config = ServerConfig {
        bind: args.bind,
        data_dir: args.data_dir.path,
        allowed_origins: args.allowed_origins,
        public_url: args.public_url,
        trusted_proxies: TrustedProxies::new(args.trusted_proxies).reading(args.forwarded_header),
        message_rate: args.message_rate,
        message_burst: args.message_burst,
        secure_cookies: args.secure_cookies,
        public_metrics: args.public_metrics,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles { cert, key }),
        socket_idle_timeout: SOCKET_IDLE_TIMEOUT,
        max_connections_per_address: args.max_connections_per_address,
        max_sockets_per_user: args.max_sockets_per_user,
        body_deadline: BODY_DEADLINE,
        cluster: args.amqp_url.map(|url| ClusterConfig {
            url,
            stream: args.amqp_stream,
            max_age: args.stream_max_age,
            max_bytes: args.stream_max_bytes,
        }),
    };
    super::runtime()?.block_on(async move {
        let mut signals = Signals::register()?;
        let server = match crate::startup::start(config).await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!("{error}");
                if banners {
                    eprintln!("chatctl serve: {error}");
                }
                return Ok(ExitCode::FAILURE);
            }
        };
        if banners {
            eprintln!("chatctl is serving at {}", server.url());
        }
        // A cluster node knows whether accounts exist only once caught up.
        let announce_setup = async {
            if let Some(url) = server.setup_url_when_ready().await {
                tracing::warn!(%url, "no account exists yet: open the setup URL to create the first administrator");
                if banners {
                    eprintln!("\n  No account exists yet. Create the first administrator here:\n\n    {url}\n");
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = signals.until_stop(&server) => {}
            _ = announce_setup => {}
        }
        tracing::info!("stop signal received; closing sockets and finishing writes");
        server.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Raises the soft limit on open files to the hard one: every connection
/// and socket is a file descriptor, and the usual soft default (1,024) runs
/// out long before the per-address caps or `MAX_CONNECTIONS` would. Not
/// being allowed to is worth a warning, not a refusal to start.
#[cfg(unix)]
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let shown = |value: Option<u64>| value.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        tracing::info!(limit = %shown(limit.current), "open file limit already at its hard limit");
        return;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum }) {
        Ok(()) => {
            let now = getrlimit(Resource::Nofile).current;
            tracing::info!(limit = %shown(now), "raised the open file limit to its hard limit");
        }
        Err(error) => tracing::warn!(
            %error,
            soft = %shown(limit.current),
            hard = %shown(limit.maximum),
            "could not raise the open file limit; raise it (ulimit -n, LimitNOFILE=) if accepts fail with too many open files"
        ),
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}

/// The signals `serve` acts on. They are registered before the server
/// starts: a SIGHUP (a certificate renewal hook) or SIGTERM that arrives
/// during start-up is then handled once the server runs, instead of ending
/// the process by the signal's default action, which systemd's
/// `Restart=on-failure` treats as a clean exit.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn register() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let register = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|error| anyhow::anyhow!("cannot handle {name}: {error}"))
        };
        Ok(Signals {
            interrupt: register(SignalKind::interrupt(), "SIGINT")?,
            terminate: register(SignalKind::terminate(), "SIGTERM")?,
            hangup: register(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    #[cfg(not(unix))]
    fn register() -> anyhow::Result<Signals> {
        Ok(Signals {})
    }

    /// Resolves on SIGINT (Ctrl-C) or SIGTERM; each SIGHUP meanwhile
    /// reloads the TLS pair (renewed certificates).
    async fn until_stop(&mut self, server: &crate::startup::RunningServer) {
        #[cfg(unix)]
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                Some(()) = self.hangup.recv() => {
                    // A bad pair is logged at error by reload_tls, and the old pair stays.
                    if let Err(crate::http::tls::TlsError::Off) = server.reload_tls().await {
                        tracing::info!("SIGHUP: TLS is off; nothing to reload");
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = server;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
