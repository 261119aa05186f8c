//! Login throttling that stops password guessing without locking out the
//! crowds behind one address (an office NAT, a reverse proxy) or the owner
//! of an account someone is guessing at. Only failures count:
//!
//! - an address with `PER_ADDRESS` failures in a window gets 429 for the
//!   rest of it, whatever name it tries;
//! - an address with `PER_ADDRESS_AND_NAME` failures against one name gets
//!   429 for that name (a guesser stays locked; the owner elsewhere does not);
//! - failures against one name from anywhere make every further attempt on
//!   it wait a growing delay, at most `MAX_DELAY`, so each guess costs the
//!   guesser seconds while the owner still gets in.
//!
//! An attempt is checked twice: before its delay (`admit`), and right
//! before its password check (`reserve`), where an attempt that would reach
//! a limit only if the attempts still being checked failed waits for their
//! outcome, so parallel guesses cannot slip past a limit.
//! Names count whether or not the account exists, so throttling reveals
//! nothing.
//!
//! In a cluster the limits are the cluster's: each failure is handed to a
//! hook (`sharing_failures`) that tells the other nodes, and the failures
//! they tell of are counted here too (`record_remote_failure`). The wiring
//! over the ephemeral bus is `http::accounts::cluster_login_throttle`; this
//! module knows nothing of nodes. A failure reaches other nodes within
//! moments, not at once: guesses raced on several nodes in the same instant
//! may pass a limit by the few in flight.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::domain::ClientHost;

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
/// Entries kept per kind, so a spray of addresses or names bounds memory;
/// past it the oldest windows go first, and a spray of one kind never
/// evicts another kind's (a pair spray cannot reset a guessed name's delay).
const MAX_TRACKED: usize = 100_000;

/// Failure windows and attempts in progress, by kind.
#[derive(Default)]
pub struct LoginThrottle {
    state: Mutex<State>,
    on_failure: Option<FailureHook>,
}

/// Told of each failure counted here (not of those recorded from other
/// nodes): the address it counts against and the name, when valid.
pub type FailureHook = Box<dyn Fn(ClientHost, Option<&str>) + Send + Sync>;

#[derive(Default)]
struct State {
    addresses: Windows<ClientHost>,
    pairs: Windows<(ClientHost, String)>,
    names: Windows<String>,
    /// Attempts between `reserve` and their outcome, per address and pair.
    checking_address: HashMap<ClientHost, u32>,
    checking_pair: HashMap<(ClientHost, String), u32>,
}

struct Window {
    started: Instant,
    failures: u32,
}

/// Failure windows of one kind of key, bounded.
struct Windows<K>(HashMap<K, Window>);

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Windows(HashMap::new())
    }
}

impl<K: Hash + Eq + Clone> Windows<K> {
    /// Failures in the live window of `key`, and when that window ends.
    fn live(&self, key: &K, now: Instant) -> Option<(u32, Duration)> {
        let window = self.0.get(key)?;
        let age = now.duration_since(window.started);
        (age < WINDOW).then(|| (window.failures, WINDOW - age))
    }

    fn count(&mut self, key: K, now: Instant) {
        if self.0.len() >= MAX_TRACKED && !self.0.contains_key(&key) {
            self.make_room(now);
        }
        let window = self.0.entry(key).or_insert(Window { started: now, failures: 0 });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window { started: now, failures: 0 };
        }
        window.failures += 1;
    }

    /// Drops ended windows, then (still full) the oldest eighth: rare, and
    /// amortised over the next `MAX_TRACKED / 8` insertions.
    fn make_room(&mut self, now: Instant) {
        self.0.retain(|_, w| now.duration_since(w.started) < WINDOW);
        if self.0.len() >= MAX_TRACKED {
            let mut starts: Vec<Instant> = self.0.values().map(|w| w.started).collect();
            let cut = starts.len() / 8;
            let (_, oldest_kept, _) = starts.select_nth_unstable(cut);
            let oldest_kept = *oldest_kept;
            self.0.retain(|_, w| w.started >= oldest_kept);
        }
    }

    fn forget(&mut self, key: &K) {
        self.0.remove(key);
    }
}

