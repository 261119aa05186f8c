//! The JSON frames of PROTOCOL.md: parsing and validating what clients send,
//! and serialising what the server sends (once per frame, shared by every
//! recipient).

use bytes::Bytes;
use serde::Serialize;

use crate::domain::{MessageText, TextError};
use crate::storage::Message;

/// The most bytes one client message may have, whole or reassembled.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The longest `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// A valid client frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Inbound {
    pub text: MessageText,
    pub client_id: Option<String>,
}

/// Why a frame was refused; `code()` is the stable wire code.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    BadJson,
    BadFrame(&'static str),
    Empty,
    TooLong,
    RateLimited,
    Unavailable,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadJson => "bad_json",
            Refusal::BadFrame(_) => "bad_frame",
            Refusal::Empty => "empty",
            Refusal::TooLong => "too_long",
            Refusal::RateLimited => "rate_limited",
            Refusal::Unavailable => "unavailable",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Refusal::BadJson => "the frame is not JSON".to_owned(),
            Refusal::BadFrame(why) => (*why).to_owned(),
            Refusal::Empty => "the message is empty once white space is trimmed".to_owned(),
            Refusal::TooLong => format!("a message may have at most {} characters", MessageText::MAX_CHARS),
            Refusal::RateLimited => "too many messages: slow down and retry in a moment".to_owned(),
            Refusal::Unavailable => {
                "the server cannot store messages right now; nothing was stored, retry later".to_owned()
            }
        }
    }
}

/// A refused frame: why, and its `client_id` when it had a valid one, so
/// the error frame can name the message it refuses.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub refusal: Refusal,
    pub client_id: Option<String>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Refused { refusal, client_id: None }
    }
}

pub fn parse_inbound(raw: &[u8]) -> Result<Inbound, Refused> {
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|_| Refusal::BadJson)?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(Refusal::BadFrame("a frame must be a JSON object").into());
    };
    let client_id = match object.remove("client_id") {
        None => None,
        Some(serde_json::Value::String(id)) if id.chars().count() <= MAX_CLIENT_ID_CHARS => Some(id),
        Some(_) => return Err(Refusal::BadFrame("client_id must be a string of at most 64 characters").into()),
    };
    let refused = |refusal| Refused { refusal, client_id: client_id.clone() };
    let Some(serde_json::Value::String(message)) = object.remove("message") else {
        return Err(refused(Refusal::BadFrame("a frame needs a string \"message\"")));
    };
    let text = MessageText::parse(&message).map_err(|e| match e {
        TextError::Empty => refused(Refusal::Empty),
        TextError::TooLong => refused(Refusal::TooLong),
    })?;
    Ok(Inbound { text, client_id })
}

/// The wire form of one message (`chat_handler`).
#[derive(Serialize, Debug, PartialEq, Eq, serde::Deserialize, Clone)]
pub struct MessageFrame {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub room: String,
    pub author: String,
    pub message: String,
    pub ts: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
}

impl MessageFrame {
    pub fn of(message: &Message, client_id: Option<&str>) -> Self {
        MessageFrame {
            kind: "chat_handler".to_owned(),
            id: message.id.to_string(),
            room: message.conversation.clone(),
            author: message.author.clone(),
            message: message.text.clone(),
            ts: rfc3339(message.ts_ms),
            client_id: client_id.map(str::to_owned),
        }
    }
}

pub fn rfc3339(ts_ms: u64) -> String {
    // humantime cannot format past year 9999: a bad clock (or a bad stream
    // record) must not take the server down.
    const LAST_MS_OF_9999: u64 = 253_402_300_799_999;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts_ms.min(LAST_MS_OF_9999));
    humantime::format_rfc3339_millis(at).to_string()
}

pub fn message_bytes(message: &Message, client_id: Option<&str>) -> Bytes {
    to_bytes(&MessageFrame::of(message, client_id))
}

/// The sender's copy of a message frame: the shared bytes with its
/// `client_id` added as the last field, without serialising the frame again.
pub fn with_client_id(frame: &Bytes, client_id: &str) -> Bytes {
    let quoted = serde_json::to_string(client_id).expect("strings serialise infallibly");
    let body = frame.strip_suffix(b"}").unwrap_or(frame);
    let mut out = Vec::with_capacity(frame.len() + quoted.len() + 14);
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"client_id\":");
    out.extend_from_slice(quoted.as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

#[derive(Serialize)]
struct HistoryFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    messages: &'a [MessageFrame],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    more: bool,
}

