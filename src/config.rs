//! What `serve` needs to run, already validated. The command line (and its
//! `CHATCTL_*` environment variables) fill it in `commands::serve`; tests and
//! `smoke-test` build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// Origins (`scheme://host[:port]`) allowed besides the request's own.
    pub allowed_origins: Vec<String>,
    /// Messages per second per user on this node; 0 turns the limit off.
    pub message_rate: u32,
    pub message_burst: u32,
    /// Mark cookies `Secure` (when served behind HTTPS).
    pub secure_cookies: bool,
    /// Serve `/metrics` to every client, not just loopback ones.
    pub public_metrics: bool,
    /// With a broker: the cluster's log (RabbitMQ stream). Without: one node.
    pub cluster: Option<crate::log::cluster::ClusterConfig>,
    /// How long shutdown waits for sockets and storage before giving up.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// The defaults of `chatctl serve`, for the given data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: data_dir.into(),
            allowed_origins: Vec::new(),
            message_rate: 20,
            message_burst: 40,
            secure_cookies: false,
            public_metrics: false,
            shutdown_grace: Duration::from_secs(10),
            cluster: None,
        }
    }

    /// For tests and `smoke-test`: a random loopback port.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::new(data_dir);
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}
