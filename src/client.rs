//! A small client for chatctl's HTTP API and WebSockets, used by
//! `smoke-test` and the integration tests. It speaks `http://` and
//! `https://` (wss:// for sockets), trusting the system's CAs plus any given
//! ones (`--ca-cert`), with SNI set to the URL's host.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A signed-in (or not yet) user of one server.
#[derive(Clone, Debug)]
pub struct Client {
    /// `host[:port]` as written in the URL: the `Host` header.
    authority: String,
    /// `host:port` to connect to (the scheme's port when the URL has none).
    address: String,
    /// For https://: the TLS client and the name the certificate must carry.
    tls: Option<Secure>,
    /// CAs trusted besides the system's, kept for `at`.
    extra_roots: Arc<[CertificateDer<'static>]>,
    session: Option<String>,
}

/// The TLS side of an https:// client.
#[derive(Clone)]
struct Secure {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for Secure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secure({:?})", self.name)
    }
}

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Checked by the callers: a refusal is an answer here, not an error.
    pub status: StatusCode,
    /// Where `Set-Cookie`, `Retry-After` and the like are read.
    pub headers: HeaderMap,
    /// The whole body, read before the answer is returned.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; an error quotes the body, which is usually the server's explanation.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("expected JSON, got {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text, for HTML pages and error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    /// A client for `http://host[:port]` or `https://host[:port]` (a
    /// trailing path is ignored), trusting the system's CAs.
    pub fn new(base_url: &str) -> anyhow::Result<Client> {
        Client::with_roots(base_url, Vec::new())
    }

    /// As `new`, trusting these CAs too for https:// (`--ca-cert`; see
    /// `http::tls::load_ca_certs`).
    pub fn with_roots(base_url: &str, extra_roots: Vec<CertificateDer<'static>>) -> anyhow::Result<Client> {
        let (https, rest) = match base_url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
            _ => bail!("the URL must start with http:// or https:// (got {base_url})"),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default().to_owned();
        let (host, port) = split_authority(&authority)
            .ok_or_else(|| anyhow!("the URL {base_url} has no host, or its port is not a number from 0 to 65535"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let extra_roots: Arc<[CertificateDer<'static>]> = extra_roots.into();
        let tls = if https { Some(Secure::new(host, &extra_roots)?) } else { None };
        Ok(Client { authority, address, tls, extra_roots, session: None })
    }

    /// `host[:port]` as in the URL, for messages that name the server.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The session token from sign-in, for tests that open sockets or requests by hand.
    pub fn session_cookie(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The same session against another address (a restarted server).
    pub fn at(&self, base_url: &str) -> anyhow::Result<Client> {
        Ok(Client { session: self.session.clone(), ..Client::with_roots(base_url, self.extra_roots.to_vec())? })
    }

    /// The same client without its session: what an anonymous caller sees.
    pub fn anonymous(&self) -> Client {
        Client { session: None, ..self.clone() }
    }

    /// A fresh connection: TCP, then TLS for https://.
    async fn open(&self) -> anyhow::Result<Box<dyn Io>> {
        let stream =
            TcpStream::connect(&self.address).await.with_context(|| format!("connecting to {}", self.address))?;
        let _ = stream.set_nodelay(true);
        let Some(secure) = &self.tls else {
            return Ok(Box::new(stream));
        };
        match secure.connector.connect(secure.name.clone(), stream).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(error) => Err(tls_failure(&self.authority, error)),
        }
    }

    /// Sends one request on a fresh connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let stream = self.open().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, &self.authority);
        if let Some(session) = &self.session {
            request = request.header(header::COOKIE, format!("chatctl_session={session}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender.send_request(request.body(Full::new(body))?).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }

    /// `GET path` with this client's session, if any.
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// `GET path`, expecting JSON whatever the status.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let answer = self.get(path).await?;
        Ok((answer.status, answer.json()?))
    }

    /// `POST path` with a JSON body, as the API expects.
    pub async fn post_json(&self, path: &str, value: &serde_json::Value) -> anyhow::Result<Answer> {
        self.send(Method::POST, path, &[("content-type", "application/json")], Bytes::from(value.to_string())).await
    }

    /// Signs in through `POST /api/login` and keeps the session cookie.
    pub async fn login(&mut self, username: &str, password: &str) -> anyhow::Result<Answer> {
        let answer =
            self.post_json("/api/login", &serde_json::json!({"username": username, "password": password})).await?;
        if answer.status == StatusCode::OK {
            self.session = Some(
                session_from(&answer.headers)
                    .ok_or_else(|| anyhow!("login answered 200 without a chatctl_session cookie"))?,
            );
        }
        Ok(answer)
    }

    /// Opens a WebSocket at `path` (e.g. `/ws/chat/lobby/`). A refused
    /// upgrade is `Err(Refused(status))`.
    pub async fn connect(&self, path: &str, origin: Option<&str>) -> Result<ChatSocket, ConnectError> {
        let stream = self.open().await.map_err(|e| ConnectError::Io(format!("{e:#}")))?;
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "upgrade")
            .header("Sec-WebSocket-Key", fastwebsockets::handshake::generate_key())
            .header("Sec-WebSocket-Version", "13");
        if let Some(session) = &self.session {
            request = request.header(header::COOKIE, format!("chatctl_session={session}"));
        }
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let request =
            request.body(http_body_util::Empty::<Bytes>::new()).map_err(|e| ConnectError::Io(e.to_string()))?;
        match fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await {
            Ok((ws, _)) => Ok(ChatSocket { ws: FragmentCollector::new(ws), awareness: false }),
            Err(fastwebsockets::WebSocketError::InvalidStatusCode(code)) => Err(ConnectError::Refused(code)),
            Err(other) => Err(ConnectError::Io(other.to_string())),
        }
    }
}

impl Secure {
    fn new(host: &str, extra_roots: &[CertificateDer<'static>]) -> anyhow::Result<Secure> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| anyhow!("{host} is neither a DNS name nor an IP address, so TLS cannot check it"))?;
        let provider = crate::http::tls::provider();
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots.iter().cloned(),
            provider.clone(),
        )
        .map_err(|error| {
            anyhow!("cannot set up certificate checks: {error}; install the system CA certificates or pass --ca-cert")
        })?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Secure { connector: TlsConnector::from(Arc::new(config)), name })
    }
}

/// `host` and the port, if written; IPv6 brackets removed. `None`: no host.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// A failed TLS handshake, said so that an untrusted certificate names the fix.
fn tls_failure(authority: &str, error: std::io::Error) -> anyhow::Error {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(why)) => anyhow!(
            "the TLS certificate of {authority} is not trusted ({why:?}); if your own CA signed it, pass that CA \
             with --ca-cert CA.pem"
        ),
        Some(other) => anyhow!("the TLS handshake with {authority} failed: {other}"),
        None => anyhow!("the TLS handshake with {authority} failed: {error}; is it serving https://?"),
    }
}

