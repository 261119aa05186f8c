//! The JSON frames of PROTOCOL.md: parsing and validating what clients send,
//! and serialising what the server sends (once per frame, shared by every
//! recipient).

use bytes::Bytes;
use serde::Serialize;

use crate::domain::{Conversation, MessageId, MessageText, TextError, Username};
use crate::storage::{ConversationSummary, EntryKind, Message, PageEnd, PageFrom};

/// The most bytes one client message may have, whole or reassembled.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The longest `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// A valid client frame. Its `type` decides what it is; only a frame
/// without one is a message (the seed's frame).
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `{"message"}`: a new message.
    Message {
        /// The trimmed text, already within PROTOCOL.md's limits.
        text: MessageText,
        /// The client's own tag, echoed on its copy of the stored message and on any error frame.
        client_id: Option<String>,
    },
    /// `{"type": "typing"}`: the user is typing here.
    Typing,
    /// `{"type": "read", "up_to", "room"?}`: move the user's read marker.
    Read {
        /// The conversation key; required on the user socket, ignored elsewhere.
        room: Option<String>,
        /// The id read up to.
        up_to: MessageId,
    },
    /// `{"type": "edit", "target", "message"}`: new text for one's own message.
    Edit {
        /// The message to edit.
        target: MessageId,
        /// Its new text, trimmed and checked as a message's.
        text: MessageText,
        /// Echoed on the sender's copy of the `edit` event.
        client_id: Option<String>,
    },
    /// `{"type": "delete", "target"}`: delete a message.
    Delete {
        /// The message to delete.
        target: MessageId,
        /// Echoed on the sender's copy of the `delete` event.
        client_id: Option<String>,
    },
}

impl Inbound {
    /// Whether the frame counts against the user's message rate (typing and markers do not).
    pub fn is_rated(&self) -> bool {
        matches!(self, Inbound::Message { .. } | Inbound::Edit { .. } | Inbound::Delete { .. })
    }
}

/// Why a frame was refused; `code()` is the stable wire code.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `bad_json`: not JSON at all.
    BadJson,
    /// `bad_frame`, with what was wrong: JSON, but not the frame PROTOCOL.md describes.
    BadFrame(&'static str),
    /// `empty`: nothing left after trimming white space.
    Empty,
    /// `too_long`: over `MessageText::MAX_CHARS` after trimming.
    TooLong,
    /// `rate_limited`: over the user's message rate on this node.
    RateLimited,
    /// `unavailable`: the log could not store it (storage or broker down); nothing was stored.
    Unavailable,
    /// `forbidden`: an edit or deletion of someone else's message.
    Forbidden,
    /// `not_found`: an edit or deletion of a message this conversation does not hold (or a deleted one).
    NotFound,
}

impl Refusal {
    /// The `code` of the error frame: stable, for clients to match on.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadJson => "bad_json",
            Refusal::BadFrame(_) => "bad_frame",
            Refusal::Empty => "empty",
            Refusal::TooLong => "too_long",
            Refusal::RateLimited => "rate_limited",
            Refusal::Unavailable => "unavailable",
            Refusal::Forbidden => "forbidden",
            Refusal::NotFound => "not_found",
        }
    }

    /// The `detail` of the error frame: for a person, saying what to change or when to retry.
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
            Refusal::Forbidden => "only its author may edit a message, and its author or an admin delete it".to_owned(),
            Refusal::NotFound => "no such message in this conversation (it may have been deleted)".to_owned(),
        }
    }
}

/// A refused frame: why, and its `client_id` when it had a valid one, so
/// the error frame can name the message it refuses.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    /// Why it was refused.
    pub refusal: Refusal,
    /// The frame's `client_id`, when it had a valid one, for the error frame to echo.
    pub client_id: Option<String>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Refused { refusal, client_id: None }
    }
}

