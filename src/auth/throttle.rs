//! Login throttling that stops password guessing without locking out the
//! crowds behind one address (an office NAT, a reverse proxy) or the owner
//! of an account someone is guessing at. Only failures count:
//!
//! - an address with `PER_ADDRESS` failures in a window gets 429 for the
//!   rest of it, whatever name it tries;
//! - an address with `PER_ADDRESS_AND_NAME` failures against one name gets
//!   429 for that name (a guesser stays locked; the owner elsewhere does not);
//! - failures against one name from anywhere make every further attempt on
//!   it wait a growing delay, at most `MAX_DELAY`, so a guesser spread over
//!   many addresses slows down while the owner still gets in.
//!
//! Names count whether or not the account exists, so throttling reveals
//! nothing. The limits are this node's: in a cluster each node counts alone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address, in one window, before it gets 429.
pub const PER_ADDRESS: u32 = 20;
/// Failures from one address against one name before that pair gets 429.
pub const PER_ADDRESS_AND_NAME: u32 = 5;
/// Failures against a name (from anywhere) before its attempts are delayed.
pub const FREE_NAME_FAILURES: u32 = 3;
/// The delay after `FREE_NAME_FAILURES`; it doubles per further failure.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest delay: the owner's correct password still gets in within
/// seconds, however hard the name is being guessed.
pub const MAX_DELAY: Duration = Duration::from_secs(4);
/// How long failures are remembered (each window starts at its first failure).
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Bounds memory under a spray of random usernames or addresses.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Key, Window>>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    Address(u128),
    AddressAndName(u128, String),
    Name(String),
}

struct Window {
    started: Instant,
    failures: u32,
}

impl Window {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.started) < WINDOW
    }
}

/// Why an attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// This address failed too often, whatever the name.
    Address { retry_after: Duration },
    /// This address failed too often against this name.
    AddressAndName { retry_after: Duration },
}

impl Throttled {
    pub fn retry_after(&self) -> Duration {
        match self {
            Throttled::Address { retry_after } | Throttled::AddressAndName { retry_after } => *retry_after,
        }
    }
}

/// IPv4 addresses whole, IPv6 by /64: one host usually owns a /64.
fn address_bits(address: IpAddr) -> u128 {
    match crate::domain::canonical_ip(address) {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

impl LoginThrottle {
    /// Whether an attempt may be checked, and if so how long it must wait
    /// first. Call it again right before the check (failures may have
    /// landed meanwhile), so parallel guesses cannot slip past a limit.
    /// `name` is `None` when it is not a valid username.
    pub fn admit(&self, name: Option<&str>, address: IpAddr) -> Result<Duration, Throttled> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let bits = address_bits(address);
        let over = |key: &Key, limit: u32| {
            failures
                .get(key)
                .filter(|w| w.live(now) && w.failures >= limit)
                .map(|w| WINDOW.saturating_sub(now.duration_since(w.started)))
        };
        if let Some(retry_after) = over(&Key::Address(bits), PER_ADDRESS) {
            return Err(Throttled::Address { retry_after });
        }
        let Some(name) = name else { return Ok(Duration::ZERO) };
        if let Some(retry_after) = over(&Key::AddressAndName(bits, name.to_owned()), PER_ADDRESS_AND_NAME) {
            return Err(Throttled::AddressAndName { retry_after });
        }
        let name_failures = failures.get(&Key::Name(name.to_owned())).filter(|w| w.live(now)).map_or(0, |w| w.failures);
        Ok(delay_after(name_failures))
    }

    /// A wrong password (or unknown or deactivated name): counts against
    /// the address, the pair and the name.
    pub fn failed(&self, name: Option<&str>, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, w| w.live(now));
            if failures.len() >= MAX_TRACKED {
                // Still full: forget names, keep the per-address limits.
                failures.retain(|key, _| matches!(key, Key::Address(_)));
            }
        }
        let bits = address_bits(address);
        let keys = name
            .map(|name| [Key::AddressAndName(bits, name.to_owned()), Key::Name(name.to_owned())])
            .into_iter()
            .flatten()
            .chain([Key::Address(bits)]);
        for key in keys {
            let window = failures.entry(key).or_insert(Window { started: now, failures: 0 });
            if !window.live(now) {
                *window = Window { started: now, failures: 0 };
            }
            window.failures += 1;
        }
    }

    /// A correct password: the pair's failures are forgotten (the owner who
    /// mistyped is not held to them). The address and the name keep theirs:
    /// a success must not buy a guesser on the same address a fresh start.
    pub fn succeeded(&self, name: &str, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Key::AddressAndName(address_bits(address), name.to_owned()));
    }
}