fn session_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().strip_prefix("chatctl_session=").map(str::to_owned))
        .find(|v| !v.is_empty())
}

/// Why a socket did not open: callers tell a refused upgrade from a failed connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server answered the upgrade with this HTTP status instead of 101.
    #[error("the upgrade was refused with HTTP {0}")]
    Refused(u16),
    /// No connection, TLS failure, or a broken handshake.
    #[error("connecting failed: {0}")]
    Io(String),
}

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

/// What a socket read produced.
#[derive(Debug)]
pub enum Event {
    /// A text frame, parsed.
    Json(serde_json::Value),
    /// The server's close frame; code 1005 when it carried none.
    Closed {
        /// The close code PROTOCOL.md's table pins.
        code: u16,
        /// The close reason text, also pinned by the table.
        reason: String,
    },
}

/// An open chat socket.
pub struct ChatSocket {
    ws: FragmentCollector<TokioIo<Upgraded>>,
    /// Whether `presence` and `typing` frames are handed on; by default they
    /// are skipped, since they come and go with other users' sockets and
    /// most readers wait for messages.
    awareness: bool,
}

impl ChatSocket {
    /// Hands on `presence` and `typing` frames too, from now on.
    pub fn with_awareness(mut self) -> ChatSocket {
        self.awareness = true;
        self
    }

