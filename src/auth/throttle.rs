//! Login throttling per username and per client address. An attempt counts
//! against both limits before its password is checked, so parallel guesses
//! cannot slip past the limit, and it counts whether or not the username
//! exists, so the throttle reveals nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts allowed in one window; a success clears the username's count.
const PER_USERNAME: u32 = 5;
const PER_ADDRESS: u32 = 20;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Bounds memory under a spray of random usernames or addresses.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct LoginThrottle {
    attempts: Mutex<HashMap<Key, Window>>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    Username(String),
    /// IPv4 addresses whole, IPv6 by /64: one host usually owns a /64.
    Address(u128),
}

struct Window {
    started: Instant,
    attempts: u32,
}

fn address_key(address: IpAddr) -> Key {
    match address {
        IpAddr::V4(v4) => Key::Address(u128::from(u32::from(v4))),
        IpAddr::V6(v6) => Key::Address(u128::from(v6) & !((1u128 << 64) - 1)),
    }
}

impl LoginThrottle {
    /// Counts an attempt and says whether it may go ahead. `username` is
    /// `None` when it is not a valid name (then only the address counts).
    pub fn try_attempt(&self, username: Option<&str>, address: IpAddr) -> bool {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() >= MAX_TRACKED {
            attempts.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if attempts.len() >= MAX_TRACKED {
                // Still full: forget usernames, keep the per-address limits.
                attempts.retain(|key, _| matches!(key, Key::Address(_)));
            }
        }
        let keys: Vec<(Key, u32)> = username
            .map(|name| (Key::Username(name.to_owned()), PER_USERNAME))
            .into_iter()
            .chain([(address_key(address), PER_ADDRESS)])
            .collect();
        let over = keys.iter().any(|(key, limit)| {
            attempts.get(key).is_some_and(|w| now.duration_since(w.started) < WINDOW && w.attempts >= *limit)
        });
        if over {
            return false;
        }
        for (key, _) in keys {
            let window = attempts.entry(key).or_insert(Window { started: now, attempts: 0 });
            if now.duration_since(window.started) >= WINDOW {
                *window = Window { started: now, attempts: 0 };
            }
            window.attempts += 1;
        }
        true
    }

    /// Takes back an attempt counted at `counted_at` but never checked (the
    /// server was too busy to check it), so waiting out a login storm costs
    /// no one their allowance. A window that began after `counted_at` never
    /// held that attempt and is left alone.
    pub fn refund(&self, username: Option<&str>, address: IpAddr, counted_at: Instant) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let keys = username.map(|name| Key::Username(name.to_owned())).into_iter().chain([address_key(address)]);
        for key in keys {
            if let Some(window) = attempts.get_mut(&key).filter(|w| w.started <= counted_at) {
                window.attempts = window.attempts.saturating_sub(1);
            }
        }
    }

    /// A successful login clears the username's count (not the address's).
    pub fn succeeded(&self, username: &str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.remove(&Key::Username(username.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_past_the_limit_are_refused_per_username_then_per_address() {
        let throttle = LoginThrottle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..PER_USERNAME {
            assert!(throttle.try_attempt(Some("alice"), ip));
        }
        assert!(!throttle.try_attempt(Some("alice"), ip));
        assert!(throttle.try_attempt(Some("bob"), ip));
        throttle.succeeded("bob");
        for _ in 0..PER_ADDRESS {
            throttle.try_attempt(None, ip);
        }
        assert!(!throttle.try_attempt(Some("carol"), ip));
        throttle.refund(Some("carol"), ip, Instant::now());
        assert!(throttle.try_attempt(Some("carol"), ip), "a refunded attempt frees its place");
        assert!(!throttle.try_attempt(Some("carol"), ip));
        let before_the_window = Instant::now() - Duration::from_secs(1);
        let dave: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(throttle.try_attempt(Some("dave"), dave));
        throttle.refund(Some("dave"), dave, before_the_window);
        for _ in 1..PER_USERNAME {
            assert!(throttle.try_attempt(Some("dave"), dave));
        }
        assert!(!throttle.try_attempt(Some("dave"), dave), "a window younger than the attempt is not refunded");
        assert!(throttle.try_attempt(Some("carol"), "127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_limit() {
        let throttle = LoginThrottle::default();
        for i in 0..PER_ADDRESS {
            let ip: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            assert!(throttle.try_attempt(None, ip));
        }
        assert!(!throttle.try_attempt(None, "2001:db8::ffff".parse().unwrap()));
        assert!(throttle.try_attempt(None, "2001:db8:0:1::1".parse().unwrap()));
    }
}
