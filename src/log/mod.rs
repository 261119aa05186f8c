//! The write log: every change to shared state (accounts, sessions, rooms,
//! messages) is a `Write` submitted here, applied to storage in one order,
//! and only then seen by anyone.
//!
//! - `embedded`: a single node. A writer thread applies writes in batches
//!   (group commit); message ids come from a local counter.
//! - `cluster`: many nodes. Writes are published to a RabbitMQ stream and
//!   every node applies the stream in order; a message's id is its position
//!   in the stream (record offset, then its place in the record).
//!
//! Either way `apply::apply_batch` stores the batch and `Sinks::finish`
//! fans out what was stored, so the data path is the same.

pub mod amqp_url;
pub mod apply;
pub mod cluster;
pub mod embedded;
pub mod stream;
pub mod write;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::auth::setup::SetupToken;
use crate::chat::frames::{self, Refusal};
use crate::chat::hub::{Hub, Outbound, Subscriber};
use crate::chat::live::LiveSockets;
use crate::metrics::Metrics;
use write::{hash_from_hex, Outcome, Write};

/// Who is waiting for a write's outcome.
pub enum Reply {
    /// An HTTP handler, waiting for the outcome.
    Wait(oneshot::Sender<Result<Outcome, LogError>>),
    /// The socket that sent a message: it gets its `client_id` copy, or the
    /// `unavailable` error.
    Socket { origin: Arc<Subscriber>, client_id: Option<String> },
    /// Nobody on this node (a write read from another node).
    Nobody,
}

/// A write on its way into the log.
pub struct Pending {
    pub write: Write,
    pub reply: Reply,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("the write log is unavailable: {0}")]
    Unavailable(String),
    #[error("storage failed: {0}")]
    Storage(String),
}

/// Where applied writes take effect beyond storage: fan-out, sockets to
/// close, the setup page. Shared by both backends.
pub struct Sinks {
    pub hub: Arc<Hub>,
    pub live: Arc<LiveSockets>,
    pub setup: Arc<SetupToken>,
    pub metrics: Arc<Metrics>,
}

/// What a write does beyond storage, noted before the write is consumed.
enum Effect {
    None,
    CloseSession([u8; 32]),
    CloseUser(String),
    SignOutUser(String),
    UserCreated,
}

fn effect_of(write: &Write) -> Effect {
    match write {
        Write::DeleteSession { token_hash } => hash_from_hex(token_hash).map_or(Effect::None, Effect::CloseSession),
        Write::SetUserActive { username, active: false } => Effect::CloseUser(username.clone()),
        Write::SetPassword { username, .. } => Effect::SignOutUser(username.clone()),
        Write::CreateUser { .. } => Effect::UserCreated,
        _ => Effect::None,
    }
}

impl Sinks {
    /// After a batch committed: fan out stored messages in order, close
    /// sockets of ended sessions, and answer whoever waits.
    fn finish(&self, results: Vec<(Effect, Outcome, Reply)>) {
        for (effect, outcome, reply) in results {
            match (&effect, &outcome) {
                (Effect::CloseSession(hash), _) => {
                    self.live.close_session(hash);
                }
                (Effect::CloseUser(name), Outcome::Applied) => {
                    self.live.close_user(name);
                }
                (Effect::SignOutUser(name), Outcome::Applied) => {
                    self.live.sign_out_user(name);
                }
                (Effect::UserCreated, Outcome::Applied) => self.setup.close(),
                _ => {}
            }
            if let Outcome::Stored(message) = &outcome {
                self.metrics.messages_stored.fetch_add(1, Ordering::Relaxed);
                let origin = match &reply {
                    Reply::Socket { origin, client_id: Some(id) } => Some((origin.id, id.as_str())),
                    _ => None,
                };
                self.hub.publish(message, origin);
            }
            if let Reply::Wait(waiter) = reply {
                let _ = waiter.send(Ok(outcome));
            }
        }
    }

    /// A batch failed to commit: nothing of it was stored; say so.
    fn fail(&self, replies: Vec<Reply>, error: &str) {
        self.metrics.store_failures.fetch_add(1, Ordering::Relaxed);
        for reply in replies {
            refuse(reply, LogError::Storage(error.to_owned()));
        }
    }
}

/// Answers a write that will not be applied.
fn refuse(reply: Reply, error: LogError) {
    match reply {
        Reply::Wait(waiter) => {
            let _ = waiter.send(Err(error));
        }
        Reply::Socket { origin, client_id } => {
            origin.deliver(Outbound::Frame(frames::error_bytes(&Refusal::Unavailable, client_id.as_deref())));
        }
        Reply::Nobody => {}
    }
}

/// The log a node writes through.
#[derive(Clone)]
pub enum WriteLog {
    Embedded(embedded::Embedded),
    Cluster(cluster::Cluster),
}

/// How long an HTTP handler waits for its write to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(10);

impl WriteLog {
    /// Submits a write and waits until this node has applied it.
    pub async fn apply(&self, write: Write) -> Result<Outcome, LogError> {
        let (waiter, outcome) = oneshot::channel();
        let applied = async {
            self.submit(Pending { write, reply: Reply::Wait(waiter) }).await;
            outcome.await
        };
        match tokio::time::timeout(APPLY_WAIT, applied).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LogError::Unavailable("the log stopped".into())),
            Err(_) => Err(LogError::Unavailable("the write was not applied in time; it may still be".into())),
        }
    }

    /// Submits a write without waiting for it to be applied; a refusal is
    /// answered through its `Reply`.
    pub async fn submit(&self, pending: Pending) {
        match self {
            WriteLog::Embedded(log) => log.submit(pending).await,
            WriteLog::Cluster(log) => log.submit(pending).await,
        }
    }

    /// `Ok` while the node can take writes; else why not (for `/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        match self {
            WriteLog::Embedded(log) => log.readiness(),
            WriteLog::Cluster(log) => log.readiness(),
        }
    }

    /// Whether the log reaches its backend: always for a single node; for a
    /// cluster node, while it is connected to the broker (it may still be
    /// catching up on the stream).
    pub fn connected(&self) -> bool {
        match self {
            WriteLog::Embedded(_) => true,
            WriteLog::Cluster(log) => log.connected(),
        }
    }

    /// Stops taking writes and waits (up to `within`) until what was
    /// accepted is applied.
    pub async fn close(&self, within: Duration) {
        match self {
            WriteLog::Embedded(log) => log.close(within).await,
            WriteLog::Cluster(log) => log.close(within).await,
        }
    }
}