/// Why an attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// This address failed too often, whatever the name.
    Address {
        /// Until this failure window ends and its count starts again.
        retry_after: Duration,
    },
    /// This address failed too often against this name.
    AddressAndName {
        /// Until this failure window ends and its count starts again.
        retry_after: Duration,
    },
    /// Only with the attempts still being checked would a limit be reached:
    /// wait for their outcome, then ask again (a crowd's successes, or the
    /// last guesses a limit allows).
    Pending,
}

impl Throttled {
    /// What to put in `Retry-After`; `Pending` is worth asking again after a second.
    pub fn retry_after(&self) -> Duration {
        match self {
            Throttled::Address { retry_after } | Throttled::AddressAndName { retry_after } => *retry_after,
            Throttled::Pending => Duration::from_secs(1),
        }
    }
}

impl LoginThrottle {
    /// A throttle that hands every failure counted here to `hook` (after
    /// counting it, outside the lock): how a cluster node tells the others.
    pub fn sharing_failures(hook: impl Fn(ClientHost, Option<&str>) + Send + Sync + 'static) -> LoginThrottle {
        LoginThrottle { state: Mutex::default(), on_failure: Some(Box::new(hook)) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A failed sign-in on another node, counted as if it had failed here
    /// (against the address, the pair and the name) and never handed to
    /// the hook, so it is not told again.
    pub fn record_remote_failure(&self, host: ClientHost, name: Option<&str>) {
        self.lock().count_failure(host, name, Instant::now());
    }

    /// Whether an attempt may go ahead, and if so how long it must wait
    /// first. `name` is `None` when it is not a valid username.
    pub fn admit(&self, name: Option<&str>, address: IpAddr) -> Result<Duration, Throttled> {
        let now = Instant::now();
        let state = self.lock();
        state.refusal(name, ClientHost::of(address), 0, 0, now)?;
        let name_failures = name.and_then(|n| state.names.live(&n.to_owned(), now)).map_or(0, |(f, _)| f);
        Ok(delay_after(name_failures))
    }

    /// Right before the password check: the limits again, with attempts
    /// still being checked counted as failures. The returned attempt must
    /// be settled with `failed` or `succeeded`; dropped, it counts as
    /// neither.
    pub fn reserve<'a>(&'a self, name: Option<&str>, address: IpAddr) -> Result<Attempt<'a>, Throttled> {
        let now = Instant::now();
        let host = ClientHost::of(address);
        let pair = name.map(|n| (host, n.to_owned()));
        let mut state = self.lock();
        let checking_address = state.checking_address.get(&host).copied().unwrap_or(0);
        let checking_pair = pair.as_ref().and_then(|p| state.checking_pair.get(p)).copied().unwrap_or(0);
        state.refusal(name, host, checking_address, checking_pair, now)?;
        *state.checking_address.entry(host).or_insert(0) += 1;
        if let Some(pair) = &pair {
            *state.checking_pair.entry(pair.clone()).or_insert(0) += 1;
        }
        Ok(Attempt { throttle: self, host, name: name.map(str::to_owned), settled: false })
    }
}

impl State {
    /// The refusal for `host` (and the pair with `name`), counting
    /// `checking` attempts in progress as failures.
    fn refusal(
        &self,
        name: Option<&str>,
        host: ClientHost,
        checking_address: u32,
        checking_pair: u32,
        now: Instant,
    ) -> Result<(), Throttled> {
        let (failures, left) = self.addresses.live(&host, now).unwrap_or((0, WINDOW));
        if failures >= PER_ADDRESS {
            return Err(Throttled::Address { retry_after: left });
        }
        let mut pending = failures + checking_address >= PER_ADDRESS;
        if let Some(name) = name {
            let (failures, left) = self.pairs.live(&(host, name.to_owned()), now).unwrap_or((0, WINDOW));
            if failures >= PER_ADDRESS_AND_NAME {
                return Err(Throttled::AddressAndName { retry_after: left });
            }
            pending |= failures + checking_pair >= PER_ADDRESS_AND_NAME;
        }
        if pending {
            return Err(Throttled::Pending);
        }
        Ok(())
    }

    fn count_failure(&mut self, host: ClientHost, name: Option<&str>, now: Instant) {
        self.addresses.count(host, now);
        if let Some(name) = name {
            self.pairs.count((host, name.to_owned()), now);
            self.names.count(name.to_owned(), now);
        }
    }

