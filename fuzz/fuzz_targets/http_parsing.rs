//! Everything chatctl reads from an HTTP request before it looks at storage,
//! on one arbitrary request: the router (path → `Route`), the client's
//! address and origin from forwarding headers (`http::peer`), the `Origin`
//! check, cookies (session, CSRF, admin notice), query strings and forms,
//! `next` redirects, history page parameters, CSRF and session-token
//! comparisons, and the WebSocket handshake checks, each against a property
//! it must keep. No server is started.

#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use base64::Engine as _;
use chatctl::auth::{csrf, session};
use chatctl::config::{ForwardedHeader, PublicUrl, ServerConfig, TrustedProxies};
use chatctl::domain::{canonical_ip, ClientHost, MessageId, SessionHash};
use chatctl::http::api::{parse_page, Page};
use chatctl::http::notice::Notice;
use chatctl::http::peer::Peer;
use chatctl::http::request::{cookie, form, origin_allowed, percent_decode, query, query_value, safe_next};
use chatctl::http::websocket::handshake_refusal;
use chatctl::http::{parse_route, path_segments, templates, Miss, Route};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Verb<'a>,
    /// The request target: path, then maybe `?query`.
    target: &'a str,
    headers: Vec<(Name<'a>, &'a [u8])>,
    body: &'a [u8],
    tcp_peer: Address,
    trusted: Vec<(Address, u8)>,
    family: Family,
    direct_https: bool,
    public_url: &'a str,
    allowed_origin: Option<&'a str>,
    cookie_name: &'a str,
    secret: &'a str,
}

#[derive(Arbitrary, Debug)]
enum Verb<'a> {
    Get,
    Post,
    Head,
    Put,
    Other(&'a [u8]),
}

/// The headers chatctl reads, and any other.
#[derive(Arbitrary, Debug)]
enum Name<'a> {
    Cookie,
    Host,
    Origin,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Forwarded,
    Connection,
    Upgrade,
    SecWebSocketKey,
    SecWebSocketVersion,
    Other(&'a str),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Address {
    V4([u8; 4]),
    V6([u8; 16]),
    /// `::ffff:a.b.c.d`, as a dual-stack socket reports an IPv4 peer.
    Mapped([u8; 4]),
}

#[derive(Arbitrary, Debug)]
enum Family {
    Auto,
    XForwardedFor,
    Forwarded,
}

impl Address {
    fn ip(self) -> IpAddr {
        match self {
            Address::V4(v4) => Ipv4Addr::from(v4).into(),
            Address::V6(v6) => Ipv6Addr::from(v6).into(),
            Address::Mapped(v4) => Ipv4Addr::from(v4).to_ipv6_mapped().into(),
        }
    }
}

fuzz_target!(|input: Input| {
    let method = match input.method {
        Verb::Get => Method::GET,
        Verb::Post => Method::POST,
        Verb::Head => Method::HEAD,
        Verb::Put => Method::PUT,
        Verb::Other(raw) => match Method::from_bytes(raw) {
            Ok(method) => method,
            Err(_) => return,
        },
    };
    let headers = header_map(&input.headers);
    let path = input.target.split_once('?').map_or(input.target, |(path, _)| path);
    router(&method, path);
    redirects(path);
    let trusted = trusted_proxies(&input.trusted, &input.family);
    let peer = peer(input.tcp_peer.ip(), &headers, &trusted, input.direct_https);
    origins(&headers, &peer, input.public_url, input.allowed_origin);
    cookies(&headers, input.cookie_name, input.secret);
    let fields = forms(input.body, &headers);
    pages(&fields);
    if let Ok(uri) = hyper::Uri::try_from(input.target) {
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        pages(&query(&request));
        *request.headers_mut() = headers;
        handshake(request);
    }
});

