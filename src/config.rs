//! What `serve` needs to run, already validated. The command line (and its
//! `CHATCTL_*` environment variables) fill it in `commands::serve`; tests and
//! `smoke-test` build it directly.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// Everything `serve` is told, validated; `new` gives `chatctl serve`'s defaults, so a
/// test sets only what it cares about.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to listen on; port 0 picks a free one (`RunningServer::addr` says which).
    pub bind: SocketAddr,
    /// Holds the database (`chatctl.redb`) and the control socket; one server per data dir.
    pub data_dir: PathBuf,
    /// Origins (`scheme://host[:port]`) allowed besides the request's own.
    pub allowed_origins: Vec<String>,
    /// Where users reach the chat, when that is not the bind address (a
    /// reverse proxy, a public name): an allowed Origin and the base of
    /// every URL the server prints.
    pub public_url: Option<PublicUrl>,
    /// Reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Messages per second per user on this node; 0 turns the limit off.
    pub message_rate: u32,
    /// Messages a user may send at once before `message_rate` applies (the token bucket's size).
    pub message_burst: u32,
    /// Mark cookies `Secure` (when served behind HTTPS).
    pub secure_cookies: bool,
    /// Serve `/metrics` to every client, not just loopback ones.
    pub public_metrics: bool,
    /// With a broker: the cluster's log (RabbitMQ stream). Without: one node.
    pub cluster: Option<crate::log::cluster::ClusterConfig>,
    /// How long shutdown waits for sockets and storage before giving up.
    pub shutdown_grace: Duration,
    /// Serve HTTPS and WSS with this certificate and key (cookies become Secure).
    pub tls: Option<TlsFiles>,
    /// A WebSocket from which no frame arrives for this long is closed;
    /// the server pings at 2/5 of it. Tests shorten it.
    pub socket_idle_timeout: Duration,
    /// Open connections (HTTP, and the sockets upgraded from them) one
    /// address may hold (IPv6: one /64); 0 turns the cap off. Trusted
    /// proxies are exempt: every client behind them shares their address.
    pub max_connections_per_address: u32,
    /// Open WebSockets one user may hold, on this node, across all their
    /// sessions and addresses; 0 turns the cap off. Behind a proxy, where
    /// the per-address cap does not apply, this is what bounds one account.
    pub max_sockets_per_user: u32,
    /// How long a client may take to send a request body, once its header
    /// is in; past it the request gets 408 and its connection is closed.
    pub body_deadline: Duration,
}

/// PROTOCOL.md's idle limit: 75 s, with pings every 30 s.
pub const SOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// `--max-connections-per-address`'s default: plenty for one household or
/// office behind NAT with several tabs each, far below a file-descriptor
/// limit.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: u32 = 64;

/// `--max-sockets-per-user`'s default: a socket per tab for dozens of tabs
/// and devices, while one account cannot hold thousands.
pub const DEFAULT_MAX_SOCKETS_PER_USER: u32 = 64;

/// The time a client has to send a whole request body (at most 1 MiB). A
/// trickled body would otherwise hold its connection, and a file
/// descriptor, forever: hyper's header timeout covers the header only.
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// `--tls-cert` and `--tls-key`: PEM files, read at start and on SIGHUP.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server certificate, then any intermediates.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

impl ServerConfig {
    /// The defaults of `chatctl serve`, for the given data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: data_dir.into(),
            allowed_origins: Vec::new(),
            public_url: None,
            trusted_proxies: TrustedProxies::default(),
            message_rate: 20,
            message_burst: 40,
            secure_cookies: false,
            public_metrics: false,
            shutdown_grace: Duration::from_secs(10),
            cluster: None,
            tls: None,
            socket_idle_timeout: SOCKET_IDLE_TIMEOUT,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_sockets_per_user: DEFAULT_MAX_SOCKETS_PER_USER,
            body_deadline: BODY_DEADLINE,
        }
    }

    /// For tests and `smoke-test`: a random loopback port.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::new(data_dir);
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    /// Whether every cookie must be `Secure`: asked for, implied by an
    /// `https` public URL (a browser there never sends plain-HTTP requests),
    /// or by serving TLS ourselves.
    pub fn always_secure_cookies(&self) -> bool {
        self.secure_cookies || self.tls.is_some() || self.public_url.as_ref().is_some_and(PublicUrl::is_https)
    }
}

/// `--public-url`: the scheme and authority users type, e.g.
/// `https://chat.example.com`. chatctl serves from the root of its host, so
/// a path is refused rather than silently ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    /// `scheme://host[:port]`, lower case, without a default port: exactly
    /// what a browser sends as `Origin` from a page of this URL.
    origin: String,
}

impl PublicUrl {
    /// An `https` public URL means browsers only ever send cookies
    /// over TLS, so they can be `Secure`.
    pub fn is_https(&self) -> bool {
        self.origin.starts_with("https://")
    }

