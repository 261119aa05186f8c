//! Reading requests: cookies, query strings, bounded bodies, forms, and the
//! `Origin` check.

use std::collections::HashMap;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, StatusCode};

/// Bodies over this get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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

pub fn query(request: &Request<Incoming>) -> HashMap<String, String> {
    request.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Why a body could not be read.
pub enum BodyError {
    TooLarge,
    Unreadable,
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads the whole body, refusing more than `MAX_BODY_BYTES` (early, when
/// `Content-Length` says so).
pub async fn body(request: Request<Incoming>) -> Result<bytes::Bytes, BodyError> {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(request.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

pub fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// PROTOCOL.md's rule: no `Origin`, or one matching the request's own host
/// (scheme, host and port) or a configured allowed origin. `null` is foreign.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String], secure: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let Some((scheme, origin_host)) = origin.split_once("://") else { return false };
    // Behind TLS (`--secure-cookies`) the page's own scheme is https.
    let own_scheme = if secure { "https" } else { "http" };
    if !scheme.eq_ignore_ascii_case(own_scheme) {
        return false;
    }
    let default_port = if secure { "443" } else { "80" };
    let with_port = |authority: &str| {
        let authority = authority.to_ascii_lowercase();
        let has_port = authority.rsplit_once(':').is_some_and(|(head, port)| {
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !head.ends_with('[')
        });
        if has_port && !authority.ends_with(']') {
            authority
        } else {
            format!("{authority}:{default_port}")
        }
    };
    with_port(origin_host) == with_port(host)
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
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
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

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn origins_must_match_the_host_or_be_configured() {
        assert!(origin_allowed(&headers("127.0.0.1:8000", None), &[], false));
        assert!(origin_allowed(&headers("127.0.0.1:8000", Some("http://127.0.0.1:8000")), &[], false));
        assert!(origin_allowed(&headers("chat.example", Some("http://chat.example")), &[], false));
        assert!(!origin_allowed(&headers("127.0.0.1:8000", Some("http://127.0.0.1:8001")), &[], false));
        assert!(!origin_allowed(&headers("127.0.0.1:8000", Some("http://evil.example")), &[], false));
        assert!(!origin_allowed(&headers("127.0.0.1:8000", Some("null")), &[], false));
        assert!(!origin_allowed(&headers("127.0.0.1:8000", Some("https://127.0.0.1:8000")), &[], false));
        assert!(origin_allowed(&headers("chat.example", Some("https://chat.example:443")), &[], true));
        let allowed = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(&headers("127.0.0.1:8000", Some("https://app.example")), &allowed, false));
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
