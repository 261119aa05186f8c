//! What the log carries: every change to shared state as one `Write`, and
//! what applying it came to.

use serde::{Deserialize, Serialize};

use crate::domain::{Conversation, MessageId, MessageText, SessionHash, Username};
use crate::storage::{Message, SessionRecord, UserRecord};

/// One change, in the validated types of `domain`: a write read from the
/// cluster's stream is checked as it is decoded, so one that breaks a rule
/// never reaches storage. Serialised into the stream with each value as
/// the plain string it always was, so fields are only ever added (with
/// defaults), never renamed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Write {
    /// A new account; with `only_if_first`, only while there is none (setup).
    CreateUser {
        /// The account, its password already hashed by the submitting node.
        user: UserRecord,
        /// Refuse (`SetupClosed`) if any account exists: the setup page's race.
        only_if_first: bool,
    },
    /// Deactivating ends every session of the account; activating lets it sign in again.
    SetUserActive {
        /// The account, exactly as stored.
        username: Username,
        /// `false` deactivates.
        active: bool,
    },
    /// A signed-in session, under the hash of its cookie's token.
    CreateSession {
        /// The key: the token itself never enters the log.
        token_hash: SessionHash,
        /// Whose session it is and when it expires.
        session: SessionRecord,
    },
    /// Signing out.
    DeleteSession {
        /// The session to end; its sockets close too.
        token_hash: SessionHash,
    },
    /// A user enters a conversation (it is created with its first member).
    Join {
        /// Who joins (with the peer too, for a direct chat).
        username: Username,
        /// The room or direct chat.
        conversation: Conversation,
    },
    /// A chat message; it gets its id when applied.
    Message {
        /// Where it is posted.
        conversation: Conversation,
        /// The signed-in sender.
        author: Username,
        /// Already trimmed and checked.
        text: MessageText,
        /// When the accepting node took it (Unix ms): every node stores this same time.
        ts_ms: u64,
    },
    /// An edit of a message by its author; it gets an id of its own when
    /// applied, in the conversation's order.
    Edit {
        /// Where the message is.
        conversation: Conversation,
        /// Who edits: refused unless it is the message's author.
        editor: Username,
        /// The message edited.
        target: MessageId,
        /// The new text, already trimmed and checked.
        text: MessageText,
        /// When the accepting node took it (Unix ms).
        ts_ms: u64,
    },
    /// A deletion by the message's author or a superuser; it gets an id of its own.
    Delete {
        /// Where the message is.
        conversation: Conversation,
        /// Who deletes: the author, or an active superuser.
        deleter: Username,
        /// The message deleted.
        target: MessageId,
        /// When the accepting node took it (Unix ms).
        ts_ms: u64,
    },
    /// Moves a user's read marker forward (never back).
    Read {
        /// Whose marker.
        username: Username,
        /// In which conversation.
        conversation: Conversation,
        /// The id read up to: one the conversation holds.
        up_to: MessageId,
    },
    /// A new password (`chatctl changepassword`, the admin page, or the
    /// user's own `POST /api/password`): every session of the user ends,
    /// but `keep_session`, and their sockets close with "signed out".
    SetPassword {
        /// The account, exactly as stored.
        username: Username,
        /// The new PHC string, hashed where it was submitted: the password never enters the log.
        password_hash: String,
        /// The session that changed its own password stays signed in (with
        /// its sockets); `None` ends them all. Absent from the wire when
        /// `None`, so the record reads as it did before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_session: Option<SessionHash>,
    },
    /// Written by a cluster node when it connects: reading its own marker
    /// back means it has applied everything written before.
    Marker,
    /// Stands in for a write this version cannot read (from a newer
    /// chatctl, or one that breaks a rule): applied as nothing, so that its
    /// writer's later writes, which must apply in seq order, are not held
    /// back behind it. Never written to the stream.
    #[serde(skip)]
    Unreadable,
}

/// A write as it travels through the stream: `node` is the writing
/// process's random id and `seq` counts its writes, so a write published
/// twice (after a lost confirm) is applied once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The writing process's random id, drawn at start, so processes do not share one.
    pub node: u64,
    /// Counts the writer's writes from 1; a seq at or below the highest applied is a duplicate.
    pub seq: u64,
    /// The change.
    pub write: Write,
}

/// Writes in one stream record at most. The writes of the record at offset
/// `o` take the positions `o * RECORD_SLOTS + index`: unique, and in stream
/// order, so a message's id still says where it is in the one order.
pub const RECORD_SLOTS: u64 = crate::storage::IDS_PER_STREAM_RECORD;

