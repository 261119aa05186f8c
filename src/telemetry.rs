//! Logging setup: `tracing` to stderr, as text or JSON lines. `RUST_LOG`
//! overrides the default level (`info`).

use tracing_subscriber::EnvFilter;

/// The log target of security events (sign-ins, failures, throttling,
/// refused upgrades), each with the client's address: what fail2ban reads
/// (docs/DEPLOY.md has the filter).
pub const SECURITY: &str = "chatctl::security";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal, not in log files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
