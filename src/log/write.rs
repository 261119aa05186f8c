//! What the log carries: every change to shared state as one `Write`, and
//! what applying it came to.

use serde::{Deserialize, Serialize};

use crate::storage::{Message, SessionRecord, UserRecord};

/// One change. Serialised into the cluster's stream, so fields are only
/// ever added (with defaults), never renamed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Write {
    /// A new account; with `only_if_first`, only while there is none (setup).
    CreateUser {
        user: UserRecord,
        only_if_first: bool,
    },
    SetUserActive {
        username: String,
        active: bool,
    },
    /// `token_hash` is hex: the SHA-256 of the cookie token.
    CreateSession {
        token_hash: String,
        session: SessionRecord,
    },
    DeleteSession {
        token_hash: String,
    },
    Join {
        username: String,
        conversation: String,
    },
    Message {
        conversation: String,
        author: String,
        text: String,
        ts_ms: u64,
    },
    /// Written by a cluster node when it connects: reading its own marker
    /// back means it has applied everything written before.
    Marker,
}

/// A write as it travels through the stream: `node` is the writing
/// process's random id and `seq` counts its writes, so a write published
/// twice (after a lost confirm) is applied once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub node: u64,
    pub seq: u64,
    pub write: Write,
}

/// Writes in one stream record at most. The writes of the record at offset
/// `o` take the positions `o * RECORD_SLOTS + index`: unique, and in stream
/// order, so a message's id still says where it is in the one order.
pub const RECORD_SLOTS: u64 = 1024;

/// A record's bytes at most, unless a single write is larger.
pub const RECORD_BYTES: usize = 512 * 1024;

/// The position of the `index`th write of the record at stream `offset`.
pub fn position(offset: u64, index: usize) -> u64 {
    offset.saturating_mul(RECORD_SLOTS).saturating_add(index as u64)
}

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

/// A record's envelopes, in order; a lone envelope (not an array) is a
/// record of one. None if this is not a chatctl record. An element is None
/// where this version cannot read that write (one from a newer chatctl):
/// it is skipped in its place, and its neighbours keep their positions.
pub fn decode_record(data: &[u8]) -> Option<Vec<Option<Envelope>>> {
    if data.first() != Some(&b'[') {
        return serde_json::from_slice::<Envelope>(data).ok().map(|envelope| vec![Some(envelope)]);
    }
    if let Ok(envelopes) = serde_json::from_slice::<Vec<Envelope>>(data) {
        return Some(envelopes.into_iter().map(Some).collect());
    }
    // Slow path, only for a record holding something unreadable.
    let values: Vec<serde_json::Value> = serde_json::from_slice(data).ok()?;
    Some(values.into_iter().map(|value| serde_json::from_value(value).ok()).collect())
}

/// What applying a write came to.
#[derive(Clone, Debug)]
pub enum Outcome {
    Applied,
    Stored(Message),
    UsernameTaken,
    SetupClosed,
    NoSuchUser,
    /// Already applied once (a republished write).
    Duplicate,
    /// Ahead of an earlier write of the same writer that is not applied
    /// yet; it comes again, in order, when the writer resends.
    OutOfOrder,
}

pub fn hash_to_hex(hash: &[u8; 32]) -> String {
    crate::auth::session::hex(hash)
}

pub fn hash_from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_round_trip_through_json() {
        let write = Write::Message { conversation: "lobby".into(), author: "a".into(), text: "hi".into(), ts_ms: 5 };
        let envelope = Envelope { node: 7, seq: 9, write: write.clone() };
        let back: Envelope = serde_json::from_slice(&serde_json::to_vec(&envelope).unwrap()).unwrap();
        assert_eq!((back.node, back.seq, back.write), (7, 9, write));
        let hash = [0xab; 32];
        assert_eq!(hash_from_hex(&hash_to_hex(&hash)), Some(hash));
        assert_eq!(hash_from_hex("zz"), None);
    }

    #[test]
    fn a_record_carries_many_envelopes_and_a_lone_envelope_is_a_record_of_one() {
        let envelopes: Vec<Vec<u8>> =
            (1..=3).map(|seq| serde_json::to_vec(&Envelope { node: 7, seq, write: Write::Marker }).unwrap()).collect();
        let record = encode_record(envelopes.iter().map(Vec::as_slice));
        let seqs: Vec<u64> = decode_record(&record).unwrap().into_iter().map(|e| e.unwrap().seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(decode_record(&envelopes[0]).unwrap().len(), 1);
        assert!(decode_record(b"not a write").is_none());
        // A write from a newer version keeps its place; its neighbours are read.
        let newer = br#"{"node":7,"seq":4,"write":{"op":"something_new"}}"#;
        let mixed = encode_record([envelopes[0].as_slice(), newer.as_slice(), envelopes[2].as_slice()]);
        let decoded = decode_record(&mixed).unwrap();
        assert_eq!(decoded.iter().map(|e| e.as_ref().map(|e| e.seq)).collect::<Vec<_>>(), [Some(1), None, Some(3)]);
        assert!(position(5, 1) > position(5, 0) && position(6, 0) > position(5, RECORD_SLOTS as usize - 1));
    }
}