/// Parses and validates one client text frame; past this, the socket trusts it.
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
    let kind = match object.remove("type") {
        None => None,
        Some(serde_json::Value::String(kind)) => Some(kind),
        Some(_) => return Err(refused(Refusal::BadFrame("\"type\" must be a string"))),
    };
    let text = |object: &mut serde_json::Map<String, serde_json::Value>| {
        let Some(serde_json::Value::String(message)) = object.remove("message") else {
            return Err(refused(Refusal::BadFrame("a frame needs a string \"message\"")));
        };
        MessageText::parse(&message).map_err(|e| match e {
            TextError::Empty => refused(Refusal::Empty),
            TextError::TooLong => refused(Refusal::TooLong),
        })
    };
    let id = |object: &mut serde_json::Map<String, serde_json::Value>, field: &'static str, why: &'static str| {
        match object.remove(field) {
            Some(serde_json::Value::String(raw)) => MessageId::parse(&raw),
            Some(serde_json::Value::Number(n)) => n.as_u64().map(MessageId),
            _ => None,
        }
        .ok_or_else(|| refused(Refusal::BadFrame(why)))
    };
    const BAD_TARGET: &str = "\"target\" must be a message id";
    match kind.as_deref() {
        None => Ok(Inbound::Message { text: text(&mut object)?, client_id }),
        Some("typing") => Ok(Inbound::Typing),
        Some("read") => {
            let up_to = id(&mut object, "up_to", "\"up_to\" must be a message id")?;
            let room = match object.remove("room") {
                None => None,
                Some(serde_json::Value::String(room)) => Some(room),
                Some(_) => return Err(refused(Refusal::BadFrame("\"room\" must be a string"))),
            };
            Ok(Inbound::Read { room, up_to })
        }
        Some("edit") => {
            let target = id(&mut object, "target", BAD_TARGET)?;
            Ok(Inbound::Edit { target, text: text(&mut object)?, client_id })
        }
        Some("delete") => Ok(Inbound::Delete { target: id(&mut object, "target", BAD_TARGET)?, client_id }),
        Some(_) => Err(refused(Refusal::BadFrame(
            "unknown frame type: send a message without \"type\", or one of typing, read, edit, delete",
        ))),
    }
}

/// The wire form of one conversation entry: a message (`chat_handler`),
/// or an `edit` or `delete` event.
#[derive(Serialize, Debug, PartialEq, Eq, serde::Deserialize, Clone)]
pub struct MessageFrame {
    /// `chat_handler`, `edit` or `delete`: the type clients switch on.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entry's id as 20 zero-padded digits, so ids also sort as strings.
    pub id: String,
    /// The conversation key: a room name, or `dm:a:b` for a direct chat.
    pub room: String,
    /// An edit or deletion: the id of the message it changes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// The sender (an edit: the editor; a deletion: who deleted).
    pub author: String,
    /// The text as it now stands (an edit: the new text); a deletion has none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    /// When the entry was accepted, as RFC 3339 with milliseconds.
    pub ts: String,
    /// An edited message in a history: when it was last edited.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edited: Option<String>,
    /// Only on the sender's own copy, so it can match the entry to what it sent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
}

impl MessageFrame {
    /// The frame of a stored entry, for history pages and the inbox (live
    /// frames use `message_bytes`).
    pub fn of(message: &Message, client_id: Option<&str>) -> Self {
        let (kind, target, text, edited) = match message.kind {
            EntryKind::Message { edited_ms } => ("chat_handler", None, Some(&message.text), edited_ms.map(rfc3339)),
            EntryKind::Edit { target } => ("edit", Some(target), Some(&message.text), None),
            EntryKind::Delete { target } => ("delete", Some(target), None, None),
        };
        MessageFrame {
            kind: kind.to_owned(),
            id: message.id.to_string(),
            room: message.conversation.clone(),
            target: target.map(|id| id.to_string()),
            author: message.author.clone(),
            message: text.cloned(),
            ts: rfc3339(message.ts_ms),
            edited,
            client_id: client_id.map(str::to_owned),
        }
    }
}

/// `{"type": "read", "room", "up_to"}`: the user's own marker moved.
pub fn read_bytes(room: &str, up_to: MessageId) -> Bytes {
    to_bytes(&serde_json::json!({"type": "read", "room": room, "up_to": up_to.to_string()}))
}

/// `{"type": "presence", "online": [...]}`: a conversation's online members, after its history.
pub fn presence_list_bytes(online: &[String]) -> Bytes {
    to_bytes(&serde_json::json!({"type": "presence", "online": online}))
}

