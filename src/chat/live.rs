//! Every open socket, by user and session, so that signing out or
//! deactivating a user closes their sockets at once instead of at the next
//! reconnect; and how many each user holds, for `--max-sockets-per-user`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::hub::{SocketId, SocketKind, Subscriber};

/// Shared by the sockets, which register themselves, and the
/// fan-out, which closes them by user or session.
#[derive(Default)]
pub struct LiveSockets {
    sockets: Mutex<Registry>,
    /// How many user sockets are open: the fan-out looks for a poster's
    /// user sockets on every message, and skips the lock while there are none.
    inbox_count: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<SocketId, Entry>,
    /// Set by `close_all` (shutdown): a socket registered later is closed at once.
    closed_with: Option<(u16, &'static str)>,
    /// Sockets each user holds or is opening (`UserSocketSlot`s).
    per_user: HashMap<String, u32>,
    /// Each user's open user sockets (`/ws/user/`): read markers and new
    /// conversations go to them.
    inboxes: HashMap<String, Vec<Arc<Subscriber>>>,
}

struct Entry {
    username: String,
    session: [u8; 32],
    subscriber: Arc<Subscriber>,
}

/// Removes the socket from the registry when the socket ends.
pub struct Registration<'a> {
    live: &'a LiveSockets,
    id: SocketId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut registry = self.live.lock();
        let Some(entry) = registry.by_id.remove(&self.id) else { return };
        if entry.subscriber.kind == SocketKind::Inbox {
            self.live.inbox_count.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(list) = registry.inboxes.get_mut(&entry.username) {
                list.retain(|s| s.id != self.id);
                if list.is_empty() {
                    registry.inboxes.remove(&entry.username);
                }
            }
        }
    }
}

/// One of a user's places under `--max-sockets-per-user`, taken before the
/// upgrade is answered and held by the socket's task until it ends.
pub struct UserSocketSlot {
    live: Arc<LiveSockets>,
    username: String,
}

impl Drop for UserSocketSlot {
    fn drop(&mut self) {
        let mut registry = self.live.lock();
        if let Some(count) = registry.per_user.get_mut(&self.username) {
            *count -= 1;
            if *count == 0 {
                registry.per_user.remove(&self.username);
            }
        }
    }
}

