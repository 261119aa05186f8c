//! Shared by every integration test: `spawn_app()` starts a real server on a
//! random loopback port with its own data dir and signed-in users, plus small
//! helpers for what PROTOCOL.md puts on the wire (cookies, redirects, forms,
//! frames). Each test binary uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod certs;
pub mod serve_process;

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use chatctl::client::{ChatSocket, Client, ConnectError, Event};
use chatctl::config::ServerConfig;
use chatctl::startup::RunningServer;
use chatctl::storage::{now_ms, SchemaCheck, Store, UserRecord};
use hyper::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for a frame or an answer that should come.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test listens to show that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(400);

/// The password every test user gets: long, unusual, unlike any username.
pub fn password_of(username: &str) -> String {
    format!("{username}-Kq7!vR2#xW9")
}

/// An account to create before the server starts.
#[derive(Clone, Debug)]
pub struct UserSpec {
    pub name: String,
    pub superuser: bool,
    pub active: bool,
    /// Sign in through `/api/login` at spawn (impossible for inactive users).
    pub sign_in: bool,
}

impl UserSpec {
    pub fn new(name: &str) -> UserSpec {
        UserSpec { name: name.to_owned(), superuser: false, active: true, sign_in: true }
    }

    pub fn superuser(mut self) -> UserSpec {
        self.superuser = true;
        self
    }

    pub fn inactive(mut self) -> UserSpec {
        self.active = false;
        self.sign_in = false;
        self
    }

    pub fn signed_out(mut self) -> UserSpec {
        self.sign_in = false;
        self
    }
}

impl From<&str> for UserSpec {
    fn from(name: &str) -> UserSpec {
        UserSpec::new(name)
    }
}

/// A running server, its data dir and one client per user.
pub struct TestApp {
    pub server: RunningServer,
    pub config: ServerConfig,
    /// Signed in when the spec said so; otherwise anonymous.
    pub clients: Vec<(String, Client)>,
    /// Dropped last: the server must stop before its directory goes.
    pub dir: TempDir,
}

impl TestApp {
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The client of `username` (signed in unless its spec said otherwise).
    pub fn client(&self, username: &str) -> Client {
        self.clients
            .iter()
            .find(|(name, _)| name == username)
            .map(|(_, client)| client.clone())
            .unwrap_or_else(|| panic!("no test user {username}"))
    }

    /// A client with no session.
    pub fn anonymous(&self) -> Client {
        Client::new(&self.url()).expect("the server URL is http://")
    }

    /// The `Origin` a browser on this server's own pages would send.
    pub fn own_origin(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

/// A server with default settings and these users, each signed in.
pub async fn spawn_app(users: &[&str]) -> TestApp {
    let specs: Vec<UserSpec> = users.iter().map(|name| UserSpec::new(name)).collect();
    spawn_app_with(&specs, |_| {}).await
}

/// As `spawn_app`, with the per-user message rate limit off (for tests that
/// send many messages).
pub async fn spawn_unlimited_app(users: &[&str]) -> TestApp {
    let specs: Vec<UserSpec> = users.iter().map(|name| UserSpec::new(name)).collect();
    spawn_app_with(&specs, |config| config.message_rate = 0).await
}

/// The general form: explicit user specs and a config tweak.
pub async fn spawn_app_with(users: &[UserSpec], tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("creating a temporary data dir");
    create_users(dir.path(), users);
    let mut config = ServerConfig::ephemeral(dir.path());
    tweak(&mut config);
    let server = chatctl::startup::start(config.clone()).await.expect("the server starts");
    let mut clients = Vec::new();
    for spec in users {
        let mut client = Client::new(&server.url()).expect("the server URL is http://");
        if spec.sign_in {
            let answer = client.login(&spec.name, &password_of(&spec.name)).await.expect("POST /api/login answers");
            assert_eq!(answer.status, 200, "{} could not sign in: {}", spec.name, answer.text());
        }
        clients.push((spec.name.clone(), client));
    }
    TestApp { server, config, clients, dir }
}

/// Writes the accounts straight into the database, then closes it (redb
/// locks the file, and the server opens it next).
pub fn create_users(dir: &std::path::Path, users: &[UserSpec]) {
    if users.is_empty() {
        return;
    }
    let store = Store::open(dir, SchemaCheck::RequireCurrent).expect("opening the test database");
    for spec in users {
        store
            .create_user(&UserRecord {
                username: chatctl::domain::Username::from_stored(&spec.name).expect("a valid test username"),
                email: String::new(),
                password_hash: chatctl::auth::password::hash(&password_of(&spec.name)),
                is_superuser: spec.superuser,
                is_active: spec.active,
                created_at_ms: now_ms(),
            })
            .expect("creating a test user");
    }
    drop(store);
}

// ---------------------------------------------------------------- HTTP

/// Every `Set-Cookie` header value.
pub fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
}

/// The full `Set-Cookie` header that sets `name`, if any.
pub fn set_cookie_for(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(headers).into_iter().find(|c| c.split(';').next().unwrap_or("").trim().starts_with(&format!("{name}=")))
}

/// The value a `Set-Cookie` header gives `name` (empty when it clears it).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let header = set_cookie_for(headers, name)?;
    let pair = header.split(';').next()?.trim();
    Some(pair.split_once('=')?.1.to_owned())
}