/// `{"type": "presence", "user", "online"}`: one user came online or went offline.
pub fn presence_bytes(user: &str, online: bool) -> Bytes {
    to_bytes(&serde_json::json!({"type": "presence", "user": user, "online": online}))
}

/// `{"type": "typing", "room", "user"}`.
pub fn typing_bytes(room: &str, user: &str) -> Bytes {
    to_bytes(&serde_json::json!({"type": "typing", "room": room, "user": user}))
}

/// The inbox object of `GET /api/inbox` (and, with `"type": "inbox"`, the
/// user socket's first frame): `summaries` most recently active first.
pub fn inbox(me: &Username, summaries: &[ConversationSummary], online: &[String]) -> serde_json::Value {
    let conversations: Vec<serde_json::Value> = summaries
        .iter()
        .map(|summary| {
            let (kind, name) = match &summary.conversation {
                Conversation::Room(room) => ("room", room.as_str()),
                direct => ("direct", direct.peer_of(me).map(Username::as_str).unwrap_or_default()),
            };
            serde_json::json!({
                "kind": kind,
                "name": name,
                "room": summary.conversation.key(),
                "latest": summary.latest.as_ref().map(|m| MessageFrame::of(m, None)),
                "read_up_to": summary.read.read_up_to.map(|id| id.to_string()),
                "unread": summary.read.unread,
            })
        })
        .collect();
    serde_json::json!({"conversations": conversations, "online": online})
}

/// Unix milliseconds as the RFC 3339 of frames and pages; clamped, so a bad clock cannot panic.
pub fn rfc3339(ts_ms: u64) -> String {
    // humantime cannot format past year 9999: a bad clock (or a bad stream
    // record) must not take the server down.
    const LAST_MS_OF_9999: u64 = 253_402_300_799_999;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts_ms.min(LAST_MS_OF_9999));
    humantime::format_rfc3339_millis(at).to_string()
}

/// A message's frame serialised once; the hub shares these bytes with every recipient.
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

/// The most bytes of JSON in one `history` frame or history API page
/// (PROTOCOL.md): a page stops before the message that would pass it.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// What `"more": true` adds at the end of a page; room for it is kept from
/// the start, so a page never passes the cap whatever it ends with.
const MORE_TAIL: &[u8] = b"],\"more\":true}";

/// A page of message frames (a `history` frame or a history API page) built
/// as storage reads it: each message is serialised once, and refused once it
/// would take the page past `MAX_PAGE_BYTES`, so the reader stops there.
pub struct PageBuilder {
    head: &'static [u8],
    /// Messages arrive newest first (a `before` page) and are put back in
    /// oldest-first order at the end.
    newest_first: bool,
    /// The serialised frames in arrival order, without separators.
    body: Vec<u8>,
    /// Where each frame of `body` ends.
    ends: Vec<usize>,
}

impl PageBuilder {
    /// `{"type":"history","messages":[...]}` for a socket.
    pub fn history(from: PageFrom) -> Self {
        Self::new(b"{\"type\":\"history\",\"messages\":[", from)
    }

    /// `{"messages":[...]}` for the history API.
    pub fn api(from: PageFrom) -> Self {
        Self::new(b"{\"messages\":[", from)
    }

    fn new(head: &'static [u8], from: PageFrom) -> Self {
        let newest_first = matches!(from, PageFrom::Before(_));
        PageBuilder { head, newest_first, body: Vec::new(), ends: Vec::new() }
    }

    /// Adds `message` if the page stays within `MAX_PAGE_BYTES`; false (and
    /// the page unchanged) when it does not fit.
    pub fn push(&mut self, message: &Message) -> bool {
        let start = self.body.len();
        serde_json::to_writer(&mut self.body, &MessageFrame::of(message, None)).expect("frames serialise infallibly");
        let commas = self.ends.len();
        if self.head.len() + self.body.len() + commas + MORE_TAIL.len() > MAX_PAGE_BYTES {
            self.body.truncate(start);
            return false;
        }
        self.ends.push(self.body.len());
        true
    }

