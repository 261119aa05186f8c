//! RFC 6455's rules as PROTOCOL.md takes them, spoken over raw TCP so that a
//! test can break them: the handshake's key and version (and that a refused
//! upgrade joins nothing), unmasked client frames, and what counts as
//! activity for the idle limit.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 6455's sample key: the base64 of 16 bytes.
const GOOD_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A WebSocket driven byte by byte: frames go out exactly as built.
struct RawSocket {
    stream: TcpStream,
    /// Bytes read past the last whole frame (or past the answer's header).
    buffer: Vec<u8>,
}

/// What an upgrade request got: the raw status line and headers, and the
/// socket when the answer was 101.
struct Answer {
    head: String,
    socket: Option<RawSocket>,
}

impl Answer {
    fn status(&self) -> Option<u16> {
        raw_status(&self.head)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(found, _)| found.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }

    /// The JSON body of a refusal (`Content-Length` bytes after the head).
    fn json_error(&self) -> Option<String> {
        let body: Value = serde_json::from_str(self.head.split_once("\r\n\r\n")?.1).ok()?;
        body["error"].as_str().map(str::to_owned)
    }

    fn into_socket(self) -> RawSocket {
        match self.socket {
            Some(socket) => socket,
            None => panic!("the upgrade was refused: {}", self.head),
        }
    }
}

/// Sends an upgrade request for `path` as `user`, with `key` and `version`
/// when given, and reads the answer's head (and a refusal's body).
async fn upgrade(app: &TestApp, user: &str, path: &str, key: Option<&str>, version: Option<&str>) -> Answer {
    let session = app.client(user).session_cookie().expect("the user is signed in").to_owned();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Cookie: chatctl_session={session}\r\n",
        app.server.addr
    );
    if let Some(key) = key {
        request.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
    }
    if let Some(version) = version {
        request.push_str(&format!("Sec-WebSocket-Version: {version}\r\n"));
    }
    request.push_str("\r\n");
    send_upgrade(app.server.addr, request.as_bytes()).await.unwrap_or_else(|e| panic!("upgrading {path}: {e:#}"))
}

async fn send_upgrade(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.context("no answer")??;
        if n == 0 {
            bail!("closed before answering: {}", String::from_utf8_lossy(&received));
        }
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&received[..end]).into_owned();
    if raw_status(&head) == Some(101) {
        let buffer = received.split_off(end);
        return Ok(Answer { head, socket: Some(RawSocket { stream, buffer }) });
    }
    // A refusal: its JSON body follows, if the server has not closed yet.
    let mut rest = received.split_off(end);
    let _ = tokio::time::timeout(QUIET, async {
        while serde_json::from_slice::<Value>(&rest).is_err() {
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => rest.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    })
    .await;
    Ok(Answer { head: format!("{head}{}", String::from_utf8_lossy(&rest)), socket: None })
}

/// One frame as a client writes it: masked with `mask`, or unmasked.
fn client_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

impl RawSocket {
    async fn send(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(frame).await.context("writing a frame")
    }

