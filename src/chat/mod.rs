//! Live chat: frames, the per-socket tasks and the in-process hub. A
//! message goes socket -> frames -> `crate::log` (stored), then the log's
//! event -> `fanout` -> hub -> sockets.

pub mod awareness;
pub mod ephemeral;
pub mod fanout;
pub mod frame_reader;
pub mod frames;
pub mod hub;
pub mod live;
pub mod presence;
pub mod rate_limit;
pub mod shared_io;
pub mod socket;
pub mod socket_queue;
pub mod typing;
pub mod write_buffer;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Conversation, Username};
use crate::log::WriteLog;
use crate::metrics::Metrics;
use crate::storage::{StorageError, Store};

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
    /// Which typing events, from this node or another, are delivered: the
    /// same rule on the forwarding times, so two nodes cannot double it.
    pub typing_delivered: typing::TypingGate,
}

impl Chat {
    /// The online members of a conversation (the `presence` frame after its
    /// history). Both users of a direct conversation count, the other one
    /// included before their first message there makes them a member.
    pub async fn online_members(&self, conversation: &Conversation) -> Result<Vec<String>, StorageError> {
        let members = match conversation {
            Conversation::Direct { low, high } => vec![low.as_str().to_owned(), high.as_str().to_owned()],
            Conversation::Room(_) => {
                let key = conversation.key();
                self.store.call(move |store| store.members_of(&key)).await?
            }
        };
        Ok(self.presence.online_among(members.iter().map(String::as_str)))
    }

    /// The online users, other than `user`, among those who share a
    /// conversation with `user` (the inbox's `online`).
    pub async fn online_contacts(&self, user: &str) -> Result<Vec<String>, StorageError> {
        let me = user.to_owned();
        let contacts = self.store.call(move |store| store.contacts_of(&me)).await?;
        Ok(self.presence.online_among(contacts.iter().map(String::as_str).filter(|contact| *contact != user)))
    }

    /// Whether `user` has a socket open on any node.
    pub fn is_online(&self, user: &str) -> bool {
        self.presence.is_online(user)
    }

    /// `user` is typing in `conversation`: unless they did within the last
    /// 2 s, the conversation's sockets of other users hear it, on every node.
    pub fn user_typing(&self, conversation: &Conversation, user: &Username) {
        let at_ms = crate::storage::now_ms();
        if self.typing.allow(user, conversation, at_ms) {
            let typing = ephemeral::Ephemeral::Typing { conversation: conversation.clone(), user: user.clone(), at_ms };
            self.ephemeral.publish(typing);
        }
    }
}
