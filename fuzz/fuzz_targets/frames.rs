//! The WebSocket text-frame parser (`chat::frames::parse_inbound`) on
//! arbitrary bytes: what it accepts keeps `MessageText`'s limits and agrees
//! with the JSON it came from (a frame without `type` is a message, one
//! with a `type` is that kind); what it refuses becomes a well-formed error
//! frame; an accepted message's outbound frame carries it unchanged.

#![no_main]

use chatctl::chat::frames::{self, error_bytes, parse_inbound, Inbound, MessageFrame, Refusal, MAX_CLIENT_ID_CHARS};
use chatctl::domain::{MessageId, MessageText};
use chatctl::storage::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_inbound(data) {
        Ok(inbound) => {
            let value: serde_json::Value = serde_json::from_slice(data).expect("an accepted frame is JSON");
            let kind = value.get("type").and_then(|t| t.as_str());
            match inbound {
                Inbound::Message { text, client_id } => {
                    assert_eq!(kind, None, "only a frame without type is a message");
                    accepted_text(&text, client_id.as_deref(), &value);
                    outbound_carries_it(&text, client_id.as_deref(), data);
                }
                Inbound::Edit { text, client_id, .. } => {
                    assert_eq!(kind, Some("edit"));
                    accepted_text(&text, client_id.as_deref(), &value);
                }
                Inbound::Delete { client_id, .. } => {
                    assert_eq!(kind, Some("delete"));
                    assert_eq!(value.get("client_id").and_then(|c| c.as_str()), client_id.as_deref());
                }
                Inbound::Read { .. } => assert_eq!(kind, Some("read")),
                Inbound::Typing => assert_eq!(kind, Some("typing")),
            }
        }
        Err(refused) => {
            assert!(
                !matches!(refused.refusal, Refusal::RateLimited | Refusal::Unavailable),
                "parsing alone never rate-limits or fails storage"
            );
            if let Some(id) = &refused.client_id {
                assert!(id.chars().count() <= MAX_CLIENT_ID_CHARS);
            }
            let frame = error_bytes(&refused.refusal, refused.client_id.as_deref());
            let value: serde_json::Value = serde_json::from_slice(&frame).expect("an error frame is JSON");
            assert_eq!(value["type"], "error");
            assert_eq!(value["code"], refused.refusal.code());
            assert!(value["detail"].as_str().is_some_and(|d| !d.is_empty()));
            assert_eq!(value.get("client_id").and_then(|c| c.as_str()), refused.client_id.as_deref());
        }
    }
});

/// An accepted text keeps `MessageText`'s limits and is the frame's
/// `message` trimmed; the `client_id` kept is the frame's.
fn accepted_text(text: &MessageText, client_id: Option<&str>, value: &serde_json::Value) {
    let text = text.as_str();
    assert!(!text.is_empty(), "an accepted message is not empty");
    assert_eq!(text, text.trim(), "an accepted message is trimmed");
    assert!(text.chars().count() <= MessageText::MAX_CHARS, "an accepted message is at most 4096 characters");
    assert_eq!(MessageText::parse(text).as_ref().map(MessageText::as_str), Ok(text), "parsing is idempotent");
    if let Some(id) = client_id {
        assert!(id.chars().count() <= MAX_CLIENT_ID_CHARS);
    }
    assert_eq!(value["message"].as_str().map(str::trim), Some(text));
    assert_eq!(value.get("client_id").and_then(|c| c.as_str()), client_id);
}

/// The message frame built for the accepted text: the sender's copy (the
/// shared bytes with `client_id` spliced in) is the frame serialised with
/// it, and both read back as the text sent.
fn outbound_carries_it(text: &MessageText, client_id: Option<&str>, data: &[u8]) {
    // Any timestamp, even past year 9999, must format.
    let mut ts = [0u8; 8];
    ts.iter_mut().zip(data).for_each(|(t, d)| *t = *d);
    let message = Message::posted(MessageId(data.len() as u64), "lobby", "alice", text.as_str(), u64::from_le_bytes(ts));
    let shared = frames::message_bytes(&message, None);
    let read: MessageFrame = serde_json::from_slice(&shared).expect("a message frame is JSON");
    assert_eq!(read, MessageFrame::of(&message, None));
    assert_eq!(read.message.as_deref(), Some(text.as_str()));
    if let Some(id) = client_id {
        let own = frames::with_client_id(&shared, id);
        assert_eq!(own, frames::message_bytes(&message, Some(id)), "the spliced copy is the serialised one");
        let read: MessageFrame = serde_json::from_slice(&own).expect("the sender's copy is JSON");
        assert_eq!(read.client_id.as_deref(), Some(id));
    }
}