    fn release(&mut self, host: ClientHost, name: Option<&String>) {
        fn decrement<K: Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
            if let Some(count) = map.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(key);
                }
            }
        }
        decrement(&mut self.checking_address, &host);
        if let Some(name) = name {
            decrement(&mut self.checking_pair, &(host, name.clone()));
        }
    }
}

/// An attempt whose password is being checked; see `LoginThrottle::reserve`.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    host: ClientHost,
    name: Option<String>,
    settled: bool,
}

impl Attempt<'_> {
    /// A wrong password (or unknown or deactivated name): counts against
    /// the address, the pair and the name.
    pub fn failed(mut self) {
        {
            let mut state = self.throttle.lock();
            state.release(self.host, self.name.as_ref());
            state.count_failure(self.host, self.name.as_deref(), Instant::now());
        }
        self.settled = true;
        if let Some(tell) = &self.throttle.on_failure {
            tell(self.host, self.name.as_deref());
        }
    }

    /// A correct password: the pair's failures are forgotten (the owner who
    /// mistyped is not held to them). The address and the name keep theirs:
    /// a success must not buy a guesser on the same address a fresh start.
    pub fn succeeded(mut self) {
        let mut state = self.throttle.lock();
        state.release(self.host, self.name.as_ref());
        if let Some(name) = &self.name {
            state.pairs.forget(&(self.host, name.clone()));
        }
        self.settled = true;
    }
}