    /// The origin, which is also the base of printed URLs (no trailing `/`).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let fix = "give the URL users open, like https://chat.example.com or http://chat.internal:8000";
        let (scheme, rest) = raw.split_once("://").ok_or_else(|| format!("public URL {raw:?} has no scheme; {fix}"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => "80",
            "https" => "443",
            _ => return Err(format!("public URL {raw:?} must start with http:// or https://")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(format!("public URL {raw:?} has a path; chatctl serves from the root of its host, so {fix}"));
        }
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err(format!("public URL {raw:?} has no valid host; {fix}"));
        }
        let authority = authority.to_ascii_lowercase();
        let (host, port) = split_port(&authority);
        if let Some(port) = port {
            if port.parse::<u16>().is_err() {
                return Err(format!("public URL {raw:?} has a bad port; {fix}"));
            }
        }
        let origin = match port {
            Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
            _ => format!("{scheme}://{host}"),
        };
        Ok(PublicUrl { origin })
    }
}

/// Splits `host[:port]` (IPv6 hosts in brackets) into host and port.
pub fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => (host, Some(port)),
        _ => (authority, None),
    }
}

/// `--trusted-proxy`: the address ranges of reverse proxies, and which
/// forwarding header they write. Only a request whose TCP peer is in one of
/// the ranges may say, through that header, who the client really is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Vec<IpNet>,
    header: ForwardedHeader,
}

/// `--forwarded-header`: which family of forwarding headers the proxies
/// write. A proxy passes the other family through from the client as it
/// came, so reading only the proxy's own keeps clients from naming
/// themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (with `-Proto`, `-Host`) when the request has it,
    /// else RFC 7239 `Forwarded`: right for nginx, Caddy, HAProxy's
    /// `forwardfor`, Traefik and most load balancers, which always write
    /// `X-Forwarded-For`.
    #[default]
    Auto,
    /// Only `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
    XForwardedFor,
    /// Only RFC 7239 `Forwarded` (`for=`, `proto=`, `host=`): for proxies
    /// that write nothing else, such as HAProxy's `option forwarded`.
    Forwarded,
}

impl TrustedProxies {
    /// The ranges whose peers may name the client, reading the `Auto`
    /// header family until `reading` says otherwise.
    pub fn new(ranges: Vec<IpNet>) -> Self {
        TrustedProxies { ranges: ranges.into_iter().map(canonical_range).collect(), header: ForwardedHeader::Auto }
    }

    /// The same ranges, reading only `header`.
    pub fn reading(self, header: ForwardedHeader) -> Self {
        TrustedProxies { header, ..self }
    }

    /// Which header family `http::peer` reads from a trusted proxy.
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether a TCP peer is one of the proxies; an IPv4-mapped IPv6 peer is compared as IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = crate::domain::canonical_ip(address);
        self.ranges.iter().any(|range| range.contains(&address))
    }

    /// Parses one `--trusted-proxy` value: a CIDR range, or a single address.
    pub fn parse_range(raw: &str) -> Result<IpNet, String> {
        let raw = raw.trim();
        IpNet::from_str(raw).or_else(|_| IpAddr::from_str(raw).map(IpNet::from)).map_err(|_| {
            format!("trusted proxy {raw:?} is not an address or CIDR range (like 127.0.0.1/32, 10.0.0.0/8 or ::1/128)")
        })
    }
}

/// A range of IPv4-mapped IPv6 addresses (`::ffff:10.0.0.0/104`) is the
/// IPv4 range, as addresses are compared in their IPv4 form.
fn canonical_range(range: IpNet) -> IpNet {
    match range {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(range, IpNet::V4),
            None => range,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_become_origins_and_paths_are_refused() {
        let origin = |raw: &str| raw.parse::<PublicUrl>().map(|u| u.origin().to_owned());
        assert_eq!(origin("https://Chat.Example.com/").unwrap(), "https://chat.example.com");
        assert_eq!(origin("https://chat.example.com:443").unwrap(), "https://chat.example.com");
        assert_eq!(origin("http://10.0.0.5:8000").unwrap(), "http://10.0.0.5:8000");
        assert_eq!(origin("https://[::1]:8443").unwrap(), "https://[::1]:8443");
        assert!(origin("chat.example.com").is_err());
        assert!(origin("ftp://chat.example.com").is_err());
        assert!(origin("https://chat.example.com/chat").unwrap_err().contains("root"));
        assert!(origin("https://user@chat.example.com").is_err());
        assert!(origin("https://chat.example.com:99999").is_err());
        assert!("https://x".parse::<PublicUrl>().unwrap().is_https());
    }

    #[test]
    fn trusted_ranges_take_cidrs_and_single_addresses() {
        let ranges = ["127.0.0.1", "10.0.0.0/8", "::1"].map(|r| TrustedProxies::parse_range(r).unwrap());
        let trusted = TrustedProxies::new(ranges.to_vec());
        assert!(trusted.contains("127.0.0.1".parse().unwrap()));
        assert!(trusted.contains("::ffff:10.1.2.3".parse().unwrap()), "v4-mapped addresses are v4");
        assert!(trusted.contains("::1".parse().unwrap()));
        assert!(!trusted.contains("127.0.0.2".parse().unwrap()));
        let mapped = TrustedProxies::new(vec![TrustedProxies::parse_range("::ffff:192.0.2.0/120").unwrap()]);
        assert!(mapped.contains("192.0.2.9".parse().unwrap()), "a v4-mapped range is the v4 range");
        assert!(TrustedProxies::parse_range("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse_range("proxy.local").is_err());
    }
}