impl LiveSockets {
    /// Takes one of `username`'s `cap` socket places (`0`: no cap), or
    /// `None` when they are all taken.
    pub fn reserve(self: &Arc<Self>, username: &str, cap: u32) -> Option<UserSocketSlot> {
        let mut registry = self.lock();
        let count = registry.per_user.entry(username.to_owned()).or_default();
        if cap != 0 && *count >= cap {
            return None;
        }
        *count += 1;
        Some(UserSocketSlot { live: Arc::clone(self), username: username.to_owned() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an open socket until the returned guard drops; after `close_all`, closes it at once.
    pub fn register(&self, username: &str, session: [u8; 32], subscriber: Arc<Subscriber>) -> Registration<'_> {
        let id = subscriber.id;
        let mut registry = self.lock();
        if let Some((code, reason)) = registry.closed_with {
            subscriber.close_now(code, reason);
        }
        if subscriber.kind == SocketKind::Inbox {
            self.inbox_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            registry.inboxes.entry(username.to_owned()).or_default().push(subscriber.clone());
        }
        registry.by_id.insert(id, Entry { username: username.to_owned(), session, subscriber });
        Registration { live: self, id }
    }

    /// Whether `username` holds (or is opening) a socket on this node.
    pub fn has_sockets(&self, username: &str) -> bool {
        self.lock().per_user.contains_key(username)
    }

    /// `username`'s open user sockets on this node.
    pub fn inboxes_of(&self, username: &str) -> Vec<Arc<Subscriber>> {
        if self.inbox_count.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        self.lock().inboxes.get(username).cloned().unwrap_or_default()
    }

    /// Closes every socket now, ahead of what is queued, and every socket
    /// registered from now on (server shutdown).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let mut registry = self.lock();
        registry.closed_with = Some((code, reason));
        for entry in registry.by_id.values() {
            entry.subscriber.close_now(code, reason);
        }
    }

    /// Queues `item` for the socket with this id, if it is still open.
    pub fn deliver_to(&self, id: SocketId, item: super::hub::Outbound) -> bool {
        let subscriber = self.lock().by_id.get(&id).map(|entry| entry.subscriber.clone());
        subscriber.is_some_and(|subscriber| subscriber.deliver(item))
    }

    /// Closes every socket opened with this session; returns how many.
    pub fn close_session(&self, session: &[u8; 32]) -> usize {
        self.close_where(|entry| &entry.session == session, "signed out")
    }

    /// Closes every socket of this user; returns how many.
    pub fn close_user(&self, username: &str) -> usize {
        self.close_where(|entry| entry.username == username, "account deactivated")
    }

    /// Closes every socket of this user as signed out (a new password
    /// ended their sessions), but those of the session `keep` (the one that
    /// changed its own password); returns how many.
    pub fn sign_out_user(&self, username: &str, keep: Option<&[u8; 32]>) -> usize {
        self.close_where(|entry| entry.username == username && keep != Some(&entry.session), "signed out")
    }

    fn close_where(&self, matches: impl Fn(&Entry) -> bool, reason: &'static str) -> usize {
        let sockets = self.lock();
        let mut closed = 0;
        for entry in sockets.by_id.values().filter(|entry| matches(entry)) {
            entry.subscriber.close(1008, reason);
            closed += 1;
        }
        closed
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::hub::Outbound;

    #[test]
    fn a_users_socket_places_are_capped_and_freed_as_sockets_end() {
        let live = Arc::new(LiveSockets::default());
        let first = live.reserve("alice", 2).expect("a first place");
        let _second = live.reserve("alice", 2).expect("a second place");
        assert!(live.reserve("alice", 2).is_none(), "a third place under a cap of 2");
        assert!(live.reserve("bob", 2).is_some(), "another user has places of their own");
        drop(first);
        assert!(live.reserve("alice", 2).is_some(), "an ended socket frees its place");
        assert!(live.reserve("alice", 0).is_some(), "0 means no cap");
    }

    #[test]
    fn closing_a_session_reaches_only_its_sockets() {
        let live = LiveSockets::default();
        let (one, mut one_rx, _) = Subscriber::new(4, "alice", SocketKind::Conversation);
        let (two, mut two_rx, _) = Subscriber::new(4, "alice", SocketKind::Conversation);
        let _a = live.register("alice", [1; 32], one.clone());
        let _b = live.register("alice", [2; 32], two.clone());
        assert_eq!(live.close_session(&[1; 32]), 1);
        assert!(matches!(one_rx.try_recv(), Ok(Outbound::Close(1008, _))));
        assert!(one.is_closing() && !two.is_closing());
        assert!(two_rx.try_recv().is_err());
        assert_eq!(live.close_user("alice"), 2);
        drop(_a);
        assert_eq!(live.len(), 1);
    }

    #[test]
    fn a_new_password_signs_out_every_session_but_the_kept_one() {
        let live = LiveSockets::default();
        let (mine, mut mine_rx, _) = Subscriber::new(4, "alice", SocketKind::Conversation);
        let (other, mut other_rx, _) = Subscriber::new(4, "alice", SocketKind::Conversation);
        let (bobs, _bobs_rx, _) = Subscriber::new(4, "alice", SocketKind::Conversation);
        let _a = live.register("alice", [1; 32], mine.clone());
        let _b = live.register("alice", [2; 32], other.clone());
        let _c = live.register("bob", [3; 32], bobs.clone());
        assert_eq!(live.sign_out_user("alice", Some(&[1; 32])), 1);
        assert!(matches!(other_rx.try_recv(), Ok(Outbound::Close(1008, "signed out"))));
        assert!(mine_rx.try_recv().is_err() && !mine.is_closing() && !bobs.is_closing());
        assert_eq!(live.sign_out_user("alice", None), 2, "without a kept session every socket closes");
        drop(_a);
        assert_eq!(live.len(), 2);
    }

    #[test]
    fn shutdown_closes_open_sockets_and_later_ones_ahead_of_their_queue() {
        let live = LiveSockets::default();
        let (open, mut open_rx, open_urgent) = Subscriber::new(4, "alice", SocketKind::Conversation);
        let _a = live.register("alice", [1; 32], open.clone());
        live.close_all(1001, "server shutting down");
        assert_eq!(open_urgent.requested(), Some((1001, "server shutting down")));
        assert!(matches!(open_rx.try_recv(), Ok(Outbound::Close(1001, _))), "an idle writer is woken");
        let (late, _late_rx, late_urgent) = Subscriber::new(4, "alice", SocketKind::Conversation);
        let _b = live.register("bob", [2; 32], late.clone());
        assert_eq!(late_urgent.requested(), Some((1001, "server shutting down")));
        assert!(late.is_closing());
    }
}
