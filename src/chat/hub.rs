//! In-process fan-out: conversation key -> the sockets on this node that
//! watch it. Each frame is serialised once and the same `Bytes` handed to
//! every recipient. A socket whose bounded queue is full is told to close
//! ("slow consumer") instead of slowing its room down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;

use super::frames;
use super::socket_queue::{self, TrySendError};
use crate::domain::{Conversation, MessageId};
use crate::metrics::Metrics;
use crate::storage::Message;

/// Unique per socket in this process: how the hub finds a message's sender among its recipients.
pub type SocketId = u64;

/// What a socket's writer task sends, in queue order.
pub enum Outbound {
    /// A stored message; the id lets the socket skip what its history frame held.
    Message {
        /// Compared with the history frame's last id, to skip a message sent twice.
        id: MessageId,
        /// The frame, shared by every recipient (the sender's copy has its `client_id`).
        bytes: Bytes,
    },
    /// A frame for this socket alone (an `error` frame).
    Frame(Bytes),
    /// A control frame the protocol obliges us to send (pong, close echo).
    Control(fastwebsockets::Frame<'static>),
    /// Close with this code and reason, then stop.
    Close(u16, &'static str),
}

/// A close that jumps the queue (slow consumer, shutdown). The writer task
/// checks it between batches instead of waiting on a notification: a full
/// queue means the writer is awake anyway, and a shutdown also queues a
/// close to wake it. The first reason set wins.
#[derive(Default)]
pub struct UrgentClose(OnceLock<(u16, &'static str)>);

impl UrgentClose {
    /// Asks the writer to close with this code before what is queued; a later request is ignored.
    pub fn request(&self, code: u16, reason: &'static str) {
        let _ = self.0.set((code, reason));
    }

    /// Checked by the writer between batches: the close to send now, if any.
    pub fn requested(&self) -> Option<(u16, &'static str)> {
        self.0.get().copied()
    }
}

/// What a socket watches, which decides what it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// `/ws/chat/<room>/` or `/ws/direct/<user>/`: one conversation, typing included.
    Conversation,
    /// `/ws/user/`: every conversation of the user, without typing.
    Inbox,
}

/// One socket's end of the hub.
pub struct Subscriber {
    /// Lets the hub give the sender its own copy (with `client_id`)
    /// and unsubscribe the right socket.
    pub id: SocketId,
    /// Whose socket it is: typing is not sent back to its typist.
    pub user: String,
    /// What it watches.
    pub kind: SocketKind,
    queue: socket_queue::Sender<Outbound>,
    urgent: Arc<UrgentClose>,
    /// Set once the server decided to close this socket: it takes no more messages.
    closing: AtomicBool,
    /// The conversations the hub lists it under, so that it leaves them all
    /// when it ends; `None` once it has (the fan-out, racing with the end,
    /// must not subscribe it again). Changed only under the hub's lock.
    subscriptions: std::sync::Mutex<Option<Vec<String>>>,
}

impl Subscriber {
    /// A subscriber, the receiving end its writer task drains, and the
    /// writer's view of urgent closes.
    pub fn new(
        capacity: usize,
        user: &str,
        kind: SocketKind,
    ) -> (Arc<Subscriber>, socket_queue::Receiver<Outbound>, Arc<UrgentClose>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (queue, receiver) = socket_queue::channel(capacity);
        let urgent = Arc::new(UrgentClose::default());
        let subscriber = Subscriber {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            user: user.to_owned(),
            kind,
            queue,
            urgent: urgent.clone(),
            closing: AtomicBool::new(false),
            subscriptions: std::sync::Mutex::new(Some(Vec::new())),
        };
        (Arc::new(subscriber), receiver, urgent)
    }

    /// Closes the socket after what is already queued; from now on the
    /// socket takes no messages.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.closing.store(true, Ordering::Relaxed);
        self.deliver(Outbound::Close(code, reason));
    }

    /// Closes the socket before what is queued (server shutdown).
    pub fn close_now(&self, code: u16, reason: &'static str) {
        self.closing.store(true, Ordering::Relaxed);
        self.urgent.request(code, reason);
        // Wakes an idle writer; a full queue means it is busy and will look.
        let _ = self.queue.try_send(Outbound::Close(code, reason));
    }

    /// A closing socket takes no more messages (they would be sent after its close).
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Queues without waiting. A full queue marks the socket a slow consumer:
    /// its writer closes it, and the client recovers with `since=`.
    pub fn deliver(&self, item: Outbound) -> bool {
        match self.queue.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.urgent.request(1008, "slow consumer");
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// Room membership of this node's sockets. Subscribing copies the room's
/// list (rare); publishing only clones an `Arc` under a read lock (hot).
pub struct Hub {
    rooms: RwLock<HashMap<String, Arc<[Arc<Subscriber>]>>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// An empty hub; its deliveries and slow-consumer drops count into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Hub {
        Hub { rooms: RwLock::new(HashMap::new()), metrics }
    }

    /// Adds a socket to a conversation before its history is read,
    /// so no message falls between the two. Subscribing twice changes nothing.
    pub fn subscribe(&self, conversation: &str, subscriber: Arc<Subscriber>) {
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        let mut subscriptions = subscriber.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(subscriptions) = subscriptions.as_mut() else { return };
        let entry = rooms.entry(conversation.to_owned()).or_insert_with(|| Arc::from(Vec::new()));
        if entry.iter().any(|s| s.id == subscriber.id) {
            return;
        }
        subscriptions.push(conversation.to_owned());
        let mut list: Vec<_> = entry.iter().cloned().collect();
        list.push(subscriber.clone());
        *entry = Arc::from(list);
    }

    /// Removes a socket from every conversation it was subscribed to, when
    /// it ends; it cannot be subscribed again.
    pub fn unsubscribe_everywhere(&self, subscriber: &Subscriber) {
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        let conversations = subscriber.subscriptions.lock().unwrap_or_else(|p| p.into_inner()).take();
        for conversation in conversations.unwrap_or_default() {
            remove_from(&mut rooms, &conversation, subscriber.id);
        }
    }

    /// The local sockets of a conversation, shared (cheap to take).
    fn subscribers(&self, conversation: &str) -> Option<Arc<[Arc<Subscriber>]>> {
        self.rooms.read().unwrap_or_else(|p| p.into_inner()).get(conversation).cloned()
    }

    /// Sends `frame` to the conversation sockets (not user sockets) of
    /// `conversation`, except those of `except_user`: typing, and presence
    /// changes of a member. Returns how many were sent it.
    pub fn to_conversation_sockets(&self, conversation: &str, except_user: &str, frame: &bytes::Bytes) -> usize {
        let Some(subscribers) = self.subscribers(conversation) else { return 0 };
        let mut sent = 0;
        for subscriber in subscribers.iter() {
            if subscriber.kind == SocketKind::Conversation
                && subscriber.user != except_user
                && subscriber.deliver(Outbound::Frame(frame.clone()))
            {
                sent += 1;
            }
        }
        sent
    }

    /// The direct conversations naming `user` that local sockets watch. A
    /// direct socket shows both of its users' presence even before the first
    /// message makes them members, so their changes go to it too. Scans the
    /// watched conversations: presence changes are rare next to messages.
    pub fn watched_directs_of(&self, user: &str) -> Vec<String> {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms
            .keys()
            .filter(|key| {
                matches!(Conversation::from_key(key), Some(Conversation::Direct { low, high })
                    if low.as_str() == user || high.as_str() == user)
            })
            .cloned()
            .collect()
    }

    /// Sends a stored message to every local socket of its conversation. The
    /// sender's own socket gets a copy carrying its `client_id`.
    pub fn publish(&self, message: &Message, origin: Option<(SocketId, &str)>) {
        let Some(subscribers) = self.subscribers(&message.conversation) else { return };
        let shared = frames::message_bytes(message, None);
        let (origin_id, origin_bytes) = match origin {
            Some((id, client_id)) => (Some(id), Some(frames::with_client_id(&shared, client_id))),
            None => (None, None),
        };
        let mut dropped = 0;
        for subscriber in subscribers.iter() {
            let bytes = match (&origin_bytes, origin_id == Some(subscriber.id)) {
                (Some(own), true) => own.clone(),
                _ => shared.clone(),
            };
            if !subscriber.deliver(Outbound::Message { id: message.id, bytes }) {
                dropped += 1;
            }
        }
        self.metrics.deliveries.fetch_add(subscribers.len() as u64 - dropped, Ordering::Relaxed);
        self.metrics.slow_consumer_drops.fetch_add(dropped, Ordering::Relaxed);
    }
}

fn remove_from(rooms: &mut HashMap<String, Arc<[Arc<Subscriber>]>>, conversation: &str, id: SocketId) {
    if let Some(entry) = rooms.get_mut(conversation) {
        let list: Vec<_> = entry.iter().filter(|s| s.id != id).cloned().collect();
        if list.is_empty() {
            rooms.remove(conversation);
        } else {
            *entry = Arc::from(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64) -> Message {
        Message::posted(MessageId(id), "r", "a", "t", 0)
    }

    fn bytes_of(item: Outbound) -> Bytes {
        match item {
            Outbound::Message { bytes, .. } => bytes,
            _ => panic!("expected a message"),
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_bytes_and_the_sender_its_client_id() {
        let hub = Hub::new(Arc::default());
        let (alice, mut alice_rx, _) = Subscriber::new(8, "a", SocketKind::Conversation);
        let (bob, mut bob_rx, _) = Subscriber::new(8, "a", SocketKind::Conversation);
        hub.subscribe("r", alice.clone());
        hub.subscribe("r", bob.clone());
        hub.publish(&message(1), Some((alice.id, "c-1")));
        let to_alice = bytes_of(alice_rx.recv().await.unwrap());
        let to_bob = bytes_of(bob_rx.recv().await.unwrap());
        assert!(std::str::from_utf8(&to_alice).unwrap().contains("\"client_id\":\"c-1\""));
        assert!(!std::str::from_utf8(&to_bob).unwrap().contains("client_id"));
        hub.unsubscribe_everywhere(&bob);
        hub.publish(&message(2), None);
        assert!(bob_rx.try_recv().is_err());
        assert!(alice_rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn an_ended_socket_is_not_subscribed_again() {
        let hub = Hub::new(Arc::default());
        let (inbox, mut rx, _) = Subscriber::new(8, "a", SocketKind::Inbox);
        hub.subscribe("r", inbox.clone());
        hub.subscribe("r", inbox.clone());
        hub.publish(&message(1), None);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_err(), "subscribing twice delivers once");
        hub.unsubscribe_everywhere(&inbox);
        // The fan-out may still hold it, racing with the socket's end.
        hub.subscribe("s", inbox.clone());
        assert!(hub.rooms.read().unwrap().is_empty(), "an ended socket stays out of the hub");
    }

    #[tokio::test]
    async fn a_full_queue_flags_the_socket_instead_of_blocking() {
        let hub = Hub::new(Arc::default());
        let (slow, _rx, urgent) = Subscriber::new(1, "a", SocketKind::Conversation);
        hub.subscribe("r", slow);
        hub.publish(&message(1), None);
        assert_eq!(urgent.requested(), None);
        hub.publish(&message(2), None);
        assert_eq!(urgent.requested(), Some((1008, "slow consumer")));
    }
}
