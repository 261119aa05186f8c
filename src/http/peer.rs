//! Who sent a request: the client's address, and the scheme and host its
//! browser used. Behind a trusted reverse proxy (`--trusted-proxy`) these
//! come from the proxy's forwarding headers; from any other peer those
//! headers are ignored, so a client cannot pick its own address.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{self, HeaderMap};

use crate::config::{ForwardedHeader, TrustedProxies};
use crate::domain::canonical_ip;

/// The client of one request, as far as it can be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The client's address: the TCP peer, or behind trusted proxies the
    /// right-most forwarded hop that is not itself a trusted proxy.
    pub address: IpAddr,
    /// Whether the client reached us over HTTPS (directly or at the proxy).
    pub https: bool,
    /// The `host[:port]` the client asked for, lower case.
    pub host: Option<String>,
    /// Whether a proxy forwarded the request (it carried forwarding
    /// headers), trusted or not.
    pub forwarded: bool,
    /// Whether the TCP peer was a trusted proxy (its headers were read).
    pub via_proxy: bool,
}

impl Peer {
    /// Resolves the client of a request that arrived from `tcp_peer`;
    /// `direct_https` says whether that connection itself was TLS.
    pub fn resolve(tcp_peer: SocketAddr, headers: &HeaderMap, trusted: &TrustedProxies, direct_https: bool) -> Peer {
        let tcp_address = canonical_ip(tcp_peer.ip());
        let own_host = header_text(headers, header::HOST).map(str::to_ascii_lowercase);
        let forwarded_elements = forwarded_elements(headers);
        let x_forwarded_for = list_values(headers, "x-forwarded-for");
        let forwarded = !forwarded_elements.is_empty() || !x_forwarded_for.is_empty();
        let direct =
            Peer { address: tcp_address, https: direct_https, host: own_host.clone(), forwarded, via_proxy: false };
        if !trusted.contains(tcp_address) {
            return direct;
        }
        // One family only: the proxy's own. Mixing them would let a client
        // name itself in the family its proxy passes through untouched.
        let rfc7239 = match trusted.header() {
            ForwardedHeader::Auto => x_forwarded_for.is_empty() && !forwarded_elements.is_empty(),
            ForwardedHeader::XForwardedFor => false,
            ForwardedHeader::Forwarded => true,
        };
        let (hops, proto, host): (Vec<&str>, Option<&str>, Option<&str>) = if rfc7239 {
            (
                forwarded_elements.iter().filter_map(|element| element.get("for")).collect(),
                forwarded_elements.iter().rev().find_map(|e| e.get("proto")),
                forwarded_elements.iter().rev().find_map(|e| e.get("host")),
            )
        } else {
            (
                x_forwarded_for,
                list_values(headers, "x-forwarded-proto").last().copied(),
                list_values(headers, "x-forwarded-host").last().copied(),
            )
        };
        let address = client_of(&hops, tcp_address, trusted);
        let proto = proto.map(str::to_ascii_lowercase);
        let host = host.map(str::to_ascii_lowercase).or(own_host);
        let https = match proto.as_deref() {
            Some("https") | Some("wss") => true,
            Some(_) => false,
            None => direct_https,
        };
        Peer { address, https, host, forwarded, via_proxy: true }
    }

    /// A request that carries forwarding headers from a peer that is not a
    /// trusted proxy: behind an undeclared proxy every client looks like
    /// the proxy (and shares its sign-in limits).
    pub fn forwarded_by_untrusted_peer(&self) -> bool {
        self.forwarded && !self.via_proxy
    }

    /// Whether cookies set in the answer must be `Secure`.
    pub fn secure_cookies(&self, config: &crate::config::ServerConfig) -> bool {
        self.https || config.always_secure_cookies()
    }

    /// The request's own origin (`scheme://host`, default port dropped), as
    /// a browser on the page it loaded would send it.
    pub fn own_origin(&self) -> Option<String> {
        let host = self.host.as_deref()?;
        let (scheme, default_port) = if self.https { ("https", "443") } else { ("http", "80") };
        Some(match crate::config::split_port(host) {
            (name, Some(port)) if port == default_port => format!("{scheme}://{name}"),
            _ => format!("{scheme}://{host}"),
        })
    }
}

/// Walks the hops from the right (the one our proxy added last) past every
/// trusted proxy: the first other hop is the client. A hop that cannot be
/// read (`unknown`, an obfuscated name) ends the walk at the hop after it.
fn client_of(hops: &[&str], tcp_address: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    let mut client = tcp_address;
    for hop in hops.iter().rev() {
        let Some(address) = parse_hop(hop) else { break };
        client = address;
        if !trusted.contains(address) {
            break;
        }
    }
    client
}

