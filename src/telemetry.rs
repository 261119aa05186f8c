//! Logging setup: `tracing` to stderr, as text or JSON lines. `RUST_LOG`
//! overrides the default level (`info`).

use tracing_subscriber::EnvFilter;

/// The log target of security events (sign-ins, failures, throttling,
/// refused upgrades), each with the client's address: what fail2ban reads
/// (docs/DEPLOY.md has the filter).
pub const SECURITY: &str = "chatctl::security";

/// `--log-format`: who reads the log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain lines for a person at a terminal or journald.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Text a client chose (a username as typed, an `Origin`), made safe for a
/// one-line log: cut at 150 characters, and every character outside a
/// conservative set (spaces, quotes, control characters included) written
/// as `\u{..}`. No field can then forge another field or line for a log
/// reader such as fail2ban.
pub fn log_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(160));
    for c in text.chars().take(150) {
        if c.is_ascii_alphanumeric() || "_.@+-:/[]".contains(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

/// Whether a warning that repeats (one per refused client, say) may be
/// logged now: true at most once per `every`, across threads. `last` keeps
/// when it was last logged, in ms since the epoch.
pub fn due(last: &std::sync::atomic::AtomicU64, every: std::time::Duration) -> bool {
    use std::sync::atomic::Ordering;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let then = last.load(Ordering::Relaxed);
    now.saturating_sub(then) >= every.as_millis() as u64
        && last.compare_exchange(then, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// Sends `tracing` to stderr in `format`, and panics into the
/// log; call once, before the server starts.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal, not in log files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A panic is reported as a log event, so JSON logs stay JSON and the
    // report reaches journald with the rest.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "a task panicked")));
}

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn logged_client_text_has_no_spaces_quotes_or_newlines() {
        assert_eq!(log_safe("alice.b@x-y+z_1"), "alice.b@x-y+z_1");
        assert_eq!(log_safe("https://chat.example:8443"), "https://chat.example:8443");
        let forged = log_safe("http://x WARN chatctl::security: sign-in failed client=198.51.100.77\n\"");
        assert!(!forged.contains(' ') && !forged.contains('\n') && !forged.contains('"'), "{forged}");
        assert_eq!(log_safe(&"a".repeat(500)).len(), 150);
    }
}