pub fn history_bytes(messages: &[Message], more: bool) -> Bytes {
    let frames: Vec<MessageFrame> = messages.iter().map(|m| MessageFrame::of(m, None)).collect();
    to_bytes(&HistoryFrame { kind: "history", messages: &frames, more })
}

/// An `error` frame; it carries the refused frame's `client_id` when known.
pub fn error_bytes(refusal: &Refusal, client_id: Option<&str>) -> Bytes {
    let mut frame = serde_json::json!({"type": "error", "code": refusal.code(), "detail": refusal.detail()});
    if let Some(id) = client_id {
        frame["client_id"] = serde_json::Value::from(id);
    }
    to_bytes(&frame)
}

fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("frames serialise infallibly"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageId;

    #[test]
    fn refusals_carry_the_protocol_codes() {
        let code = |raw: &str| parse_inbound(raw.as_bytes()).unwrap_err().refusal.code();
        assert_eq!(code("not json"), "bad_json");
        assert_eq!(code("[1]"), "bad_frame");
        assert_eq!(code("{}"), "bad_frame");
        assert_eq!(code(r#"{"message": 5}"#), "bad_frame");
        assert_eq!(code(r#"{"message": "x", "client_id": 7}"#), "bad_frame");
        assert_eq!(code(&format!(r#"{{"message": "x", "client_id": "{}"}}"#, "c".repeat(65))), "bad_frame");
        assert_eq!(code(r#"{"message": " \n\t "}"#), "empty");
        assert_eq!(code(&format!(r#"{{"message": "{}"}}"#, "x".repeat(4097))), "too_long");
    }

    #[test]
    fn a_refusal_names_the_client_id_when_the_frame_had_one() {
        let refused = parse_inbound(r#"{"message": "  ", "client_id": "c9"}"#.as_bytes()).unwrap_err();
        assert_eq!(refused, Refused { refusal: Refusal::Empty, client_id: Some("c9".into()) });
        let v: serde_json::Value = serde_json::from_slice(&error_bytes(&refused.refusal, Some("c9"))).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str(), v["client_id"].as_str()),
            (Some("error"), Some("empty"), Some("c9"))
        );
        assert!(v["detail"].is_string());
    }

    #[test]
    fn a_valid_frame_is_trimmed_and_keeps_its_client_id() {
        let ok = parse_inbound(r#"{"message": "  hi  ", "client_id": "c1", "extra": 1}"#.as_bytes()).unwrap();
        assert_eq!(ok.text.as_str(), "hi");
        assert_eq!(ok.client_id.as_deref(), Some("c1"));
    }

    #[test]
    fn timestamps_past_year_9999_are_clamped_not_fatal() {
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_senders_copy_is_the_shared_frame_plus_its_client_id() {
        let m = Message { id: MessageId(7), conversation: "r".into(), author: "a".into(), text: "t".into(), ts_ms: 1 };
        for client_id in ["c-1", "quote\" and \\ back", "\u{e9}\u{1F600}"] {
            let spliced = with_client_id(&message_bytes(&m, None), client_id);
            assert_eq!(spliced, message_bytes(&m, Some(client_id)), "{client_id}");
        }
    }

    #[test]
    fn message_frames_have_every_protocol_field() {
        let m = Message {
            id: MessageId(42),
            conversation: "lobby".into(),
            author: "al".into(),
            text: "<b>".into(),
            ts_ms: 1_700_000_000_123,
        };
        let v: serde_json::Value = serde_json::from_slice(&message_bytes(&m, None)).unwrap();
        assert_eq!(v["type"], "chat_handler");
        assert_eq!(v["id"], "00000000000000000042");
        assert_eq!(v["room"], "lobby");
        assert_eq!(v["author"], "al");
        assert_eq!(v["message"], "<b>");
        assert_eq!(v["ts"], "2023-11-14T22:13:20.123Z");
        assert!(v.get("client_id").is_none());
        let v: serde_json::Value = serde_json::from_slice(&message_bytes(&m, Some("c"))).unwrap();
        assert_eq!(v["client_id"], "c");
    }
}