    /// The page's JSON, oldest first, with `"more": true` when `more`.
    pub fn finish(self, more: bool) -> Bytes {
        let tail: &[u8] = if more { MORE_TAIL } else { b"]}" };
        let mut out = Vec::with_capacity(self.head.len() + self.body.len() + self.ends.len() + tail.len());
        out.extend_from_slice(self.head);
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        let mut frames: Vec<_> = starts.zip(self.ends.iter().copied()).collect();
        if self.newest_first {
            frames.reverse();
        }
        for (i, (start, end)) in frames.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.body[start..end]);
        }
        out.extend_from_slice(tail);
        Bytes::from(out)
    }
}

/// Whether a page says `"more": true`. Read oldest first (`since`, `after`),
/// a page says so whenever newer messages are left, whether `limit` or the
/// byte cap stopped it: the client goes on with `after=<last id>`. Read
/// newest first (no `since`, `before`), it says so only when the byte cap
/// left out older messages that `limit` would have served: the client goes
/// on with `before=<first id>`; a page that got its `limit` says nothing of
/// older messages, as before the cap existed.
pub fn page_has_more(from: PageFrom, end: PageEnd) -> bool {
    match from {
        PageFrom::After(_) => end != PageEnd::Exhausted,
        PageFrom::Before(_) => end == PageEnd::Full,
    }
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
        let Inbound::Message { text, client_id } = ok else { panic!("a frame without type is a message") };
        assert_eq!(text.as_str(), "hi");
        assert_eq!(client_id.as_deref(), Some("c1"));
    }

    #[test]
    fn timestamps_past_year_9999_are_clamped_not_fatal() {
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_senders_copy_is_the_shared_frame_plus_its_client_id() {
        let m = Message::posted(MessageId(7), "r", "a", "t", 1);
        for client_id in ["c-1", "quote\" and \\ back", "\u{e9}\u{1F600}"] {
            let spliced = with_client_id(&message_bytes(&m, None), client_id);
            assert_eq!(spliced, message_bytes(&m, Some(client_id)), "{client_id}");
        }
    }

    fn numbered(id: u64, text: &str) -> Message {
        Message::posted(MessageId(id), "r", "a", text, 1)
    }

    #[test]
    fn a_page_is_oldest_first_whichever_way_it_was_read() {
        let (one, two) = (numbered(1, "one"), numbered(2, "two"));
        let expected = format!(
            "{{\"type\":\"history\",\"messages\":[{},{}]}}",
            std::str::from_utf8(&message_bytes(&one, None)).unwrap(),
            std::str::from_utf8(&message_bytes(&two, None)).unwrap()
        );
        let mut newest_first = PageBuilder::history(PageFrom::Before(None));
        assert!(newest_first.push(&two) && newest_first.push(&one));
        assert_eq!(newest_first.finish(false), expected.as_bytes());
        let mut oldest_first = PageBuilder::api(PageFrom::After(MessageId(0)));
        assert!(oldest_first.push(&one) && oldest_first.push(&two));
        let v: serde_json::Value = serde_json::from_slice(&oldest_first.finish(true)).unwrap();
        assert_eq!(ids(&v), ["00000000000000000001", "00000000000000000002"]);
        assert_eq!(v["more"], true);
        let empty = PageBuilder::history(PageFrom::Before(None)).finish(false);
        assert_eq!(empty, &b"{\"type\":\"history\",\"messages\":[]}"[..]);
    }

    fn ids(page: &serde_json::Value) -> Vec<&str> {
        page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_page_refuses_the_message_that_would_pass_1_mib() {
        // Quotes and control characters grow under JSON escaping: the cap
        // counts the escaped bytes.
        let text: String = "\u{1F600}\"\u{1}".repeat(4096 / 3);
        let mut page = PageBuilder::history(PageFrom::After(MessageId(0)));
        let mut taken = 0;
        while page.push(&numbered(taken + 1, &text)) {
            taken += 1;
        }
        assert!(taken > 10, "only {taken} messages fit");
        let bytes = page.finish(true);
        assert!(bytes.len() <= MAX_PAGE_BYTES, "{} bytes", bytes.len());
        assert!(bytes.len() > MAX_PAGE_BYTES - message_bytes(&numbered(1, &text), None).len() - 16);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len() as u64, taken);
        assert_eq!(v["messages"][0]["message"], text.as_str());
    }

    #[test]
    fn more_means_newer_left_after_and_cut_short_before() {
        let (after, before) = (PageFrom::After(MessageId(3)), PageFrom::Before(None));
        assert!(!page_has_more(after, PageEnd::Exhausted));
        assert!(page_has_more(after, PageEnd::Limit) && page_has_more(after, PageEnd::Full));
        assert!(!page_has_more(before, PageEnd::Exhausted) && !page_has_more(before, PageEnd::Limit));
        assert!(page_has_more(before, PageEnd::Full));
    }

    #[test]
    fn message_frames_have_every_protocol_field() {
        let m = Message::posted(MessageId(42), "lobby", "al", "<b>", 1_700_000_000_123);
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

    #[test]
    fn the_type_decides_what_a_frame_is() {
        let parse = |raw: &str| parse_inbound(raw.as_bytes());
        assert_eq!(parse(r#"{"type": "typing"}"#), Ok(Inbound::Typing));
        let edit =
            parse(r#"{"type": "edit", "target": "00000000000000000007", "message": " new ", "client_id": "e1"}"#);
        assert_eq!(
            edit,
            Ok(Inbound::Edit {
                target: MessageId(7),
                text: MessageText::parse("new").unwrap(),
                client_id: Some("e1".into())
            })
        );
        assert_eq!(
            parse(r#"{"type": "delete", "target": "9"}"#),
            Ok(Inbound::Delete { target: MessageId(9), client_id: None })
        );
        assert_eq!(parse(r#"{"type": "read", "up_to": "5"}"#), Ok(Inbound::Read { room: None, up_to: MessageId(5) }));
        assert_eq!(
            parse(r#"{"type": "read", "room": "dm:a:b", "up_to": "5"}"#),
            Ok(Inbound::Read { room: Some("dm:a:b".into()), up_to: MessageId(5) })
        );
        let code = |raw: &str| parse(raw).unwrap_err().refusal.code();
        // The frame the seed stored as a message because it carried "message".
        assert_eq!(code(r#"{"type": "edit", "target": "x", "message": "hi"}"#), "bad_frame");
        assert_eq!(code(r#"{"type": "shout", "message": "hi"}"#), "bad_frame");
        assert_eq!(code(r#"{"type": 3, "message": "hi"}"#), "bad_frame");
        assert_eq!(code(r#"{"type": "read"}"#), "bad_frame");
        assert_eq!(code(r#"{"type": "edit", "target": "1", "message": "  "}"#), "empty");
        let refused = parse(r#"{"type": "delete", "client_id": "d1"}"#).unwrap_err();
        assert_eq!(refused.client_id.as_deref(), Some("d1"), "a refusal names the frame's client_id");
    }

    #[test]
    fn edits_and_deletions_have_their_own_frames() {
        let mut edit = Message::posted(MessageId(8), "r", "al", "new", 1);
        edit.kind = EntryKind::Edit { target: MessageId(7) };
        let v: serde_json::Value = serde_json::from_slice(&message_bytes(&edit, Some("c"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "edit", "id": "00000000000000000008", "room": "r", "target": "00000000000000000007",
                "author": "al", "message": "new", "ts": "1970-01-01T00:00:00.001Z", "client_id": "c"})
        );
        let mut deletion = Message::posted(MessageId(9), "r", "root", "", 1);
        deletion.kind = EntryKind::Delete { target: MessageId(7) };
        let v: serde_json::Value = serde_json::from_slice(&message_bytes(&deletion, None)).unwrap();
        assert_eq!((v["type"].as_str(), v.get("message")), (Some("delete"), None));
        let mut edited = Message::posted(MessageId(7), "r", "al", "new", 1);
        edited.kind = EntryKind::Message { edited_ms: Some(2) };
        let v: serde_json::Value = serde_json::from_slice(&message_bytes(&edited, None)).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["edited"].as_str()),
            (Some("chat_handler"), Some("1970-01-01T00:00:00.002Z"))
        );
    }
}