    /// Sends a client frame as PROTOCOL.md has it: `message`, and `client_id` when given.
    pub async fn send_message(&mut self, text: &str, client_id: Option<&str>) -> anyhow::Result<()> {
        let mut frame = serde_json::json!({ "message": text });
        if let Some(id) = client_id {
            frame["client_id"] = serde_json::Value::from(id);
        }
        self.send_text(&frame.to_string()).await
    }

    /// Sends any text, valid frame or not, to test what the server refuses.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.write_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec()))).await?;
        Ok(())
    }

    /// Sends a raw frame (fragments, bad UTF-8, a stray continuation) for the close-code tests.
    pub async fn send_frame(&mut self, frame: Frame<'_>) -> anyhow::Result<()> {
        self.ws.write_frame(frame).await?;
        Ok(())
    }

    /// The next text frame as JSON, or the close; pings are answered and skipped.
    pub async fn next_event(&mut self, within: Duration) -> anyhow::Result<Event> {
        loop {
            let frame =
                tokio::time::timeout(within, self.ws.read_frame()).await.context("no frame arrived in time")??;
            match frame.opcode {
                OpCode::Text => {
                    let value: serde_json::Value = serde_json::from_slice(&frame.payload)
                        .context("the server sent a text frame that is not JSON")?;
                    if !self.awareness && matches!(value["type"].as_str(), Some("presence" | "typing")) {
                        continue;
                    }
                    return Ok(Event::Json(value));
                }
                OpCode::Close => {
                    let code = if frame.payload.len() >= 2 {
                        u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                    } else {
                        1005
                    };
                    let reason = String::from_utf8_lossy(frame.payload.get(2..).unwrap_or_default()).into_owned();
                    return Ok(Event::Closed { code, reason });
                }
                _ => continue,
            }
        }
    }

    /// The next text frame as JSON, a `presence` or `typing` one included
    /// (a conversation socket's `presence` frame follows its `history`).
    pub async fn next_json_with_awareness(&mut self, within: Duration) -> anyhow::Result<serde_json::Value> {
        let awareness = std::mem::replace(&mut self.awareness, true);
        let next = self.next_json(within).await;
        self.awareness = awareness;
        next
    }

    /// The next text frame as JSON; a close is an error.
    pub async fn next_json(&mut self, within: Duration) -> anyhow::Result<serde_json::Value> {
        match self.next_event(within).await? {
            Event::Json(value) => Ok(value),
            Event::Closed { code, reason } => bail!("the socket closed ({code} {reason})"),
        }
    }

    /// Reads until a frame of `kind` arrives, returning it.
    pub async fn next_of_type(&mut self, kind: &str, within: Duration) -> anyhow::Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let value = self.next_json(left).await?;
            if value["type"] == kind {
                return Ok(value);
            }
        }
    }

    /// Whether anything arrives within `window` (a check that nothing leaks).
    pub async fn receives_nothing(&mut self, window: Duration) -> bool {
        self.next_event(window).await.is_err()
    }

    /// Closes with 1000 without waiting for the server's answer.
    pub async fn close(mut self) {
        let _ = self.ws.write_frame(Frame::close(1000, b"bye")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_authority("127.0.0.1:8000"), Some(("127.0.0.1", Some(8000))));
        assert_eq!(split_authority("chat.example"), Some(("chat.example", None)));
        assert_eq!(split_authority("[::1]:8443"), Some(("::1", Some(8443))));
        assert_eq!(split_authority("[::1]"), Some(("::1", None)));
        assert_eq!(split_authority("host:http"), None);
        assert_eq!(split_authority(":8000"), None);
        assert_eq!(split_authority(""), None);
    }

    #[test]
    fn https_urls_get_tls_and_the_default_port() {
        let client = Client::new("https://localhost/chat").unwrap();
        assert_eq!((client.address.as_str(), client.tls.is_some()), ("localhost:443", true));
        let client = Client::new("http://[::1]:8000").unwrap();
        assert_eq!((client.address.as_str(), client.tls.is_some()), ("[::1]:8000", false));
        for bad in ["ftp://host", "127.0.0.1:8000", "https://", "http://host:99999"] {
            assert!(Client::new(bad).is_err(), "{bad} was accepted");
        }
    }
}