fn header_map(pairs: &[(Name, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = match name {
            Name::Cookie => header::COOKIE,
            Name::Host => header::HOST,
            Name::Origin => header::ORIGIN,
            Name::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            Name::XForwardedProto => HeaderName::from_static("x-forwarded-proto"),
            Name::XForwardedHost => HeaderName::from_static("x-forwarded-host"),
            Name::Forwarded => header::FORWARDED,
            Name::Connection => header::CONNECTION,
            Name::Upgrade => header::UPGRADE,
            Name::SecWebSocketKey => header::SEC_WEBSOCKET_KEY,
            Name::SecWebSocketVersion => header::SEC_WEBSOCKET_VERSION,
            Name::Other(raw) => match HeaderName::from_bytes(raw.as_bytes()) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        // hyper refuses what is not a header value before chatctl sees it.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(name, value);
        }
    }
    map
}

/// Routing decides "no such page" from the path alone: a path is not found
/// whatever the method, or found (or 405) whatever the method.
fn router(method: &Method, path: &str) {
    let Some(decoded) = path_segments(path) else {
        assert!(path.contains('%'), "only a bad escape makes a path unreadable: {path:?}");
        return;
    };
    if !path.contains('%') {
        assert_eq!(decoded.join("/"), path.trim_start_matches('/'));
    }
    let hex_pair = |at: usize| path.as_bytes().get(at + 1..at + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
    assert!(path.match_indices('%').all(|(at, _)| hex_pair(at)), "{path:?} has an escape that is not %XX");
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let not_found = |result: &Result<Route, Miss>| matches!(result, Err(Miss::NotFound(_)));
    let result = parse_route(method, &segments);
    for other in [Method::GET, Method::POST, Method::DELETE] {
        assert_eq!(not_found(&parse_route(&other, &segments)), not_found(&result), "{path:?} {method} vs {other}");
    }
    match result {
        Ok(route) => {
            assert!(*method == Method::GET || *method == Method::POST, "{method} {path:?} was routed");
            if let Route::Static(name) = route {
                if templates::static_file(&name).is_some() {
                    assert!(!name.contains(['/', '\\']) && !name.starts_with('.'), "static file {name:?}");
                }
            }
        }
        Err(Miss::NotFound(why)) => assert!(!why.is_empty()),
        Err(Miss::MethodNotAllowed) => {}
    }
    // Percent-decoding: what a segment escapes, it gets back.
    for segment in &segments {
        let escaped: String = segment.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(percent_decode(&escaped).as_deref(), Some(*segment));
    }
}

/// The sign-in redirect carries the path in `?next=`, and `safe_next`
/// sends the user back only to a local path that is a valid `Location`.
fn redirects(path: &str) {
    let query = format!("next={}", query_value(path));
    assert_eq!(form(query.as_bytes()).get("next").map(String::as_str), Some(path), "{query:?}");
    let next = safe_next(Some(path));
    assert!(next.starts_with('/') && !next.starts_with("//"), "{next:?}");
    assert!(!next.contains('\\') && !next.contains("://") && !next.chars().any(char::is_control), "{next:?}");
    assert!(HeaderValue::from_str(&next).is_ok(), "{next:?} is no Location");
}

fn trusted_proxies(ranges: &[(Address, u8)], family: &Family) -> TrustedProxies {
    let mut parsed = Vec::new();
    for (address, prefix) in ranges {
        let (ip, max) = match address.ip() {
            ip @ IpAddr::V4(_) => (ip, 32),
            ip @ IpAddr::V6(_) => (ip, 128),
        };
        let range = TrustedProxies::parse_range(&format!("{ip}/{prefix}"));
        assert_eq!(range.is_ok(), *prefix <= max, "{ip}/{prefix}");
        let Ok(range) = range else { continue };
        // A range holds its own address (an IPv4-mapped range only in its
        // IPv4 form, as addresses are compared).
        let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        if !mapped || *prefix >= 96 {
            assert!(TrustedProxies::new(vec![range]).contains(ip), "{ip}/{prefix}");
        }
        parsed.push(range);
    }
    let header = match family {
        Family::Auto => ForwardedHeader::Auto,
        Family::XForwardedFor => ForwardedHeader::XForwardedFor,
        Family::Forwarded => ForwardedHeader::Forwarded,
    };
    TrustedProxies::new(parsed).reading(header)
}

/// Only a trusted proxy may name the client; the result is one canonical
/// address and a lower-case host, whatever the headers say.
fn peer(tcp: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies, direct_https: bool) -> Peer {
    let peer = Peer::resolve(SocketAddr::new(tcp, 40000), headers, trusted, direct_https);
    assert_eq!(canonical_ip(peer.address), peer.address, "the address is canonical");
    let _ = ClientHost::of(peer.address);
    let own_host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let own_host = own_host.map(str::to_ascii_lowercase);
    if let Some(host) = &peer.host {
        assert_eq!(*host, host.to_ascii_lowercase());
    }
    assert_eq!(peer.via_proxy, trusted.contains(tcp));
    if !peer.via_proxy || !peer.forwarded {
        // Nothing forwarded, or not believed: the connection speaks for itself.
        assert_eq!(peer.address, canonical_ip(tcp));
    }
    if !peer.via_proxy {
        assert_eq!((peer.https, &peer.host), (direct_https, &own_host));
    }
    assert_eq!(peer.forwarded_by_untrusted_peer(), peer.forwarded && !peer.via_proxy);
    let _ = peer.own_origin();
    peer
}

/// The `Origin` rule: no header passes, `null` never does, allowing more
/// origins never refuses one that passed, and a page's own origin passes.
fn origins(headers: &HeaderMap, peer: &Peer, public_url: &str, allowed: Option<&str>) {
    let mut config = ServerConfig::new("unused");
    if let Ok(url) = public_url.parse::<PublicUrl>() {
        assert_eq!(url.origin().parse::<PublicUrl>().as_ref(), Ok(&url), "a public URL's origin reads back as itself");
        assert!(!url.origin().ends_with('/'));
        config.public_url = Some(url);
    }
    let narrow = origin_allowed(headers, peer, &config);
    let origin = headers.get(header::ORIGIN);
    if origin.is_none() {
        assert!(narrow);
    }
    if origin.and_then(|o| o.to_str().ok()).is_some_and(|o| o.trim_end_matches('/').eq_ignore_ascii_case("null")) {
        assert!(!narrow, "Origin: null passed");
    }
    if let Some(allowed) = allowed {
        config.allowed_origins.push(allowed.to_owned());
        assert!(!narrow || origin_allowed(headers, peer, &config), "an allowed origin refused another");
    }
    // A browser on a page of this host sends its origin; a host with a
    // path (`a/`) is no host a browser asks for.
    let plain = |host: &str| !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if let Some(own) = peer.own_origin().filter(|_| peer.host.as_deref().is_some_and(plain)) {
        let mut own_headers = HeaderMap::new();
        own_headers.insert(header::ORIGIN, HeaderValue::from_str(&own).expect("a plain host is a header value"));
        assert!(origin_allowed(&own_headers, peer, &config), "the page's own origin {own:?} was refused");
    }
}

/// Cookies: what is found is one `name=value` pair of a `Cookie` header;
/// the admin notice reads back what it writes; secrets compare exactly.
fn cookies(headers: &HeaderMap, name: &str, secret: &str) {
    let sent: Vec<&str> = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    for name in [session::COOKIE_NAME, csrf::COOKIE_NAME, chatctl::http::notice::COOKIE_NAME, name] {
        if let Some(value) = cookie(headers, name) {
            assert!(!value.contains(';'));
            let pair = format!("{name}={value}");
            assert!(sent.iter().any(|h| h.contains(&pair)), "{pair:?} is not in {sent:?}");
        }
    }
    if let Some(notice) = Notice::from_headers(headers) {
        let set_cookie = notice.cookie(false);
        let pair = set_cookie.split(';').next().expect("split yields one item at least");
        let mut again = HeaderMap::new();
        again.insert(header::COOKIE, HeaderValue::from_str(pair).expect("a notice cookie is a header value"));
        assert_eq!(Notice::from_headers(&again).as_ref(), Some(&notice));
    }
    let session_cookie = cookie(headers, session::COOKIE_NAME).unwrap_or("");
    assert_eq!(session::constant_time_eq(session_cookie.as_bytes(), secret.as_bytes()), session_cookie == secret);
    let hash = SessionHash(session::token_hash(session_cookie));
    assert_eq!(SessionHash::from_hex(&hash.to_hex()), Some(hash));
    let derived = csrf::session_token(session_cookie);
    assert!(derived.len() == 64 && derived.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(csrf::matches(&derived, &derived));
}

/// Form bodies: decoding is stable (what is re-encoded decodes the same),
/// and the CSRF check is "equal and not empty".
fn forms(body: &[u8], headers: &HeaderMap) -> HashMap<String, String> {
    let fields = form(body);
    let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    assert_eq!(form(encoded.as_bytes()), fields);
    let submitted = fields.get("csrf_token").map_or("", String::as_str);
    let expected = cookie(headers, csrf::COOKIE_NAME).unwrap_or("");
    assert_eq!(csrf::matches(submitted, expected), !expected.is_empty() && submitted == expected);
    let next = safe_next(fields.get("next").map(String::as_str));
    assert!(HeaderValue::from_str(&next).is_ok(), "{next:?} is no Location");
    fields
}

/// History paging parameters: a limit within 1..=500, ids that read back.
fn pages(params: &HashMap<String, String>) {
    match parse_page(params) {
        Ok(Page::Before(_, limit) | Page::After(_, limit)) => assert!((1..=500).contains(&limit), "limit {limit}"),
        Err(message) => assert!(!message.is_empty()),
    }
    if let Some(id) = params.get("since").and_then(|raw| MessageId::parse(raw)) {
        assert_eq!(MessageId::parse(&id.to_string()), Some(id));
    }
}

/// The WebSocket checks accept exactly RFC 6455's handshake (one
/// `Sec-WebSocket-Version: 13`, one key that is the base64 of 16 bytes),
/// and fastwebsockets then upgrades every request they accept.
fn handshake(mut request: Request<()>) {
    let refusal = handshake_refusal(&request);
    let only = |name| {
        let values: Vec<&[u8]> = request.headers().get_all(name).iter().map(HeaderValue::as_bytes).collect();
        (values.len() == 1).then(|| values[0])
    };
    let version_13 = only(header::SEC_WEBSOCKET_VERSION) == Some(b"13".as_slice());
    let key = only(header::SEC_WEBSOCKET_KEY);
    let key_ok = key.is_some_and(|k| base64::engine::general_purpose::STANDARD.decode(k).is_ok_and(|b| b.len() == 16));
    let expected = fastwebsockets::upgrade::is_upgrade_request(&request) && version_13 && key_ok;
    assert_eq!(refusal.is_none(), expected, "key {key:?}, version 13: {version_13}");
    match refusal {
        None => {
            fastwebsockets::upgrade::upgrade(&mut request).expect("fastwebsockets upgrades what the checks accept");
        }
        Some(reply) => {
            assert!(matches!(reply.status(), StatusCode::UPGRADE_REQUIRED | StatusCode::BAD_REQUEST));
            if reply.status() == StatusCode::UPGRADE_REQUIRED && fastwebsockets::upgrade::is_upgrade_request(&request) {
                assert_eq!(
                    reply.headers().get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes),
                    Some(&b"13"[..])
                );
            }
        }
    }
}
