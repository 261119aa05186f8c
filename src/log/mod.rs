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
//! Either way `apply::apply_batch` stores the batch and only then is it
//! handed on as a `LogEvent` on the events channel, so the data path is the
//! same. The log knows nothing of sockets or pages: the consumer of its
//! events (`chat::fanout`) turns them into frames, closes and answers.

pub mod amqp_url;
pub mod apply;
pub mod cluster;
pub mod embedded;
pub mod stream;
pub mod write;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::domain::{Conversation, MessageId, SessionHash, Username};
use write::{Outcome, Write};

/// How whoever submitted a write hears what became of it. The log never
/// looks inside: it hands the ticket back with the committed event (or the
/// refusal), and the event's consumer answers it.
pub enum Ticket {
    /// A caller awaiting the outcome (`WriteLog::apply`).
    Awaited(oneshot::Sender<Result<Outcome, LogError>>),
    /// A live connection of this node, by its id, with the id its client
    /// gave the write (echoed back to that client alone).
    Connection {
        /// The socket's id in the hub: its sender's copy, or its error frame, goes there.
        connection: u64,
        /// The client's tag for the write, echoed to that client alone.
        client_id: Option<String>,
    },
    /// Nobody on this node waits: a write read from another node's stream.
    Nobody,
}

/// A write on its way into the log, with the ticket its submitter holds.
pub struct Pending {
    /// The change to apply.
    pub write: Write,
    /// How the submitter hears the outcome.
    pub ticket: Ticket,
}

/// Why a write was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The log cannot take writes now (broker unreachable, node
    /// catching up, shutting down); retry later.
    #[error("the write log is unavailable: {0}")]
    Unavailable(String),
    /// Storage refused the batch (disk full, I/O error); nothing of it was stored.
    #[error("storage failed: {0}")]
    Storage(String),
}

/// What a committed write changed beyond its own rows, that live
/// connections follow (the log says what happened, not what to do about it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing for live connections to act on (a message is delivered through `outcome`).
    Nothing,
    /// The session with this token hash ended (signed out).
    SessionEnded(SessionHash),
    /// The account can no longer sign in; its sessions are void.
    AccountDeactivated(Username),
    /// The account's password changed; every session of it ended but the
    /// one that changed it, if any.
    PasswordChanged {
        /// Whose password it is.
        username: Username,
        /// The session that stays signed in (it changed its own password).
        kept: Option<SessionHash>,
    },
    /// An account was created (the first one closes first-run setup).
    AccountCreated,
    /// The user is a member of the conversation (opened it; maybe already was).
    Joined(Username, Conversation),
    /// The user's read marker in the conversation moved forward to the id.
    ReadMoved(Username, Conversation, MessageId),
}

/// One write of a commit, as its consumer sees it: what applying it came to
/// (a stored message is `Outcome::Stored`), what else it changed, and the
/// ticket to answer.
pub struct Committed {
    /// What applying the write came to; `Stored` carries the message to fan out.
    pub outcome: Outcome,
    /// What live connections must follow (sockets to close, setup to end).
    pub change: Change,
    /// Whom to answer, after the effects above.
    pub ticket: Ticket,
}

/// What the log hands on, in log order, once storage has settled it.
pub enum LogEvent {
    /// Writes committed together, in their order. Sent only after the
    /// commit returned: nobody sees a write that is not stored.
    Committed(Vec<Committed>),
    /// Writes that will not be applied; nothing of them was stored.
    Refused(Vec<Ticket>, LogError),
}

/// The sending end of the log's events; the backends share it.
pub type Events = mpsc::Sender<LogEvent>;

/// Committed batches waiting for their consumer; a full channel makes the
/// log wait before its next commit (back-pressure, never a drop).
pub const EVENTS_CAPACITY: usize = 64;

/// The channel a log is started with: its consumer (`chat::fanout`, or a
/// test) must drain the receiving end, since it answers every ticket.
pub fn events() -> (Events, mpsc::Receiver<LogEvent>) {
    mpsc::channel(EVENTS_CAPACITY)
}

impl Change {
    /// What `write` changes once applied with `outcome`.
    fn of(write: &Write, outcome: &Outcome) -> Change {
        let applied = matches!(outcome, Outcome::Applied);
        match write {
            // A session ends whether or not the row was still there.
            Write::DeleteSession { token_hash } => Change::SessionEnded(*token_hash),
            Write::SetUserActive { username, active: false } if applied => Change::AccountDeactivated(username.clone()),
            Write::SetPassword { username, keep_session, .. } if applied => {
                Change::PasswordChanged { username: username.clone(), kept: *keep_session }
            }
            Write::CreateUser { .. } if applied => Change::AccountCreated,
            Write::Join { username, conversation } if applied => Change::Joined(username.clone(), conversation.clone()),
            Write::Read { username, conversation, up_to } if matches!(outcome, Outcome::MarkerMoved) => {
                Change::ReadMoved(username.clone(), conversation.clone(), *up_to)
            }
            _ => Change::Nothing,
        }
    }
}

impl Ticket {
    /// Answers a ticket whose write will not be applied: an awaiting caller
    /// at once, a connection through the events (its consumer tells it).
    async fn refuse(self, error: LogError, events: &Events) {
        match self {
            Ticket::Awaited(waiter) => {
                let _ = waiter.send(Err(error));
            }
            Ticket::Nobody => {}
            connection => {
                let _ = events.send(LogEvent::Refused(vec![connection], error)).await;
            }
        }
    }
}

/// The log a node writes through.
#[derive(Clone)]
pub enum WriteLog {
    /// A single node: a writer thread in this process, ids from a local counter.
    Embedded(embedded::Embedded),
    /// A cluster node: writes go through the RabbitMQ stream that every node applies.
    Cluster(cluster::Cluster),
}

/// How long an HTTP handler waits for its write to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(10);

impl WriteLog {
    /// Submits a write and waits until this node has applied it.
    pub async fn apply(&self, write: Write) -> Result<Outcome, LogError> {
        let (waiter, outcome) = oneshot::channel();
        let applied = async {
            self.submit(Pending { write, ticket: Ticket::Awaited(waiter) }).await;
            outcome.await
        };
        match tokio::time::timeout(APPLY_WAIT, applied).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LogError::Unavailable("the log stopped".into())),
            Err(_) => Err(LogError::Unavailable("the write was not applied in time; it may still be".into())),
        }
    }

    /// Submits a write without waiting for it to be applied; its outcome or
    /// refusal comes back with its ticket.
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
