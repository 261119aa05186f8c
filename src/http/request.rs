//! Reading requests: cookies, query strings, bounded bodies, forms, and the
//! `Origin` check.

use std::collections::HashMap;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, StatusCode};

use super::peer::Peer;
use crate::config::{PublicUrl, ServerConfig};

/// Bodies over this get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A cookie's value; the first of that name wins, as browsers send the most specific first.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The query string's parameters, decoded; a repeated name keeps its last value.
/// Any body type, so the fuzz targets can call it on a request they build.
pub fn query<B>(request: &Request<B>) -> HashMap<String, String> {
    request.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Why a body could not be read.
pub enum BodyError {
    /// Over `MAX_BODY_BYTES` (413).
    TooLarge,
    /// The connection failed mid-body (400).
    Unreadable,
    /// Not all in within the deadline (`ServerConfig::body_deadline`).
    TooSlow,
}

impl BodyError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
            BodyError::TooSlow => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The `/api/` error message: what went wrong and what to do.
    pub fn explain(&self) -> &'static str {
        match self {
            BodyError::TooLarge => "the request body is over 1 MiB; send less",
            BodyError::Unreadable => "the request body could not be read; send it again",
            BodyError::TooSlow => "the request body did not arrive in time; send it again, all at once",
        }
    }
}

/// Reads the whole body within `deadline`, refusing more than
/// `MAX_BODY_BYTES` (early, when `Content-Length` says so). On an error the
/// rest of the body is never read, so hyper closes the connection after the
/// answer: a client trickling its body frees its connection at the deadline.
///
/// Each chunk is copied out and dropped as it arrives. A chunk is a slice of
/// hyper's read buffer: kept (as `collect()` keeps them), each one pins that
/// whole buffer and hyper allocates a new one for the next read, so a body
/// trickled a byte at a time held 8 KiB per byte (`storm-memory`: 9,000
/// slow bodies took 500 MB).
pub async fn body(request: Request<Incoming>, deadline: Duration) -> Result<bytes::Bytes, BodyError> {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut incoming = request.into_body();
    let read = async move {
        // Grown as bytes arrive, never sized by what the client announced.
        let mut body = bytes::BytesMut::new();
        while let Some(frame) = incoming.frame().await {
            let Ok(data) = frame.map_err(|_| BodyError::Unreadable)?.into_data() else { continue };
            if body.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&data);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(deadline, read).await.unwrap_or(Err(BodyError::TooSlow))
}

/// A form body's fields, decoded; a repeated name keeps its last value.
pub fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// PROTOCOL.md's rule: no `Origin`, or one matching the request's own
/// scheme, host and port (as the client saw them: behind a trusted proxy,
/// its forwarded scheme and host), the public URL, or a configured allowed
/// origin. `null` is foreign.
pub fn origin_allowed(headers: &HeaderMap, peer: &Peer, config: &ServerConfig) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let origin = normal_origin(origin);
    let public = config.public_url.as_ref().map(|url| url.origin().to_owned());
    let allowed = config.allowed_origins.iter().map(|a| normal_origin(a));
    public.into_iter().chain(allowed).chain(peer.own_origin()).any(|candidate| candidate == origin)
}

/// An origin in one spelling: lower case, no trailing `/`, no default port.
fn normal_origin(raw: &str) -> String {
    raw.parse::<PublicUrl>()
        .map_or_else(|_| raw.trim_end_matches('/').to_ascii_lowercase(), |url| url.origin().to_owned())
}

/// Decodes `%XX` escapes in one path segment; `None` when an escape is
/// malformed or the result is not UTF-8. (`+` stays `+` in a path.)
pub fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_owned());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Digits only: `from_str_radix` alone would also take a `+` sign.
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A request path made safe as a query value: it keeps its `/` (so
/// `/login?next=/` reads as written) and escapes what a query would split on.
pub fn query_value(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '&' => out.push_str("%26"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '=' => out.push_str("%3D"),
            '?' => out.push_str("%3F"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

/// `next` for a redirect after login: a local path only.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(|c| c.is_control())
                && !path.contains("://") =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn allowed(host: &str, origin: &str, https: bool, config: &ServerConfig) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        let peer = Peer {
            address: [127, 0, 0, 1].into(),
            https,
            host: Some(host.to_owned()),
            forwarded: false,
            via_proxy: false,
        };
        origin_allowed(&h, &peer, config)
    }

    #[test]
    fn origins_must_match_the_host_the_public_url_or_be_configured() {
        let plain = ServerConfig::new("unused");
        let peer =
            Peer { address: [127, 0, 0, 1].into(), https: false, host: None, forwarded: false, via_proxy: false };
        assert!(origin_allowed(&HeaderMap::new(), &peer, &plain), "no Origin: not a browser's cross-site request");
        assert!(allowed("127.0.0.1:8000", "http://127.0.0.1:8000", false, &plain));
        assert!(allowed("chat.example", "http://chat.example", false, &plain));
        assert!(!allowed("127.0.0.1:8000", "http://127.0.0.1:8001", false, &plain));
        assert!(!allowed("127.0.0.1:8000", "http://evil.example", false, &plain));
        assert!(!allowed("127.0.0.1:8000", "null", false, &plain));
        assert!(!allowed("127.0.0.1:8000", "https://127.0.0.1:8000", false, &plain));
        assert!(allowed("chat.example", "https://chat.example:443", true, &plain));
        assert!(allowed("chat.example:443", "https://chat.example", true, &plain));
        let mut configured = ServerConfig::new("unused");
        configured.allowed_origins = vec!["https://app.example/".to_owned()];
        configured.public_url = Some("https://Chat.Example.com".parse().unwrap());
        assert!(allowed("127.0.0.1:8000", "https://app.example", false, &configured));
        // A proxy that drops the port from Host: the public URL still matches.
        assert!(allowed("chat.example.com", "https://chat.example.com", false, &configured));
        assert!(allowed("127.0.0.1:8000", "https://chat.example.com:443", false, &configured));
        assert!(!allowed("127.0.0.1:8000", "http://chat.example.com", false, &configured));
    }

    #[test]
    fn next_is_a_local_path_only() {
        assert_eq!(safe_next(Some("/chat/lobby")), "/chat/lobby");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("javascript:alert(1)")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn path_segments_decode_and_queries_keep_slashes() {
        assert_eq!(percent_decode("bob%40example").as_deref(), Some("bob@example"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("bad%4"), None);
        assert_eq!(percent_decode("%ff"), None);
        // Found by the http_parsing fuzz target: a sign is no hex digit.
        assert_eq!(percent_decode("%+0"), None);
        assert_eq!(percent_decode("a%+4b"), None);
        assert_eq!(query_value("/"), "/");
        assert_eq!(query_value("/direct/a+b%40c"), "/direct/a%2Bb%2540c");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; chatctl_session=tok; b=2"));
        assert_eq!(cookie(&h, "chatctl_session"), Some("tok"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