impl Drop for Attempt<'_> {
    /// An attempt abandoned mid-check (the client went away, the storage
    /// read failed) counts as nothing, but must not stay "in progress".
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.lock().release(self.host, self.name.as_ref());
        }
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
    use std::sync::Arc;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    fn fail(throttle: &LoginThrottle, name: Option<&str>, address: &str) {
        throttle.reserve(name, ip(address)).expect("not throttled yet").failed();
    }

    #[test]
    fn successes_never_count_against_an_address() {
        let throttle = LoginThrottle::default();
        for i in 0..500 {
            let name = format!("user{i}");
            assert_eq!(throttle.admit(Some(&name), ip("127.0.0.1")), Ok(Duration::ZERO));
            throttle.reserve(Some(&name), ip("127.0.0.1")).unwrap().succeeded();
        }
        assert!(throttle.lock().checking_address.is_empty());
    }

    #[test]
    fn a_crowd_being_checked_at_once_is_not_refused() {
        let throttle = LoginThrottle::default();
        fail(&throttle, Some("mistyped"), "127.0.0.1");
        let attempts: Vec<_> =
            (0..19).map(|i| throttle.reserve(Some(&format!("user{i}")), ip("127.0.0.1")).unwrap()).collect();
        assert_eq!(throttle.reserve(Some("user19"), ip("127.0.0.1")).err(), Some(Throttled::Pending));
        attempts.into_iter().for_each(Attempt::succeeded);
        assert!(throttle.reserve(Some("user19"), ip("127.0.0.1")).is_ok(), "never refused once they succeeded");
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_for_every_name() {
        let throttle = LoginThrottle::default();
        for i in 0..PER_ADDRESS {
            assert!(throttle.admit(Some(&format!("n{i}")), ip("203.0.113.7")).is_ok());
            fail(&throttle, Some(&format!("n{i}")), "203.0.113.7");
        }
        let refused = throttle.admit(Some("someone_else"), ip("203.0.113.7")).unwrap_err();
        assert!(matches!(refused, Throttled::Address { .. }));
        assert!(refused.retry_after() <= WINDOW && refused.retry_after() > WINDOW - Duration::from_secs(5));
        assert!(throttle.admit(Some("someone_else"), ip("203.0.113.8")).is_ok(), "other addresses are not touched");
    }

    #[test]
    fn attempts_in_progress_count_so_parallel_guesses_cannot_slip_past() {
        let throttle = LoginThrottle::default();
        fail(&throttle, Some("alice"), "198.51.100.1");
        // Eight checks at once (a machine with nine cores): four fit, the
        // rest wait for their outcome.
        let mut in_progress = Vec::new();
        for _ in 0..8 {
            match throttle.reserve(Some("alice"), ip("198.51.100.1")) {
                Ok(attempt) => in_progress.push(attempt),
                Err(refusal) => assert_eq!(refusal, Throttled::Pending),
            }
        }
        assert_eq!(in_progress.len() as u32, PER_ADDRESS_AND_NAME - 1);
        in_progress.into_iter().for_each(Attempt::failed);
        assert!(matches!(throttle.reserve(Some("alice"), ip("198.51.100.1")), Err(Throttled::AddressAndName { .. })));
        // An abandoned attempt frees its place.
        let other = ip("198.51.100.2");
        fail(&throttle, Some("alice"), "198.51.100.2");
        drop(throttle.reserve(Some("alice"), other).unwrap());
        assert_eq!(throttle.lock().checking_pair.len(), 0);
    }

    #[test]
    fn a_guessed_name_slows_down_but_its_owner_gets_in_from_elsewhere() {
        let throttle = LoginThrottle::default();
        for _ in 0..PER_ADDRESS_AND_NAME {
            fail(&throttle, Some("alice"), "198.51.100.1");
        }
        let guesser = ip("198.51.100.1");
        assert!(matches!(throttle.admit(Some("alice"), guesser), Err(Throttled::AddressAndName { .. })));
        assert!(throttle.admit(Some("bob"), guesser).is_ok(), "the guesser's other names are not locked");
        let owner_delay = throttle.admit(Some("alice"), ip("192.0.2.1")).unwrap();
        assert!(owner_delay > Duration::ZERO && owner_delay <= MAX_DELAY);
        // Spread over many addresses, the delay keeps growing to its cap.
        for i in 0..50 {
            fail(&throttle, Some("alice"), &format!("198.51.101.{i}"));
        }
        assert_eq!(throttle.admit(Some("alice"), ip("192.0.2.1")), Ok(MAX_DELAY));
        throttle.reserve(Some("alice"), ip("192.0.2.1")).unwrap().succeeded();
        assert!(throttle.admit(Some("alice"), ip("192.0.2.1")).is_ok(), "the owner is never refused");
    }

    #[test]
    fn failures_on_other_nodes_count_here_and_are_not_told_again() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let throttle = LoginThrottle::sharing_failures({
            let told = told.clone();
            move |host, name| told.lock().unwrap().push((host, name.map(str::to_owned)))
        });
        let host = ClientHost::of(ip("203.0.113.7"));
        for i in 0..10 {
            throttle.record_remote_failure(host, Some(&format!("n{i}")));
        }
        for i in 10..PER_ADDRESS {
            fail(&throttle, Some(&format!("n{i}")), "203.0.113.7");
        }
        assert!(
            matches!(throttle.admit(Some("someone"), ip("203.0.113.7")), Err(Throttled::Address { .. })),
            "10 failures elsewhere and 10 here make the address's 20"
        );
        let told = told.lock().unwrap();
        assert_eq!(told.len(), (PER_ADDRESS - 10) as usize, "only this node's own failures are told");
        assert_eq!(told[0], (host, Some("n10".to_owned())));
        // Remote failures on one name count against the pair and slow the name too.
        let throttle = LoginThrottle::default();
        for _ in 0..PER_ADDRESS_AND_NAME {
            throttle.record_remote_failure(host, Some("alice"));
        }
        assert!(matches!(throttle.admit(Some("alice"), ip("203.0.113.7")), Err(Throttled::AddressAndName { .. })));
        assert!(throttle.admit(Some("alice"), ip("192.0.2.1")).unwrap() > Duration::ZERO);
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
            fail(&throttle, None, &format!("2001:db8::{i:x}"));
        }
        assert!(throttle.admit(None, ip("2001:db8::ffff")).is_err());
        assert!(throttle.admit(None, ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn a_full_table_drops_its_oldest_windows_first_and_keeps_other_kinds() {
        let mut windows: Windows<u32> = Windows::default();
        let start = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            windows.count(i, start + Duration::from_millis(u64::from(i) / 1000));
        }
        windows.count(u32::MAX, start + Duration::from_secs(200));
        // About an eighth made room (windows started in the same instant go together).
        assert!(windows.0.len() < MAX_TRACKED - MAX_TRACKED / 10, "{}", windows.0.len());
        assert!(windows.0.contains_key(&(MAX_TRACKED as u32 - 1)), "the newest windows stay");
        assert!(!windows.0.contains_key(&0), "the oldest go");
    }
}