/// A record's bytes at most, unless a single write is larger.
pub const RECORD_BYTES: usize = 512 * 1024;

/// Many writes travel in one stream record, a JSON array of envelopes,
/// because RabbitMQ's cost is per record: publishing, confirming, storing
/// and delivering to every node. `envelopes` are serialised `Envelope`s.
pub fn encode_record<'a>(envelopes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut record = vec![b'['];
    for (index, envelope) in envelopes.into_iter().enumerate() {
        if index > 0 {
            record.push(b',');
        }
        record.extend_from_slice(envelope);
    }
    record.push(b']');
    record
}

/// A stream record, decoded.
pub struct Record {
    /// A bare envelope, as chatctl wrote before records held many writes.
    lone: bool,
    /// In record order. `None`: not a write at all (no node and seq), skipped
    /// in its place so that its neighbours keep their positions.
    pub writes: Vec<Option<Envelope>>,
}

impl Record {
    /// None if this is not a chatctl record. A write this version cannot
    /// read (one from a newer chatctl) comes back as `Write::Unreadable`.
    pub fn decode(data: &[u8]) -> Option<Record> {
        if data.first() != Some(&b'[') {
            let envelope = serde_json::from_slice::<Envelope>(data).ok()?;
            return Some(Record { lone: true, writes: vec![Some(envelope)] });
        }
        if let Ok(envelopes) = serde_json::from_slice::<Vec<Envelope>>(data) {
            return Some(Record { lone: false, writes: envelopes.into_iter().map(Some).collect() });
        }
        // Slow path, only for a record holding something unreadable.
        let values: Vec<serde_json::Value> = serde_json::from_slice(data).ok()?;
        let writes = values.into_iter().map(|value| {
            serde_json::from_value::<Envelope>(value.clone()).ok().or_else(|| {
                let node = value.get("node")?.as_u64()?;
                let seq = value.get("seq")?.as_u64()?;
                Some(Envelope { node, seq, write: Write::Unreadable })
            })
        });
        Some(Record { lone: false, writes: writes.collect() })
    }

    /// The record's writes, each with its index and position (a message's
    /// id); past `RECORD_SLOTS` there are no positions left, and the rest is
    /// dropped.
    pub fn into_positioned(self, offset: u64) -> impl Iterator<Item = (usize, u64, Option<Envelope>)> {
        let lone = self.lone;
        self.writes
            .into_iter()
            .enumerate()
            .take(RECORD_SLOTS as usize)
            .map(move |(index, write)| (index, position(lone, offset, index), write))
    }
}

/// Where the `index`th write of the record at stream `offset` stands. A lone
/// envelope keeps the id it had when records held one write, its offset, so
/// every node numbers old history alike; an array's writes take
/// `offset * RECORD_SLOTS + index`, above every id before them.
fn position(lone: bool, offset: u64, index: usize) -> u64 {
    if lone {
        offset
    } else {
        offset.saturating_mul(RECORD_SLOTS).saturating_add(index as u64)
    }
}

