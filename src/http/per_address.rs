//! The per-address cap on open connections (`--max-connections-per-address`):
//! counted by TCP peer at accept, IPv6 by its /64 (one host's share), and
//! released when the last holder of the connection's `AddressSlot` drops it
//! (the connection task, or the WebSocket task upgraded from it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::TrustedProxies;
use crate::domain::ClientHost;

/// Open connections per address. The lock is held for one map update.
pub struct ConnectionCaps {
    limit: u32,
    trusted: TrustedProxies,
    open: Arc<Mutex<HashMap<ClientHost, u32>>>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub struct AtCap;

impl ConnectionCaps {
    /// `limit` 0 admits everyone; addresses in `trusted` are never counted.
    pub fn new(limit: u32, trusted: TrustedProxies) -> ConnectionCaps {
        ConnectionCaps { limit, trusted, open: Arc::default() }
    }

    /// Counts one more connection from `address`, or refuses it when that
    /// address already holds `limit`. `None` for an uncounted one (no cap,
    /// or a trusted proxy).
    pub fn admit(&self, address: IpAddr) -> Result<Option<AddressSlot>, AtCap> {
        if self.limit == 0 || self.trusted.contains(address) {
            return Ok(None);
        }
        let key = ClientHost::of(address);
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return Err(AtCap);
        }
        *count += 1;
        Ok(Some(AddressSlot { key, open: self.open.clone() }))
    }

    /// Addresses currently holding at least one counted connection.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open.lock().unwrap().len()
    }
}

/// One counted connection; dropping it frees its place. Shared (`Arc`)
/// between the connection task and a WebSocket upgraded from it, so the
/// place is freed when the last of them ends.
#[derive(Debug)]
pub struct AddressSlot {
    key: ClientHost,
    open: Arc<Mutex<HashMap<ClientHost, u32>>>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What a request carries (in its extensions) so a WebSocket upgraded from
/// its connection keeps the connection's place counted.
#[derive(Clone, Debug)]
pub struct HeldSlot(pub Arc<AddressSlot>);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn an_address_past_its_cap_is_refused_until_one_of_its_connections_ends() {
        let caps = ConnectionCaps::new(2, TrustedProxies::default());
        let first = caps.admit(ip("192.0.2.1")).unwrap();
        let _second = caps.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(caps.admit(ip("192.0.2.1")).unwrap_err(), AtCap, "a v4-mapped address is the same address");
        assert!(caps.admit(ip("192.0.2.2")).is_ok(), "another address has its own count");
        drop(first);
        assert!(caps.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let caps = ConnectionCaps::new(1, TrustedProxies::default());
        let held = caps.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(caps.admit(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64");
        assert!(caps.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        drop(held);
        assert_eq!(caps.addresses(), 0, "an address with no connection is forgotten");
    }

    #[test]
    fn trusted_proxies_and_a_zero_cap_are_not_counted() {
        let proxy = TrustedProxies::new(vec![TrustedProxies::parse_range("10.0.0.0/8").unwrap()]);
        let caps = ConnectionCaps::new(1, proxy);
        let held: Vec<_> = (0..5).map(|_| caps.admit(ip("10.1.2.3")).unwrap()).collect();
        assert!(held.iter().all(Option::is_none));
        let off = ConnectionCaps::new(0, TrustedProxies::default());
        assert!((0..5).all(|_| off.admit(ip("192.0.2.1")).unwrap().is_none()));
    }
}
