//! Building responses: JSON (every `/api/` error is `{"error": ...}`),
//! HTML pages, redirects and the security headers every page carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// Every response body is whole in memory: the server never streams.
pub type Body = Full<Bytes>;
/// What every handler returns.
pub type Reply = Response<Body>;

/// A JSON answer; `/api/` errors use `json_error` so their shape stays `{"error": ...}`.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).expect("JSON values serialise infallibly");
    json_bytes(status, Bytes::from(body))
}

/// A JSON answer already serialised (a history page, built under its cap).
pub fn json_bytes(status: StatusCode, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

/// The one shape of every `/api/` error: `{"error": message}`.
pub fn json_error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

/// Plain text for probes (`/healthz`), not for people.
pub fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    reply
}

/// An HTML page. Pages are never cached and never framed.
pub fn html(status: StatusCode, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    reply
}

/// What an error page says, kept on its response so that the router can
/// draw the page again under a signed-in person's top bar
/// (`pages::keep_top_bar`) without every caller knowing who asked.
#[derive(Clone, Debug)]
pub struct ErrorMessage(pub String);

/// A small page for errors a person meets in the browser.
pub fn error_page(status: StatusCode, message: &str) -> Reply {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut reply = html(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · chatctl</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
             <body><main class=\"card\"><h1>{code} {title}</h1><p>{message}</p><p><a href=\"/\">Back to the lobby</a></p></main></body></html>",
            code = status.as_u16(),
            message = escape_html(message),
        ),
    );
    reply.extensions_mut().insert(ErrorMessage(message.to_owned()));
    reply
}

/// 303 See Other to a local path.
pub fn see_other(location: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::SEE_OTHER;
    // A location that cannot be a header value (non-ASCII) falls back to home.
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    reply.headers_mut().insert(header::LOCATION, value);
    reply
}

/// Adds a `Set-Cookie`; more than one may be added. A value that is not a valid header is dropped.
pub fn with_cookie(mut reply: Reply, cookie: &str) -> Reply {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        reply.headers_mut().append(header::SET_COOKIE, value);
    }
    reply
}

/// Escapes the five characters that matter in HTML text and quoted attributes.
pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_escaping_covers_attribute_and_text_contexts() {
        assert_eq!(super::escape_html("<a href='x'>\"&"), "&lt;a href=&#x27;x&#x27;&gt;&quot;&amp;");
    }
}
