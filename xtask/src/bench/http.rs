//! A minimal HTTP/1.1 client for the bench's few HTTP calls: sign-in, the
//! first-run setup form, `/readyz`, `/metrics` and the history API. One
//! request per connection; the source address may be chosen so that many
//! sign-ins do not all count against one client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use super::BoxError;

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The `chatctl_session` cookie this answer sets, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next()?.trim().strip_prefix("chatctl_session=").map(str::to_owned))
            .find(|v| !v.is_empty())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens a TCP connection to `addr`, from `source` when given (any
/// 127.0.0.0/8 address reaches the loopback server).
pub async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends one request on a fresh connection and reads the whole answer.
pub async fn send(
    addr: SocketAddr,
    source: Option<IpAddr>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Answer, BoxError> {
    let stream = connect_tcp(addr, source).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder().method(method).uri(path).header(header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body })
}

pub async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Result<Answer, BoxError> {
    let cookie = cookie.map(|c| format!("chatctl_session={c}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    send(addr, None, Method::GET, path, &headers, Bytes::new()).await
}

/// `POST /api/login`; the answer as it came (200, 401, 429...).
pub async fn login(
    addr: SocketAddr,
    source: Option<IpAddr>,
    username: &str,
    password: &str,
) -> Result<Answer, BoxError> {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    send(addr, source, Method::POST, "/api/login", &[("content-type", "application/json")], Bytes::from(body)).await
}

/// Signs in and returns the session cookie's value.
pub async fn session(addr: SocketAddr, username: &str, password: &str) -> Result<String, BoxError> {
    let answer = login(addr, None, username, password).await?;
    if answer.status != 200 {
        return Err(format!("signing in as {username} answered {}: {}", answer.status, answer.text()).into());
    }
    answer.session_cookie().ok_or_else(|| "the sign-in answer set no chatctl_session cookie".into())
}

/// Waits until `GET /readyz` answers 200, or `within` passes.
pub async fn wait_ready(addr: SocketAddr, within: Duration) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match get(addr, "/readyz", None).await {
            Ok(answer) if answer.status == 200 => return Ok(()),
            Ok(answer) => last = format!("{} {}", answer.status, answer.text()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{addr} was not ready within {within:?} (last: {last})").into())
}

/// The server's `/metrics` counters, by name without the `chatctl_` prefix.
pub async fn metrics(addr: SocketAddr) -> Result<HashMap<String, f64>, BoxError> {
    metrics_from(addr, None).await
}

/// `metrics`, asked from `source` (a loopback address the attack scenarios
/// keep clear of the per-address cap).
pub async fn metrics_from(addr: SocketAddr, source: Option<IpAddr>) -> Result<HashMap<String, f64>, BoxError> {
    let answer = send(addr, source, Method::GET, "/metrics", &[], Bytes::new()).await?;
    if answer.status != 200 {
        return Err(format!("/metrics answered {}", answer.status).into());
    }
    Ok(answer
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.strip_prefix("chatctl_").unwrap_or(name).to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

/// `application/x-www-form-urlencoded` for one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
