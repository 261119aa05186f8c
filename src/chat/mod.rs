//! Live chat: frames, the per-socket tasks and the in-process hub. A
//! message goes socket -> frames -> `crate::log` (stored), then the log's
//! event -> `fanout` -> hub -> sockets.

pub mod ephemeral;
pub mod fanout;
pub mod frames;
pub mod hub;
pub mod live;
pub mod presence;
pub mod rate_limit;
pub mod shared_io;
pub mod socket;
pub mod typing;
pub mod write_buffer;

use std::sync::Arc;
use std::time::Duration;

use crate::log::WriteLog;
use crate::metrics::Metrics;
use crate::storage::Store;

/// What every socket of this node shares; built once by `startup`.
pub struct Chat {
    /// Which local sockets watch which conversation; the fan-out publishes through it.
    pub hub: Arc<hub::Hub>,
    /// Every open socket by user and session, so a sign-out can close them.
    pub live: Arc<live::LiveSockets>,
    /// Where a socket's messages go to be stored (and then fanned out).
    pub log: WriteLog,
    /// History is read straight from storage.
    pub store: Store,
    /// Per-user message rate on this node; a refused frame gets `rate_limited`.
    pub message_rate: rate_limit::MessageRateLimit,
    /// History frames and pages built (and, for sockets, sent) at once:
    /// each may hold up to 1 MiB (see `socket::HISTORY_FRAMES_AT_ONCE`).
    pub history_frames: Arc<tokio::sync::Semaphore>,
    /// Sockets count upgrades, open sockets and frames received and refused into `/metrics`.
    pub metrics: Arc<Metrics>,
    /// A socket from which no frame arrives for this long is closed.
    pub socket_idle_timeout: Duration,
    /// Typing and presence: between sockets, and between nodes, never stored.
    pub ephemeral: Arc<ephemeral::EphemeralBus>,
    /// Who is online, cluster-wide: each socket holds a `PresenceGuard`
    /// (`presence.socket_opened`), and `presence.changes()` says whom to announce.
    pub presence: Arc<presence::Presence>,
    /// Which typing frames are forwarded (one per user and conversation every 2 s).
    pub typing: typing::TypingGate,
}
