//! Failed-login throttling per username and per client address. It counts
//! attempts whether or not the username exists, so it reveals nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed in one window before further attempts are refused.
const PER_USERNAME: u32 = 5;
const PER_ADDRESS: u32 = 20;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Bounds memory under a spray of random usernames.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Key, Window>>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    Username(String),
    Address(IpAddr),
}

struct Window {
    started: Instant,
    failures: u32,
}

impl LoginThrottle {
    /// Whether another attempt for this username from this address may run.
    pub fn allows(&self, username: &str, address: IpAddr) -> bool {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let over = |key: Key, limit: u32| {
            failures.get(&key).is_some_and(|w| now.duration_since(w.started) < WINDOW && w.failures >= limit)
        };
        !over(Key::Username(username.to_owned()), PER_USERNAME) && !over(Key::Address(address), PER_ADDRESS)
    }

    pub fn record_failure(&self, username: &str, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        for key in [Key::Username(username.to_owned()), Key::Address(address)] {
            let window = failures.entry(key).or_insert(Window { started: now, failures: 0 });
            if now.duration_since(window.started) >= WINDOW {
                *window = Window { started: now, failures: 0 };
            }
            window.failures += 1;
        }
    }

    /// A successful login clears the username's count (not the address's).
    pub fn record_success(&self, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Key::Username(username.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_throttle_the_username_and_then_the_address() {
        let throttle = LoginThrottle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..PER_USERNAME {
            assert!(throttle.allows("alice", ip));
            throttle.record_failure("alice", ip);
        }
        assert!(!throttle.allows("alice", ip));
        assert!(throttle.allows("bob", ip));
        for i in 0..PER_ADDRESS {
            throttle.record_failure(&format!("u{i}"), ip);
        }
        assert!(!throttle.allows("carol", ip));
        assert!(throttle.allows("carol", "127.0.0.2".parse().unwrap()));
    }
}