    /// The next server frame (opcode and payload), within `within`.
    async fn next_frame(&mut self, within: Duration) -> anyhow::Result<(u8, Vec<u8>)> {
        tokio::time::timeout(within, async {
            loop {
                if let Some(frame) = self.take_frame()? {
                    return Ok(frame);
                }
                let mut buf = [0u8; 8192];
                let n = self.stream.read(&mut buf).await.context("reading a frame")?;
                if n == 0 {
                    bail!("the server closed the connection without a close frame");
                }
                self.buffer.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .with_context(|| format!("no frame within {within:?}"))?
    }

    /// A whole frame from the front of the buffer, if there is one.
    fn take_frame(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        let b = &self.buffer;
        if b.len() < 2 {
            return Ok(None);
        }
        if b[1] & 0x80 != 0 {
            bail!("the server masked a frame");
        }
        let (len, start) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
            126 | 127 => return Ok(None),
            len => (usize::from(len), 2),
        };
        if b.len() < start + len {
            return Ok(None);
        }
        let opcode = b[0] & 0x0F;
        let payload = b[start..start + len].to_vec();
        self.buffer.drain(..start + len);
        Ok(Some((opcode, payload)))
    }

    /// The next JSON text frame, skipping the server's pings and pongs.
    async fn next_json(&mut self) -> anyhow::Result<Value> {
        loop {
            match self.next_frame(WAIT).await? {
                (PING | PONG, _) => continue,
                (TEXT, payload) => return serde_json::from_slice(&payload).context("a text frame that is not JSON"),
                (opcode, payload) => bail!("expected a text frame, got opcode {opcode}: {payload:?}"),
            }
        }
    }

    /// Reads until the server's close frame; its code and reason.
    async fn expect_close(&mut self, within: Duration) -> anyhow::Result<(u16, String)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await? {
                (CLOSE, payload) if payload.len() >= 2 => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    return Ok((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
                }
                (CLOSE, payload) => bail!("a close frame without a code: {payload:?}"),
                (PING | PONG, _) => continue,
                (TEXT, payload) => bail!("expected a close, got {}", String::from_utf8_lossy(&payload)),
                (opcode, _) => bail!("expected a close, got opcode {opcode}"),
            }
        }
    }
}

/// The names of the conversations in `user`'s lobby.
async fn lobby_names(app: &TestApp, user: &str) -> Vec<String> {
    let (status, lobby) = app.client(user).get_json("/api/lobby").await.expect("GET /api/lobby answers");
    assert_eq!(status, 200, "{lobby}");
    let conversations = lobby["conversations"].as_array().expect("the lobby lists conversations");
    conversations.iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn stored_messages(app: &TestApp, room: &str) -> Value {
    let (status, page) =
        app.client("alice").get_json(&format!("/api/rooms/{room}/messages")).await.expect("the history API answers");
    assert_eq!(status, 200, "{page}");
    page["messages"].clone()
}

/// Opens `room` with a correct handshake and reads its `history` frame
/// and the `presence` frame after it.
async fn open_room(app: &TestApp, room: &str) -> RawSocket {
    let mut socket =
        upgrade(app, "alice", &format!("/ws/chat/{room}/"), Some(GOOD_KEY), Some("13")).await.into_socket();
    let history = socket.next_json().await.expect("a history frame");
    assert_eq!(history["type"], "history", "{history}");
    let presence = socket.next_json().await.expect("a presence frame");
    assert_eq!(presence["type"], "presence", "{presence}");
    socket
}

// ------------------------------------------------------------------ the handshake

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_base64_of_16_bytes_is_400_and_joins_nothing() {
    let app = spawn_app(&["alice", "bob"]).await;
    let bad_keys = [
        Some("short"),
        Some("dGhlIHNhbXBsZSBub25j"),     // 15 bytes
        Some("dGhlIHNhbXBsZSBub25jZXM="), // 17 bytes
        Some("dGhlIHNhbXBsZSBub25jZQ"),   // 16 bytes, unpadded
        Some("not base64 at all!!!!!=="),
        None,
    ];
    for key in bad_keys {
        for path in ["/ws/chat/refused/", "/ws/direct/bob/"] {
            let answer = upgrade(&app, "alice", path, key, Some("13")).await;
            assert_eq!(answer.status(), Some(400), "key {key:?} on {path}: {}", answer.head);
            assert!(answer.json_error().is_some_and(|e| !e.is_empty()), "key {key:?}: no JSON error: {}", answer.head);
        }
    }
    assert_eq!(lobby_names(&app, "alice").await, Vec::<String>::new(), "a refused upgrade joined a conversation");
    assert_eq!(lobby_names(&app, "bob").await, Vec::<String>::new(), "a refused direct upgrade reached bob's lobby");

    // The same request with a good key joins: the lobby check above can fail.
    let answer = upgrade(&app, "alice", "/ws/chat/refused/", Some(GOOD_KEY), Some("13")).await;
    assert_eq!(answer.status(), Some(101), "{}", answer.head);
    assert_eq!(lobby_names(&app, "alice").await, vec!["refused".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_other_than_13_is_426_naming_version_13_and_joins_nothing() {
    let app = spawn_app(&["alice"]).await;
    for version in [Some("8"), Some("12"), Some("14"), Some("13, 8"), None] {
        let answer = upgrade(&app, "alice", "/ws/chat/old_client/", Some(GOOD_KEY), version).await;
        assert_eq!(answer.status(), Some(426), "version {version:?}: {}", answer.head);
        assert_eq!(answer.header("sec-websocket-version"), Some("13"), "version {version:?}: {}", answer.head);
        assert!(answer.json_error().is_some(), "version {version:?}: no JSON error: {}", answer.head);
    }
    assert_eq!(lobby_names(&app, "alice").await, Vec::<String>::new(), "a refused upgrade joined the room");
}

// ------------------------------------------------------------------ frames

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmasked_frame_closes_the_socket_with_1002_and_stores_nothing() {
    let app = spawn_app(&["alice"]).await;
    let mut watcher = open_room(&app, "masks").await;
    let mut socket = open_room(&app, "masks").await;
    socket.send(&client_frame(TEXT, br#"{"message": "unmasked"}"#, None)).await.unwrap();
    let (code, reason) = socket.expect_close(WAIT).await.expect("a close frame");
    assert_eq!((code, reason.as_str()), (1002, "client frames must be masked"));
    assert_eq!(stored_messages(&app, "masks").await, serde_json::json!([]), "the unmasked frame was stored");

    // The room's other socket got nothing of it, and a masked frame is fine.
    watcher.send(&client_frame(TEXT, br#"{"message": "masked"}"#, MASK)).await.unwrap();
    let frame = watcher.next_json().await.unwrap();
    assert_eq!(frame["message"], "masked", "the first frame after the unmasked one: {frame}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmasked_ping_or_close_also_closes_with_1002() {
    let app = spawn_app(&["alice"]).await;
    for (opcode, payload) in [(PING, &b"hello"[..]), (CLOSE, &[0x03, 0xE8][..])] {
        let mut socket = open_room(&app, "masks").await;
        socket.send(&client_frame(opcode, payload, None)).await.unwrap();
        let (code, reason) = socket.expect_close(WAIT).await.expect("a close frame");
        assert_eq!((code, reason.as_str()), (1002, "client frames must be masked"), "opcode {opcode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_break_section_5_close_with_1002_naming_the_rule() {
    let app = spawn_app(&["alice"]).await;
    let mut reserved = client_frame(TEXT, br#"{"message": "x"}"#, MASK);
    reserved[0] |= 0x40;
    let mut fragmented_ping = client_frame(PING, b"hi", MASK);
    fragmented_ping[0] &= 0x7F;
    let cases = [
        (reserved, "reserved bits set: no extension was agreed"),
        (client_frame(0x3, b"x", MASK), "unknown opcode"),
        (fragmented_ping, "control frames must not be fragmented"),
        (client_frame(PING, &[b'p'; 126], MASK), "control frame payload over 125 bytes"),
        (client_frame(CLOSE, &1005u16.to_be_bytes(), MASK), "close code not allowed on the wire"),
        (client_frame(CLOSE, &[0x03], MASK), "a close payload needs a two-byte code"),
    ];
    for (frame, rule) in cases {
        let mut socket = open_room(&app, "rules").await;
        socket.send(&frame).await.unwrap();
        let (code, reason) = socket.expect_close(WAIT).await.unwrap_or_else(|e| panic!("{rule}: no close: {e:#}"));
        assert_eq!((code, reason.as_str()), (1002, rule));
    }
    assert_eq!(stored_messages(&app, "rules").await, serde_json::json!([]), "a refused frame was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_split_across_many_tcp_writes_arrives_whole() {
    let app = spawn_app(&["alice"]).await;
    let mut watcher = open_room(&app, "pieces").await;
    let mut socket = open_room(&app, "pieces").await;
    let text = format!(r#"{{"message": "{}"}}"#, "é".repeat(4_000));
    let frame = client_frame(TEXT, text.as_bytes(), MASK);
    // Header, length and key apart, then the payload in odd-sized pieces.
    for piece in frame.chunks(333) {
        socket.send(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = watcher.next_json().await.unwrap();
    assert_eq!(got["message"].as_str().map(|m| m.chars().count()), Some(4_000));
}

// ------------------------------------------------------------------ the idle limit

/// Short enough that a test outlives it several times over.
const IDLE: Duration = Duration::from_secs(1);

async fn spawn_impatient_app() -> TestApp {
    spawn_app_with(&[UserSpec::new("alice")], |config| config.socket_idle_timeout = IDLE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_with_1001_idle_timeout() {
    let app = spawn_impatient_app().await;
    let mut socket = open_room(&app, "quiet").await;
    let started = Instant::now();
    let (code, reason) = socket.expect_close(IDLE * 5).await.expect("the silent socket is closed");
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert!(started.elapsed() >= IDLE / 2, "closed after {:?}, before the idle limit", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_alone_keep_a_socket_open_past_the_idle_limit() {
    let app = spawn_impatient_app().await;
    let mut socket = open_room(&app, "pinging").await;
    let until = Instant::now() + IDLE * 3;
    let mut pongs = 0;
    while Instant::now() < until {
        socket.send(&client_frame(PING, b"are you there", MASK)).await.expect("the socket is still open");
        // Its pong, past any of the server's own pings; never a close.
        loop {
            match socket.next_frame(WAIT).await.expect("a pong") {
                (PONG, payload) => {
                    assert_eq!(payload, b"are you there", "a pong echoes its ping");
                    pongs += 1;
                    break;
                }
                (PING, _) => {}
                (CLOSE, payload) => panic!("closed while pinging: {payload:?}"),
                (opcode, payload) => panic!("unexpected opcode {opcode}: {payload:?}"),
            }
        }
        tokio::time::sleep(IDLE / 5).await;
    }
    assert!(pongs >= 6, "only {pongs} pings were answered");
    socket.send(&client_frame(TEXT, br#"{"message": "still here"}"#, MASK)).await.unwrap();
    let frame = socket.next_json().await.expect("the socket is open after three idle limits of pings");
    assert_eq!(frame["message"], "still here", "{frame}");
}
