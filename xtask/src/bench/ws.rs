//! The load generator's WebSocket client: a hand-written upgrade over a
//! plain `TcpStream` (so a socket is a bare `WebSocket<TcpStream>`, cheap
//! enough to hold ten thousand), and a scanner that pulls the few fields the
//! bench needs out of a server frame without building a JSON tree.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fastwebsockets::{Frame, Payload, Role, WebSocket};
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::connect_tcp;
use super::BoxError;

pub type Ws = WebSocket<TcpStream>;

/// Upgrade answers are a few hundred bytes; anything longer is not chatctl.
const MAX_UPGRADE_ANSWER: usize = 8 * 1024;

/// Opens a chat socket at `path` signed in with `cookie`, and waits for the
/// `history` frame, which the server sends only once the socket is
/// subscribed to its room: after this returns, no message of the room can
/// be missed.
pub async fn open(addr: SocketAddr, source: Option<IpAddr>, path: &str, cookie: &str) -> Result<Ws, BoxError> {
    let (ws, first) = open_first(addr, source, path, cookie).await?;
    if !matches!(classify(&first), Seen::History) {
        return Err(format!("{path}: the first frame was not `history`").into());
    }
    Ok(ws)
}

/// Opens a socket at `path` (any route: a conversation's, whose first
/// frame is `history`, or `/ws/user/`, whose first frame is `inbox`) and
/// returns it with its first text frame's payload.
pub async fn open_first(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    cookie: &str,
) -> Result<(Ws, Vec<u8>), BoxError> {
    let mut stream = connect_tcp(addr, source).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
    let key = fastwebsockets::handshake::generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: chatctl_session={cookie}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // Read exactly the answer's head: the first frame may follow in the same
    // segment and must stay in the stream for the WebSocket reader.
    let mut peeked = vec![0u8; MAX_UPGRADE_ANSWER];
    let head_len = loop {
        let n = stream.peek(&mut peeked).await?;
        if n == 0 {
            return Err(format!("{path}: the server closed the connection during the upgrade").into());
        }
        if let Some(end) = find(&peeked[..n], b"\r\n\r\n") {
            break end + 4;
        }
        if n == MAX_UPGRADE_ANSWER {
            return Err(format!("{path}: the upgrade answer is too long").into());
        }
        stream.readable().await?;
    };
    let mut head = vec![0u8; head_len];
    stream.read_exact(&mut head).await?;
    let status_line = String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
    if !status_line.starts_with("HTTP/1.1 101") {
        return Err(format!("{path}: upgrade refused: {status_line}").into());
    }
    let mut ws = WebSocket::after_handshake(stream, Role::Client);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let first = tokio::time::timeout(Duration::from_secs(30), ws.read_frame())
        .await
        .map_err(|_| format!("{path}: no first frame within 30 s"))??;
    if first.opcode != fastwebsockets::OpCode::Text {
        return Err(format!("{path}: the first frame was not text ({:?})", first.opcode).into());
    }
    let first = first.payload.to_vec();
    Ok((ws, first))
}

/// A bench message's text: `b` and the send time in nanoseconds since the
/// run's clock base, so any receiver can compute the end-to-end time.
pub fn message_text(sent_ns: u64) -> String {
    format!("b{sent_ns}")
}

/// The last message a publisher sends in its room: once a socket sees it,
/// it has seen everything sent before it.
pub const MARKER_TEXT: &str = "end";
pub const MARKER_CLIENT_ID: &str = "end";

/// A client frame: `{"message": text, "client_id": id}` (all ASCII, no escaping needed).
pub fn client_frame(text: &str, client_id: &str) -> Frame<'static> {
    let json = format!(r#"{{"message":"{text}","client_id":"{client_id}"}}"#);
    Frame::text(Payload::Owned(json.into_bytes()))
}

/// What a server text frame is, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// A `chat_handler` frame: its id, its bench send time (None for the
    /// marker or a foreign text), whether it is the marker, and its
    /// `client_id` when this socket sent it.
    Message {
        id: u64,
        sent_ns: Option<u64>,
        marker: bool,
        client_id: Option<&'a [u8]>,
    },
    History,
    Error {
        client_id: Option<&'a [u8]>,
    },
    Other,
}

/// Reads a frame serialised by chatctl (fields in a fixed order, strings
/// JSON-escaped, so a key pattern such as `"id":"` cannot occur inside a
/// value: a quote inside a value is always preceded by a backslash).
pub fn classify(payload: &[u8]) -> Seen<'_> {
    if payload.starts_with(br#"{"type":"chat_handler""#) {
        let Some(id) = string_field(payload, br#""id":""#).and_then(parse_u64) else {
            return Seen::Other;
        };
        let text = string_field(payload, br#""message":""#).unwrap_or_default();
        let marker = text == MARKER_TEXT.as_bytes();
        let sent_ns = text.strip_prefix(b"b").and_then(parse_u64);
        Seen::Message { id, sent_ns, marker, client_id: string_field(payload, br#""client_id":""#) }
    } else if payload.starts_with(br#"{"type":"history""#) {
        Seen::History
    } else if payload.starts_with(br#"{"type":"error""#) {
        Seen::Error { client_id: string_field(payload, br#""client_id":""#) }
    } else {
        Seen::Other
    }
}

/// The raw (still escaped) value of the string field that starts after `key`.
pub fn string_field<'a>(payload: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = find(payload, key)? + key.len();
    let mut end = start;
    while end < payload.len() {
        match payload[end] {
            b'\\' => end += 2,
            b'"' => return Some(&payload[start..end]),
            _ => end += 1,
        }
    }
    None
}

pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 + 1 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_a_chatctl_message_frame() {
        let frame = br#"{"type":"chat_handler","id":"00000000000000000042","room":"r","author":"a","message":"b123","ts":"2026-01-01T00:00:00.000Z","client_id":"7"}"#;
        assert_eq!(classify(frame), Seen::Message { id: 42, sent_ns: Some(123), marker: false, client_id: Some(b"7") });
        let marker =
            br#"{"type":"chat_handler","id":"00000000000000000043","room":"r","author":"a","message":"end","ts":"x"}"#;
        assert_eq!(classify(marker), Seen::Message { id: 43, sent_ns: None, marker: true, client_id: None });
        let tricky = br#"{"type":"chat_handler","id":"00000000000000000044","room":"r","author":"a","message":"say \"id\":\"9\"","ts":"x"}"#;
        assert!(matches!(classify(tricky), Seen::Message { id: 44, sent_ns: None, .. }));
        assert_eq!(classify(br#"{"type":"history","messages":[]}"#), Seen::History);
        assert_eq!(
            classify(br#"{"type":"error","code":"empty","detail":"d","client_id":"5"}"#),
            Seen::Error { client_id: Some(b"5") }
        );
    }
}