/// The attributes of a `Set-Cookie` header, lower-cased, without the value.
pub fn cookie_attributes(header: &str) -> Vec<String> {
    header.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).filter(|a| !a.is_empty()).collect()
}

/// The `Location` header.
pub fn location(headers: &HeaderMap) -> Option<String> {
    headers.get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Percent-decodes (and `+` to space, as forms and query strings use it).
pub fn url_decode(raw: &str) -> String {
    form_urlencoded::parse(format!("x={raw}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Encodes form fields as `application/x-www-form-urlencoded`.
pub fn form_body(fields: &[(&str, &str)]) -> bytes::Bytes {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    bytes::Bytes::from(serializer.finish())
}

pub const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// The `value` of the `<input>` named `name`, HTML entities undone.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    let mut rest = html;
    while let Some(start) = rest.find("<input") {
        let tag_start = &rest[start..];
        let end = tag_start.find('>')?;
        let tag = &tag_start[..end];
        if tag.contains(&needle) {
            let value_start = tag.find("value=\"")? + "value=\"".len();
            let value_end = tag[value_start..].find('"')? + value_start;
            return Some(unescape_html(&tag[value_start..value_end]));
        }
        rest = &tag_start[end..];
    }
    None
}

/// Whether the `<input>` named `name` has `type="hidden"`.
pub fn input_is_hidden(html: &str, name: &str) -> bool {
    let needle = format!("name=\"{name}\"");
    html.split("<input")
        .skip(1)
        .map(|tail| tail.split('>').next().unwrap_or(""))
        .any(|tag| tag.contains(&needle) && tag.contains("type=\"hidden\""))
}

fn unescape_html(raw: &str) -> String {
    raw.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Asserts an answer is JSON `{"error": "<non-empty text>"}` with `status`.
pub fn assert_json_error(answer: &chatctl::client::Answer, status: u16, what: &str) {
    assert_eq!(answer.status.as_u16(), status, "{what}: expected {status}, got {} {}", answer.status, answer.text());
    let body = answer.json().unwrap_or_else(|e| panic!("{what}: the error is not JSON: {e:#}"));
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: the body has no \"error\" string: {body}");
    let content_type = answer.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(content_type.starts_with("application/json"), "{what}: content-type is {content_type:?}");
}

/// Sends raw bytes on a fresh connection and reads one answer: its header
/// and `Content-Length` body, or until the server closes (or `WAIT` passes).
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    // The server may answer (and close) before it reads everything.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 8192];
        while !answer_complete(&received) {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if received.is_empty() => return Err(e),
                // The answer arrived; a reset after it does not matter here.
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    })
    .await;
    match read {
        Ok(result) => result.context("reading the answer")?,
        Err(_) if !received.is_empty() => {}
        Err(_) => bail!("no answer within {WAIT:?}"),
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

/// Whether `received` holds a whole answer with a `Content-Length` body.
fn answer_complete(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

/// The status code of a raw HTTP/1.1 answer.
pub fn raw_status(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------- WebSocket

/// Opens a conversation socket and returns it with its `history` frame,
/// past the `presence` frame that follows it.
pub async fn join(client: &Client, path: &str) -> (ChatSocket, Value) {
    let mut ws = client.connect(path, None).await.unwrap_or_else(|e| panic!("opening {path}: {e}"));
    let history = ws.next_json(WAIT).await.unwrap_or_else(|e| panic!("no first frame on {path}: {e:#}"));
    assert_eq!(history["type"], "history", "the first frame on {path} was {history}");
    let presence =
        ws.next_json_with_awareness(WAIT).await.unwrap_or_else(|e| panic!("no presence frame on {path}: {e:#}"));
    assert!(presence["online"].is_array(), "the frame after the history on {path} was {presence}");
    (ws, history)
}

/// Asserts the upgrade was refused with `status` (so no socket exists).
pub fn assert_refused(result: Result<ChatSocket, ConnectError>, status: u16, what: &str) {
    match result {
        Err(ConnectError::Refused(code)) => {
            assert_eq!(code, status, "{what}: refused with {code}, expected {status}")
        }
        Err(other) => panic!("{what}: expected HTTP {status}, got {other}"),
        Ok(_) => panic!("{what}: the upgrade was accepted, expected HTTP {status}"),
    }
}

/// Reads exactly `count` `chat_handler` frames; anything else is an error.
pub async fn collect_messages(ws: &mut ChatSocket, count: usize) -> anyhow::Result<Vec<Value>> {
    let mut out: Vec<Value> = Vec::with_capacity(count);
    while out.len() < count {
        let frame = ws.next_json(WAIT).await.with_context(|| format!("after {} of {count} messages", out.len()))?;
        ensure!(frame["type"] == "chat_handler", "expected a message, got {frame}");
        out.push(frame);
    }
    Ok(out)
}

/// Sends `count` messages `"{prefix} {i}"`, in chunks without waiting in
/// between (a chunk stays well inside the socket's outbound queue), reading
/// the echoes after each chunk; returns the frames in arrival order.
pub async fn send_many(ws: &mut ChatSocket, prefix: &str, count: usize) -> Vec<Value> {
    const CHUNK: usize = 200;
    let mut frames = Vec::with_capacity(count);
    for start in (0..count).step_by(CHUNK) {
        let end = (start + CHUNK).min(count);
        for i in start..end {
            ws.send_message(&format!("{prefix} {i}"), None).await.expect("sending a message");
        }
        frames.extend(collect_messages(ws, end - start).await.expect("every message echoes back"));
    }
    let texts: Vec<String> = frames.iter().map(|f| text_of(f).to_owned()).collect();
    let expected: Vec<String> = (0..count).map(|i| format!("{prefix} {i}")).collect();
    assert_eq!(texts, expected, "the echoes are not the messages sent, in order");
    frames
}

/// Sends `count` messages of 4,096 characters of 3 bytes each (12 KiB of
/// UTF-8 apiece), numbered at their start, reading the echoes in chunks;
/// returns the frames in order. Enough of them pass a page's 1 MiB cap.
pub async fn send_large(ws: &mut ChatSocket, count: usize) -> Vec<Value> {
    const CHUNK: usize = 50;
    let text = |i: usize| format!("{i:04}{}", "\u{20ac}".repeat(4092));
    let mut frames = Vec::with_capacity(count);
    for start in (0..count).step_by(CHUNK) {
        let end = (start + CHUNK).min(count);
        for i in start..end {
            ws.send_message(&text(i), None).await.expect("sending a message");
        }
        frames.extend(collect_messages(ws, end - start).await.expect("every message echoes back"));
    }
    assert!(frames.iter().enumerate().all(|(i, f)| text_of(f) == text(i)), "the echoes are not the messages sent");
    frames
}

/// The bytes of a frame or page as the server sent it: serde_json writes a
/// value back compactly, with the same escapes, so the length is the same.
pub fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).expect("a JSON value serialises").len()
}

/// The `id`s of a list of frames.
pub fn ids_of(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .map(|list| list.iter().map(|m| m["id"].as_str().expect("every frame has a string id").to_owned()).collect())
        .unwrap_or_default()
}

pub fn frame_ids(frames: &[Value]) -> Vec<String> {
    ids_of(&Value::Array(frames.to_vec()))
}

pub fn text_of(frame: &Value) -> &str {
    frame["message"].as_str().unwrap_or_default()
}

/// Reads the next frame and expects an `error` frame with `code`.
pub async fn expect_error(ws: &mut ChatSocket, code: &str, what: &str) -> Value {
    let frame = ws.next_json(WAIT).await.unwrap_or_else(|e| panic!("{what}: no error frame: {e:#}"));
    assert_eq!(frame["type"], "error", "{what}: got {frame}");
    assert_eq!(frame["code"], code, "{what}: got {frame}");
    assert!(frame["detail"].is_string(), "{what}: no detail in {frame}");
    frame
}

/// Reads until the server closes; returns its close code.
pub async fn expect_close(ws: &mut ChatSocket) -> anyhow::Result<u16> {
    expect_close_with_reason(ws).await.map(|(code, _)| code)
}

/// Reads until the server closes, past messages and error frames; returns
/// the close code and reason, which PROTOCOL.md's table pins together.
pub async fn expect_close_with_reason(ws: &mut ChatSocket) -> anyhow::Result<(u16, String)> {
    loop {
        match ws.next_event(WAIT).await? {
            Event::Closed { code, reason } => return Ok((code, reason)),
            Event::Json(frame) if frame["type"] == "chat_handler" || frame["type"] == "error" => continue,
            Event::Json(frame) => return Err(anyhow!("expected a close, got {frame}")),
        }
    }
}

/// Sends one message and returns its echo (the socket must be quiet otherwise).
pub async fn say(ws: &mut ChatSocket, text: &str) -> Value {
    ws.send_message(text, None).await.expect("sending a message");
    let frame = ws.next_of_type("chat_handler", WAIT).await.unwrap_or_else(|e| panic!("no echo of {text:?}: {e:#}"));
    assert_eq!(text_of(&frame), text.trim());
    frame
}

/// Closes from the client side and waits for the server's close echo, so the
/// server has finished with the socket when this returns.
pub async fn leave(mut ws: ChatSocket) {
    ws.send_frame(fastwebsockets::Frame::close(1000, b"bye")).await.expect("sending a close frame");
    loop {
        match ws.next_event(WAIT).await {
            Ok(Event::Closed { .. }) | Err(_) => return,
            Ok(Event::Json(_)) => continue,
        }
    }
}
