//! Ephemeral events: what people are doing right now (typing, coming
//! online), as opposed to what they said. They must reach the sockets
//! concerned on every node within moments, and are worthless a few seconds
//! later, so they never touch the write log or storage: a socket publishes
//! one on the bus, the bus hands it to this node's listeners and, in a
//! cluster, to every other node through the `relay` (a fanout exchange,
//! nothing stored or confirmed). A node that misses one loses nothing that
//! the next one (the next keystroke, the next presence heartbeat) will not
//! bring. Failed sign-ins travel the same way (`LoginFailed`), so that each
//! node's login throttle counts the cluster's: one lost gives a guesser one
//! more try, no more.
//!
//! The path mirrors a message's, without the log: socket -> bus ->
//! (relay -> other nodes' buses) -> listeners -> sockets.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::domain::{Conversation, Username};
use crate::relay::Relay;

/// Events each listener may fall behind by before it skips the oldest:
/// an old typing notice is not worth holding anything up for.
const LISTENER_BACKLOG: usize = 1024;

/// One ephemeral event. Serialised between nodes, so variants and fields
/// are only ever added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ephemeral {
    /// `user` is typing in `conversation` (repeated while they type).
    Typing {
        /// Where they type: only its members hear of it.
        conversation: Conversation,
        /// Who types.
        user: Username,
        /// When the sending node forwarded it (Unix ms): every node delivers
        /// one per user and conversation per 2 s of these times. 0 (from an
        /// older node): the time it arrived.
        #[serde(default)]
        at_ms: u64,
    },
    /// `user` has at least one socket open on the sending node (`online`),
    /// or no longer has.
    Presence {
        /// Whose presence changed.
        user: Username,
        /// Whether they now have a socket open on the sending node.
        online: bool,
    },
    /// A change of `node`'s own online users (`chat::presence`): `user`
    /// opened their first socket there (`online`), or their last one there
    /// closed more than the grace period ago. Numbered, so a receiver that
    /// missed one notices by the next heartbeat and asks for the full list.
    NodePresence {
        /// The sending node's id: a user may be online on several nodes.
        node: u64,
        /// 1 for the node's first change, then one more for each.
        seq: u64,
        /// Whose presence on `node` changed.
        user: Username,
        /// Whether `user` now counts as online on `node`.
        online: bool,
    },
    /// `node` is alive, every few seconds. Its users go offline on the
    /// other nodes when these stop (`chat::presence::NODE_EXPIRY`).
    PresenceHeartbeat {
        /// The sending node's id.
        node: u64,
        /// The `seq` of the node's latest `NodePresence`: a receiver that
        /// has applied another number missed some.
        seq: u64,
        /// How many users count as online on `node`.
        online: u32,
        /// Every user online on `node`, in some heartbeats only (the first,
        /// every `chat::presence::FULL_EVERY`-th, and one sent at once to
        /// answer a `PresenceSync`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        users: Option<Vec<Username>>,
    },
    /// `node` asks node `of` for a heartbeat with its full list, at once: it
    /// started late, or missed a change.
    PresenceSync {
        /// The asking node's id.
        node: u64,
        /// The node asked.
        of: u64,
    },
    /// A failed sign-in on `node`: every other node counts it in its own
    /// login throttle (`auth::throttle`), and never passes it on.
    LoginFailed {
        /// The sending node's id (its own bus hands it the event too).
        node: u64,
        /// Whom it counts against: `domain::ClientHost` in its string form.
        host: String,
        /// The name tried, when it was a valid username.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<Username>,
    },
}

/// Where ephemeral events meet on this node.
pub struct EphemeralBus {
    local: broadcast::Sender<Ephemeral>,
    relay: Option<Relay>,
}

impl EphemeralBus {
    /// A single node's bus: events stay on this node.
    pub fn local() -> Arc<EphemeralBus> {
        Arc::new(EphemeralBus { local: broadcast::Sender::new(LISTENER_BACKLOG), relay: None })
    }

    /// A cluster node's bus: events also go out through `relay`, and those
    /// from other nodes (`from_other_nodes`) reach this node's listeners.
    pub fn clustered(relay: Relay, mut from_other_nodes: mpsc::Receiver<Vec<u8>>) -> Arc<EphemeralBus> {
        let bus = Arc::new(EphemeralBus { local: broadcast::Sender::new(LISTENER_BACKLOG), relay: Some(relay) });
        let local = bus.local.clone();
        tokio::spawn(async move {
            while let Some(bytes) = from_other_nodes.recv().await {
                match serde_json::from_slice::<Ephemeral>(&bytes) {
                    Ok(event) => {
                        let _ = local.send(event);
                    }
                    // From a newer node, or garbage: nothing to show for it.
                    Err(error) => tracing::debug!(%error, "skipping an ephemeral event this version cannot read"),
                }
            }
        });
        bus
    }

    /// Hands `event` to this node's listeners and to the other nodes.
    /// Never waits: a listener that lags skips, a relay that is down drops.
    pub fn publish(&self, event: Ephemeral) {
        if let Some(relay) = &self.relay {
            relay.send(serde_json::to_vec(&event).expect("ephemeral events serialise infallibly"));
        }
        let _ = self.local.send(event);
    }

    /// Whether events also go to other nodes (a cluster node's bus):
    /// without other nodes, presence has nobody to tell.
    pub fn is_clustered(&self) -> bool {
        self.relay.is_some()
    }

    /// A listener of every event on this node, from now on (the router
    /// that brings them to sockets; tests).
    pub fn subscribe(&self) -> broadcast::Receiver<Ephemeral> {
        self.local.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_bus_hands_each_event_to_every_listener() {
        let bus = EphemeralBus::local();
        let (mut one, mut two) = (bus.subscribe(), bus.subscribe());
        let typing = Ephemeral::Typing {
            conversation: Conversation::from_key("lobby").unwrap(),
            user: Username::parse("ann").unwrap(),
            at_ms: 1,
        };
        bus.publish(typing.clone());
        assert_eq!(one.recv().await.unwrap(), typing);
        assert_eq!(two.recv().await.unwrap(), typing);
    }

    #[test]
    fn events_travel_as_plain_json() {
        let event = Ephemeral::Presence { user: Username::parse("ann").unwrap(), online: true };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "presence", "user": "ann", "online": true}));
        assert!(serde_json::from_value::<Ephemeral>(
            serde_json::json!({"kind": "presence", "user": "a b", "online": true})
        )
        .is_err());
    }
}