/// No delay for the first few failures on a name, then one that doubles.
fn delay_after(name_failures: u32) -> Duration {
    match name_failures.checked_sub(FREE_NAME_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => FIRST_DELAY.saturating_mul(1u32 << extra.min(16)).min(MAX_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn successes_never_count_against_an_address() {
        let throttle = LoginThrottle::default();
        for i in 0..500 {
            let name = format!("user{i}");
            assert_eq!(throttle.admit(Some(&name), ip("127.0.0.1")), Ok(Duration::ZERO));
            throttle.succeeded(&name, ip("127.0.0.1"));
        }
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_for_every_name() {
        let throttle = LoginThrottle::default();
        for i in 0..PER_ADDRESS {
            assert!(throttle.admit(Some(&format!("n{i}")), ip("203.0.113.7")).is_ok());
            throttle.failed(Some(&format!("n{i}")), ip("203.0.113.7"));
        }
        let refused = throttle.admit(Some("someone_else"), ip("203.0.113.7")).unwrap_err();
        assert!(matches!(refused, Throttled::Address { .. }));
        assert!(refused.retry_after() <= WINDOW && refused.retry_after() > WINDOW - Duration::from_secs(5));
        assert!(throttle.admit(Some("someone_else"), ip("203.0.113.8")).is_ok(), "other addresses are not touched");
    }

    #[test]
    fn a_guessed_name_slows_down_but_its_owner_gets_in_from_elsewhere() {
        let throttle = LoginThrottle::default();
        let guesser = ip("198.51.100.1");
        for _ in 0..PER_ADDRESS_AND_NAME {
            throttle.failed(Some("alice"), guesser);
        }
        assert!(matches!(throttle.admit(Some("alice"), guesser), Err(Throttled::AddressAndName { .. })));
        assert!(throttle.admit(Some("bob"), guesser).is_ok(), "the guesser's other names are not locked");
        let owner_delay = throttle.admit(Some("alice"), ip("192.0.2.1")).unwrap();
        assert!(owner_delay > Duration::ZERO && owner_delay <= MAX_DELAY);
        // Spread over many addresses, the delay keeps growing to its cap.
        for i in 0..50 {
            throttle.failed(Some("alice"), ip(&format!("198.51.100.{}", i + 10)));
        }
        assert_eq!(throttle.admit(Some("alice"), ip("192.0.2.1")), Ok(MAX_DELAY));
        throttle.succeeded("alice", guesser);
        assert!(throttle.admit(Some("alice"), guesser).is_ok(), "a success clears the pair");
    }

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_cap() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(FREE_NAME_FAILURES - 1), Duration::ZERO);
        assert_eq!(delay_after(FREE_NAME_FAILURES), FIRST_DELAY);
        assert_eq!(delay_after(FREE_NAME_FAILURES + 1), FIRST_DELAY * 2);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_limit() {
        let throttle = LoginThrottle::default();
        for i in 0..PER_ADDRESS {
            throttle.failed(None, ip(&format!("2001:db8::{i:x}")));
        }
        assert!(throttle.admit(None, ip("2001:db8::ffff")).is_err());
        assert!(throttle.admit(None, ip("2001:db8:0:1::1")).is_ok());
    }
}