/// What applying a write came to.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Done; nothing to report (a session, a join, a user created or changed).
    Applied,
    /// The message (or edit, or deletion) is stored with its id; the fan-out delivers it.
    Stored(Message),
    /// An edit or deletion refused: no such message in the conversation, or it is deleted.
    NotFound,
    /// An edit or deletion refused: the message is someone else's.
    Forbidden,
    /// A read marker moved; the fan-out tells the user's sockets.
    MarkerMoved,
    /// A read marker stayed: it already stood there or further on.
    MarkerNotForward,
    /// A read marker refused: the conversation holds no such id.
    NoSuchEntry,
    /// `CreateUser` refused: the name is held in some ASCII case.
    UsernameTaken,
    /// `CreateUser` with `only_if_first` refused: an account already exists.
    SetupClosed,
    /// `SetUserActive` or `SetPassword` for an account that does not exist.
    NoSuchUser,
    /// Already applied once (a republished write).
    Duplicate,
    /// Ahead of an earlier write of the same writer that is not applied
    /// yet; it comes again, in order, when the writer resends.
    OutOfOrder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_round_trip_through_json() {
        let write = Write::Message {
            conversation: Conversation::from_key("lobby").unwrap(),
            author: Username::parse("a").unwrap(),
            text: MessageText::parse("hi").unwrap(),
            ts_ms: 5,
        };
        let envelope = Envelope { node: 7, seq: 9, write: write.clone() };
        let bytes = serde_json::to_vec(&envelope).unwrap();
        // The wire form is what it was when every field was a string.
        let wire: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            wire["write"],
            serde_json::json!({"op": "message", "conversation": "lobby", "author": "a", "text": "hi", "ts_ms": 5})
        );
        let back: Envelope = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((back.node, back.seq, back.write), (7, 9, write));
        let hash = SessionHash([0xab; 32]);
        assert_eq!(SessionHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(SessionHash::from_hex("zz"), None);
        assert_eq!(SessionHash::from_hex(&"+a".repeat(32)), None, "a sign is not a hex digit");
    }

    #[test]
    fn a_password_write_without_a_kept_session_keeps_its_old_wire_form() {
        let username = Username::parse("a").unwrap();
        let old = serde_json::json!({"op": "set_password", "username": "a", "password_hash": "$h"});
        let all = Write::SetPassword { username: username.clone(), password_hash: "$h".into(), keep_session: None };
        assert_eq!(serde_json::to_value(&all).unwrap(), old, "None adds no field");
        assert_eq!(serde_json::from_value::<Write>(old).unwrap(), all, "a record from before the field reads as None");
        let hash = SessionHash([7; 32]);
        let one = Write::SetPassword { username, password_hash: "$h".into(), keep_session: Some(hash) };
        let wire = serde_json::to_value(&one).unwrap();
        assert_eq!(wire["keep_session"], hash.to_hex());
        assert_eq!(serde_json::from_value::<Write>(wire).unwrap(), one);
        let bad =
            serde_json::json!({"op": "set_password", "username": "a", "password_hash": "$h", "keep_session": "zz"});
        assert!(serde_json::from_value::<Write>(bad).is_err(), "a kept session must be 64 hex digits");
    }

    #[test]
    fn a_record_carries_many_envelopes_and_a_lone_envelope_is_a_record_of_one() {
        let envelopes: Vec<Vec<u8>> =
            (1..=3).map(|seq| serde_json::to_vec(&Envelope { node: 7, seq, write: Write::Marker }).unwrap()).collect();
        let record = Record::decode(&encode_record(envelopes.iter().map(Vec::as_slice))).unwrap();
        let read: Vec<(u64, u64)> = record.into_positioned(5).map(|(_, at, e)| (at, e.unwrap().seq)).collect();
        assert_eq!(read, [(5 * RECORD_SLOTS, 1), (5 * RECORD_SLOTS + 1, 2), (5 * RECORD_SLOTS + 2, 3)]);
        assert!(position(false, 6, 0) > position(false, 5, RECORD_SLOTS as usize - 1));
        // A lone envelope keeps the id it always had: its offset.
        let lone: Vec<u64> = Record::decode(&envelopes[0]).unwrap().into_positioned(5).map(|(_, at, _)| at).collect();
        assert_eq!(lone, [5]);
        assert!(position(false, 6, 0) > 5);
        assert!(Record::decode(b"not a write").is_none());
        // A write from a newer version keeps its place and its seq; garbage keeps its place.
        let newer = br#"{"node":7,"seq":4,"write":{"op":"something_new"}}"#;
        let mixed = encode_record([envelopes[0].as_slice(), newer.as_slice(), b"17", envelopes[2].as_slice()]);
        let decoded = Record::decode(&mixed).unwrap();
        let seen: Vec<_> = decoded.writes.iter().map(|e| e.as_ref().map(|e| (e.seq, e.write.clone()))).collect();
        assert_eq!(seen, [Some((1, Write::Marker)), Some((4, Write::Unreadable)), None, Some((3, Write::Marker))]);
    }

    #[test]
    fn a_write_that_breaks_a_rule_is_refused_as_it_is_decoded() {
        let bad = [
            br#"{"node":7,"seq":1,"write":{"op":"message","conversation":"no spaces","author":"a","text":"hi","ts_ms":1}}"#.as_slice(),
            br#"{"node":7,"seq":2,"write":{"op":"message","conversation":"r","author":"a b","text":"hi","ts_ms":1}}"#,
            br#"{"node":7,"seq":3,"write":{"op":"message","conversation":"r","author":"a","text":"   ","ts_ms":1}}"#,
            br#"{"node":7,"seq":4,"write":{"op":"join","username":"a","conversation":"dm:a"}}"#,
            br#"{"node":7,"seq":5,"write":{"op":"delete_session","token_hash":"abc"}}"#,
        ];
        let decoded = Record::decode(&encode_record(bad)).unwrap();
        let seen: Vec<_> = decoded.writes.into_iter().map(|e| e.map(|e| (e.seq, e.write))).collect();
        let unreadable: Vec<_> = (1..=5).map(|seq| Some((seq, Write::Unreadable))).collect();
        assert_eq!(seen, unreadable, "each keeps its place and seq, applied as nothing");
    }
}
