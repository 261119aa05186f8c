//! Which `{"type": "typing"}` frames are worth forwarding (PROTOCOL.md,
//! "Typing"): one per user and conversation every `TYPING_EVERY`, the rest
//! dropped without an error. Checked twice: by the socket's node before
//! it publishes on the ephemeral bus (so most keystrokes never reach the
//! broker), and by every node before it delivers, on the time the event was
//! forwarded (`at_ms`), so a user typing in two tabs on two nodes is still
//! shown once per 2 s. Times are Unix milliseconds.
//!
//! A typing frame comes with every few keystrokes of every user, so the
//! check allocates nothing: the pair is remembered by a keyed 64-bit hash
//! (two pairs colliding costs, at worst, one dropped typing notice), and
//! entries older than `TYPING_EVERY` are swept at most once per
//! `TYPING_EVERY`, amortised over the checks.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::{Conversation, Username};
use crate::metrics::Metrics;

/// The least time between two forwarded typing frames of one user in one
/// conversation.
pub const TYPING_EVERY: Duration = Duration::from_secs(2);
/// Pairs remembered at most; past it (after a sweep) new pairs are dropped,
/// which loses nothing a client needs.
const MAX_PAIRS: usize = 100_000;

/// Decides which typing frames go on; shared by every socket of a node.
pub struct TypingGate {
    state: Mutex<Gate>,
    /// Random keys: a client cannot pick names that collide on purpose.
    keys: std::collections::hash_map::RandomState,
    /// Counts forwarded and dropped frames (the sending gate); `None` for the delivering gate.
    metrics: Option<Arc<Metrics>>,
}

struct Gate {
    /// When each (hashed) pair's last forwarded frame was let through.
    last: HashMap<u64, u64>,
    swept: Option<u64>,
}

impl TypingGate {
    /// An empty gate counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> TypingGate {
        TypingGate {
            state: Mutex::new(Gate { last: HashMap::new(), swept: None }),
            keys: std::collections::hash_map::RandomState::new(),
            metrics: Some(metrics),
        }
    }

    /// The delivering gate: the same rule, counting nothing (the sending gate counts).
    pub fn for_delivery() -> TypingGate {
        TypingGate { metrics: None, ..TypingGate::new(Arc::default()) }
    }

    /// Whether `user`'s typing frame in `conversation`, arriving at `now`,
    /// is forwarded: only when `TYPING_EVERY` has passed since the last one
    /// forwarded for that pair. A `true` counts as forwarded.
    pub fn allow(&self, user: &Username, conversation: &Conversation, now_ms: u64) -> bool {
        let pair = self.keys.hash_one((user.as_str(), conversation));
        let allowed = self.state.lock().unwrap_or_else(|p| p.into_inner()).allow(pair, now_ms);
        if let Some(metrics) = &self.metrics {
            let counter = if allowed { &metrics.typing_forwarded } else { &metrics.typing_dropped };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Pairs remembered now (tests; what a sweep leaves).
    pub fn remembered(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).last.len()
    }
}

impl Gate {
    fn allow(&mut self, pair: u64, now: u64) -> bool {
        let every = TYPING_EVERY.as_millis() as u64;
        if let Some(last) = self.last.get(&pair) {
            if now.saturating_sub(*last) < every {
                return false;
            }
        }
        if self.swept.is_none_or(|swept| now.saturating_sub(swept) >= every) || self.last.len() >= MAX_PAIRS {
            self.last.retain(|_, last| now.saturating_sub(*last) < every);
            self.swept = Some(now);
        }
        if self.last.len() >= MAX_PAIRS {
            return false;
        }
        self.last.insert(pair, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: u64, millis: u64) -> u64 {
        start + millis
    }

    fn pair(user: &str, room: &str) -> (Username, Conversation) {
        (Username::parse(user).unwrap(), Conversation::from_key(room).unwrap())
    }

    #[test]
    fn one_typing_frame_per_user_and_conversation_every_2_seconds() {
        let metrics = Arc::new(Metrics::default());
        let gate = TypingGate::new(metrics.clone());
        let start = 1_700_000_000_000;
        let (ann, lobby) = pair("ann", "lobby");
        let forwarded: Vec<u64> =
            (0..=5000).step_by(100).filter(|ms| gate.allow(&ann, &lobby, at(start, *ms))).collect();
        assert_eq!(forwarded, vec![0, 2000, 4000]);
        assert_eq!(metrics.typing_forwarded.load(Ordering::Relaxed), 3);
        assert_eq!(metrics.typing_dropped.load(Ordering::Relaxed), 48);
    }

    #[test]
    fn other_users_and_other_conversations_have_their_own_pace() {
        let gate = TypingGate::new(Arc::default());
        let now = 1_700_000_000_000;
        let (ann, lobby) = pair("ann", "lobby");
        let (bob, kitchen) = pair("bob", "kitchen");
        assert!(gate.allow(&ann, &lobby, now));
        assert!(gate.allow(&bob, &lobby, now));
        assert!(gate.allow(&ann, &kitchen, now));
        assert!(!gate.allow(&ann, &lobby, at(now, 1999)));
        assert!(gate.allow(&ann, &lobby, at(now, 2000)));
    }

    #[test]
    fn dropped_frames_do_not_push_the_next_forwarded_one_back() {
        let gate = TypingGate::new(Arc::default());
        let start = 1_700_000_000_000;
        let (ann, lobby) = pair("ann", "lobby");
        assert!(gate.allow(&ann, &lobby, start));
        assert!(!gate.allow(&ann, &lobby, at(start, 1900)));
        assert!(gate.allow(&ann, &lobby, at(start, 2000)), "2 s after the last forwarded, not the last dropped");
    }

    #[test]
    fn pairs_older_than_2_seconds_are_forgotten() {
        let gate = TypingGate::new(Arc::default());
        let start = 1_700_000_000_000;
        for i in 0..1000 {
            let (user, room) = pair(&format!("u{i}"), "lobby");
            assert!(gate.allow(&user, &room, at(start, i)));
        }
        assert_eq!(gate.remembered(), 1000);
        let (ann, lobby) = pair("ann", "lobby");
        assert!(gate.allow(&ann, &lobby, at(start, 3100)));
        assert_eq!(gate.remembered(), 1, "only the fresh pair is left");
    }
}