/// An address as a forwarding header writes it: `1.2.3.4`, `1.2.3.4:5678`,
/// `2001:db8::1`, `[2001:db8::1]:5678`, optionally quoted.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical_ip(address));
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(canonical_ip(socket.ip()));
    }
    let bracketed = hop.strip_prefix('[').and_then(|h| h.split_once(']')).map(|(inner, _)| inner);
    bracketed.and_then(|inner| inner.parse::<IpAddr>().ok()).map(canonical_ip)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Every comma-separated value of every instance of a header, in order.
fn list_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// One element of a `Forwarded` header: `for=…;proto=…;host=…`.
struct ForwardedElement<'a>(Vec<(String, &'a str)>);

impl ForwardedElement<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim_matches('"')).filter(|v| !v.is_empty())
    }
}

fn forwarded_elements(headers: &HeaderMap) -> Vec<ForwardedElement<'_>> {
    list_values(headers, "forwarded")
        .into_iter()
        .map(|element| {
            ForwardedElement(
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim()))
                    .collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| TrustedProxies::parse_range(r).unwrap()).collect())
    }

    fn tcp(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"), ("host", "a:8000")]);
        let peer = Peer::resolve(tcp("127.0.0.1"), &h, &proxies(&[]), false);
        assert_eq!(peer.address, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(!peer.https);
        assert!(peer.forwarded, "a forwarded request is noticed even when not believed");
        assert_eq!(peer.own_origin().as_deref(), Some("http://a:8000"));
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusted = proxies(&["127.0.0.1/32", "10.0.0.0/8"]);
        // A client that sends its own X-Forwarded-For cannot hide behind it.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")]);
        assert_eq!(Peer::resolve(tcp("127.0.0.1"), &h, &trusted, false).address.to_string(), "203.0.113.7");
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.8")]);
        assert_eq!(Peer::resolve(tcp("127.0.0.1"), &h, &trusted, false).address.to_string(), "203.0.113.8");
        // Every hop trusted: the left-most is the client.
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]);
        assert_eq!(Peer::resolve(tcp("127.0.0.1"), &h, &trusted, false).address.to_string(), "10.2.2.2");
        // An unreadable hop stops the walk at the last readable one.
        let h = headers(&[("x-forwarded-for", "unknown, 10.1.1.1")]);
        assert_eq!(Peer::resolve(tcp("127.0.0.1"), &h, &trusted, false).address.to_string(), "10.1.1.1");
        // No header at all: the proxy itself.
        assert_eq!(
            Peer::resolve(tcp("127.0.0.1"), &HeaderMap::new(), &trusted, false).address.to_string(),
            "127.0.0.1"
        );
    }

    #[test]
    fn rfc_7239_forwarded_is_read_when_alone() {
        let trusted = proxies(&["127.0.0.1"]);
        let h = headers(&[
            ("forwarded", "for=198.51.100.1;proto=http, for=\"[2001:db8::17]:4711\";proto=https;host=chat.example"),
            ("host", "127.0.0.1:8000"),
        ]);
        let peer = Peer::resolve(tcp("127.0.0.1"), &h, &trusted, false);
        assert_eq!(peer.address.to_string(), "2001:db8::17");
        assert!(peer.https);
        assert_eq!(peer.own_origin().as_deref(), Some("https://chat.example"));
    }

    #[test]
    fn only_the_proxys_own_header_family_is_read() {
        // A proxy writing RFC 7239 only passes the client's X-Forwarded-For through.
        let h = headers(&[("forwarded", "for=203.0.113.5;proto=https"), ("x-forwarded-for", "6.6.6.6")]);
        let rfc = proxies(&["127.0.0.1"]).reading(ForwardedHeader::Forwarded);
        let peer = Peer::resolve(tcp("127.0.0.1"), &h, &rfc, false);
        assert_eq!(peer.address.to_string(), "203.0.113.5");
        assert!(peer.https);
        // And nginx passes a client's own Forwarded through.
        let h = headers(&[("forwarded", "for=6.6.6.6;proto=https"), ("x-forwarded-for", "203.0.113.6")]);
        for header in [ForwardedHeader::Auto, ForwardedHeader::XForwardedFor] {
            let peer = Peer::resolve(tcp("127.0.0.1"), &h, &proxies(&["127.0.0.1"]).reading(header), false);
            assert_eq!(peer.address.to_string(), "203.0.113.6");
            assert!(!peer.https, "the scheme comes from the same family as the address");
        }
        let xff_only = proxies(&["127.0.0.1"]).reading(ForwardedHeader::XForwardedFor);
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(Peer::resolve(tcp("127.0.0.1"), &h, &xff_only, false).address.to_string(), "127.0.0.1");
    }

    #[test]
    fn a_trusted_proxy_gives_the_public_scheme_and_host() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "Chat.Example:443"),
            ("host", "127.0.0.1:8000"),
        ]);
        let peer = Peer::resolve(tcp("::ffff:127.0.0.1"), &h, &proxies(&["127.0.0.1"]), false);
        assert!(peer.https);
        assert_eq!(peer.own_origin().as_deref(), Some("https://chat.example"));
        assert_eq!(peer.address.to_string(), "203.0.113.7");
    }
}
