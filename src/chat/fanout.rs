//! The last leg of a write's path: the log's events, turned into what live
//! connections see. A stored message goes to every local socket of its
//! conversation (its sender's copy with its `client_id`); an ended session,
//! a deactivated account or a new password closes the sockets concerned; a
//! refused write becomes an `unavailable` error frame; and every ticket is
//! answered, after its effects, so that an HTTP handler that waited on a
//! sign-out returns once the sockets are told.
//!
//! One task runs this for the whole node, in log order: it is the only
//! consumer of the log's events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::frames::{self, Refusal};
use super::hub::{Hub, Outbound};
use super::live::LiveSockets;
use crate::auth::setup::SetupToken;
use crate::domain::{Conversation, Username};
use crate::log::write::Outcome;
use crate::log::{Change, Committed, LogError, LogEvent, Ticket};
use crate::metrics::Metrics;
use crate::storage::Message;

/// What the fan-out acts on.
pub struct Targets {
    /// Delivers stored messages to this node's sockets.
    pub hub: Arc<Hub>,
    /// Closes the sockets a sign-out, deactivation or new password ends, and
    /// takes a refused message's error frame to its sender.
    pub live: Arc<LiveSockets>,
    /// Closed when any account is created, wherever it was written.
    pub setup: Arc<SetupToken>,
    /// Counts stored messages and failed stores.
    pub metrics: Arc<Metrics>,
    /// New members, for `awareness` to show them online to their new
    /// conversation (their presence may have reached this node before their
    /// membership did). Best effort: a full channel drops one.
    pub joins: mpsc::Sender<(Username, Conversation)>,
}

/// The running fan-out task.
pub struct FanOut {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Starts the task that drains `events` until the log's last sender is gone.
pub fn start(mut events: mpsc::Receiver<LogEvent>, targets: Targets) -> FanOut {
    let task = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                LogEvent::Committed(batch) => targets.committed(batch),
                LogEvent::Refused(tickets, error) => targets.refused(tickets, error),
            }
        }
    });
    FanOut { task: Mutex::new(Some(task)) }
}

impl FanOut {
    /// `Ok` while the task runs; a stopped fan-out means writes are stored
    /// but nobody is told (for `/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|task| task.is_finished()) {
            return Err(
                "the fan-out task has stopped: messages are stored but not delivered; restart the server".into()
            );
        }
        Ok(())
    }
}

impl Targets {
    /// A commit: its effects on live connections, then its messages to
    /// their rooms, then its waiters, write by write in log order.
    fn committed(&self, batch: Vec<Committed>) {
        for Committed { outcome, change, ticket } in batch {
            match &change {
                Change::Nothing => {}
                Change::SessionEnded(hash) => {
                    self.live.close_session(&hash.0);
                }
                Change::AccountDeactivated(name) => {
                    self.live.close_user(name.as_str());
                }
                Change::PasswordChanged { username, kept } => {
                    self.live.sign_out_user(username.as_str(), kept.as_ref().map(|hash| &hash.0));
                }
                Change::AccountCreated => self.setup.close(),
                Change::Joined(user, conversation) => {
                    self.follow(user.as_str(), &conversation.key());
                    let _ = self.joins.try_send((user.clone(), conversation.clone()));
                }
                Change::ReadMoved(user, conversation, up_to) => {
                    self.to_inboxes(user.as_str(), || frames::read_bytes(&conversation.key(), *up_to));
                }
            }
            match &outcome {
                Outcome::Stored(message) => self.stored(message, &ticket),
                Outcome::NotFound => self.refuse_to(&ticket, Refusal::NotFound),
                Outcome::Forbidden => self.refuse_to(&ticket, Refusal::Forbidden),
                Outcome::NoSuchEntry => {
                    self.refuse_to(&ticket, Refusal::BadFrame(super::socket::NO_SUCH_ENTRY));
                }
                _ => {}
            }
            if let Ticket::Awaited(waiter) = ticket {
                let _ = waiter.send(Ok(outcome));
            }
        }
    }

    /// A stored message, edit or deletion: to every local socket of its
    /// conversation, and its members' user sockets. A message also moves
    /// its author's marker, and the first one of a direct conversation
    /// makes both users members.
    fn stored(&self, message: &Message, ticket: &Ticket) {
        self.metrics.messages_stored.fetch_add(1, Ordering::Relaxed);
        if message.is_message() && message.conversation.starts_with("dm:") {
            if let Some(Conversation::Direct { low, high }) = Conversation::from_key(&message.conversation) {
                self.follow(low.as_str(), &message.conversation);
                self.follow(high.as_str(), &message.conversation);
            }
        }
        let origin = match ticket {
            Ticket::Connection { connection, client_id: Some(id) } => Some((*connection, id.as_str())),
            _ => None,
        };
        self.hub.publish(message, origin);
        if message.is_message() {
            self.to_inboxes(&message.author, || frames::read_bytes(&message.conversation, message.id));
        }
    }

    /// Subscribes `user`'s user sockets on this node to `conversation`
    /// (they may already be: subscribing is idempotent).
    fn follow(&self, user: &str, conversation: &str) {
        for inbox in self.live.inboxes_of(user) {
            self.hub.subscribe(conversation, inbox);
        }
    }

    /// Queues a frame on `user`'s user sockets on this node; it is built only if they have any.
    fn to_inboxes(&self, user: &str, frame: impl FnOnce() -> bytes::Bytes) {
        let inboxes = self.live.inboxes_of(user);
        if inboxes.is_empty() {
            return;
        }
        let frame = frame();
        for inbox in inboxes {
            inbox.deliver(Outbound::Frame(frame.clone()));
        }
    }

    /// An error frame for the connection that submitted a refused edit, deletion or marker.
    fn refuse_to(&self, ticket: &Ticket, refusal: Refusal) {
        if let Ticket::Connection { connection, client_id } = ticket {
            let frame = frames::error_bytes(&refusal, client_id.as_deref());
            self.live.deliver_to(*connection, Outbound::Frame(frame));
        }
    }

    /// Writes that will not be applied: their submitters hear so.
    fn refused(&self, tickets: Vec<Ticket>, error: LogError) {
        if matches!(error, LogError::Storage(_)) {
            self.metrics.store_failures.fetch_add(1, Ordering::Relaxed);
        }
        for ticket in tickets {
            match ticket {
                Ticket::Awaited(waiter) => {
                    let _ = waiter.send(Err(error.clone()));
                }
                Ticket::Connection { connection, client_id } => {
                    let frame = frames::error_bytes(&Refusal::Unavailable, client_id.as_deref());
                    self.live.deliver_to(connection, Outbound::Frame(frame));
                }
                Ticket::Nobody => {}
            }
        }
    }
}
