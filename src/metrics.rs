//! Counters for `/metrics` (Prometheus text format). Plain atomics: each hot
//! path adds once per event, never takes a lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The server's counters, shared by every task that counts; `render` is `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// `chatctl_http_requests_total`: requests received, upgrades included.
    pub http_requests: AtomicU64,
    /// `chatctl_websockets_open`: a gauge, up at upgrade and down when
    /// the socket's task ends, panics included.
    pub open_sockets: AtomicI64,
    /// `chatctl_websockets_accepted_total`: upgrades that became sockets.
    pub sockets_accepted: AtomicU64,
    /// `chatctl_frames_received_total`: client text messages (fragments reassembled), valid or not.
    pub frames_received: AtomicU64,
    /// `chatctl_frames_refused_total`: client frames answered with an error frame.
    pub frames_refused: AtomicU64,
    /// `chatctl_messages_stored_total`: messages committed (on a cluster node, from any node).
    pub messages_stored: AtomicU64,
    /// `chatctl_storage_commits_total`: batches committed; with
    /// `messages_stored`, how well group commit batches.
    pub commits: AtomicU64,
    /// `chatctl_storage_failures_total`: batches the log refused on a storage failure.
    pub store_failures: AtomicU64,
    /// `chatctl_deliveries_total`: message frames queued to sockets.
    pub deliveries: AtomicU64,
    /// `chatctl_slow_consumer_drops_total`: deliveries refused by a full
    /// socket queue (that socket then closes).
    pub slow_consumer_drops: AtomicU64,
    /// `chatctl_logins_succeeded_total`: sign-ins that started a session.
    pub logins_succeeded: AtomicU64,
    /// `chatctl_logins_failed_total`: wrong name or password; a rise means guessing.
    pub logins_failed: AtomicU64,
    /// `chatctl_logins_throttled_total`: attempts refused unchecked by the login throttle.
    pub logins_throttled: AtomicU64,
    /// `chatctl_logins_busy_total`: attempts not checked because
    /// every password-check slot stayed taken.
    pub logins_busy: AtomicU64,
    /// Connections closed at accept: their address held its
    /// `--max-connections-per-address` already.
    pub connections_refused: AtomicU64,
    /// `chatctl_presence_changes_total`: users coming online or going
    /// offline (cluster-wide), as announced on this node.
    pub presence_changes: AtomicU64,
    /// `chatctl_presence_events_received_total`: presence changes,
    /// heartbeats and list requests heard from other nodes.
    pub presence_events_received: AtomicU64,
    /// `chatctl_typing_forwarded_total`: typing frames let through the gate.
    pub typing_forwarded: AtomicU64,
    /// `chatctl_typing_dropped_total`: typing frames dropped (under 2 s since the last forwarded).
    pub typing_dropped: AtomicU64,
    /// `chatctl_login_failures_from_other_nodes_total`: failed sign-ins
    /// on other nodes counted in this node's throttle.
    pub login_failures_from_other_nodes: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition of every counter, for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: i64| {
            let _ = writeln!(out, "# HELP chatctl_{name} {help}\n# TYPE chatctl_{name} {kind}\nchatctl_{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as i64;
        counter("http_requests_total", "HTTP requests received.", "counter", get(&self.http_requests));
        counter("websockets_open", "WebSockets open now.", "gauge", self.open_sockets.load(Ordering::Relaxed));
        counter("websockets_accepted_total", "WebSocket upgrades accepted.", "counter", get(&self.sockets_accepted));
        counter("frames_received_total", "Client text frames received.", "counter", get(&self.frames_received));
        counter(
            "frames_refused_total",
            "Client frames answered with an error frame.",
            "counter",
            get(&self.frames_refused),
        );
        counter("messages_stored_total", "Messages committed to storage.", "counter", get(&self.messages_stored));
        counter("storage_commits_total", "Message batches committed (group commit).", "counter", get(&self.commits));
        counter(
            "storage_failures_total",
            "Message batches that failed to commit.",
            "counter",
            get(&self.store_failures),
        );
        counter("deliveries_total", "Message frames queued to sockets.", "counter", get(&self.deliveries));
        counter(
            "slow_consumer_drops_total",
            "Deliveries refused because a socket queue was full.",
            "counter",
            get(&self.slow_consumer_drops),
        );
        counter("logins_succeeded_total", "Successful sign-ins.", "counter", get(&self.logins_succeeded));
        counter("logins_failed_total", "Failed sign-ins.", "counter", get(&self.logins_failed));
        counter("logins_throttled_total", "Sign-ins refused by throttling.", "counter", get(&self.logins_throttled));
        counter(
            "logins_busy_total",
            "Sign-ins not checked because every password check slot stayed taken (retry).",
            "counter",
            get(&self.logins_busy),
        );
        counter(
            "connections_refused_total",
            "Connections refused at accept: their address held --max-connections-per-address already.",
            "counter",
            get(&self.connections_refused),
        );
        counter(
            "presence_changes_total",
            "Users coming online or going offline, as announced on this node.",
            "counter",
            get(&self.presence_changes),
        );
        counter(
            "presence_events_received_total",
            "Presence events and heartbeats heard from other nodes.",
            "counter",
            get(&self.presence_events_received),
        );
        counter("typing_forwarded_total", "Typing frames forwarded.", "counter", get(&self.typing_forwarded));
        counter(
            "typing_dropped_total",
            "Typing frames dropped (under 2 s since the last forwarded).",
            "counter",
            get(&self.typing_dropped),
        );
        counter(
            "login_failures_from_other_nodes_total",
            "Failed sign-ins on other nodes counted in this node's login throttle.",
            "counter",
            get(&self.login_failures_from_other_nodes),
        );
        out
    }
}
