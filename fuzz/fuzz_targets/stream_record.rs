//! The cluster's stream-record decoder (`log::write::Record`), twice per
//! input: the input's bytes as a record off the stream (anything a broker
//! could deliver), and the input read as a list of writes that are encoded
//! the way a node publishes them and must decode to the same envelopes.
//! Writes decode into `domain`'s validated types; what decodes must keep
//! their rules and re-encode to itself.

#![no_main]

use std::ops::ControlFlow;

use arbitrary::Unstructured;
use chatctl::domain::{Conversation, MessageId, MessageText, RoomName, SessionHash, Username};
use chatctl::log::write::{encode_record, Envelope, Record, Write, RECORD_SLOTS};
use chatctl::storage::{SessionRecord, UserRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut offset = [0u8; 8];
    offset.iter_mut().zip(data.iter().rev()).for_each(|(o, d)| *o = *d);
    if let Some(record) = Record::decode(data) {
        decoded(data, record, u64::from_le_bytes(offset));
    }
    if let Ok((envelopes, offset)) = published(&mut Unstructured::new(data)) {
        round_trip(&envelopes, offset);
    }
});

/// What any decoded record must be: a lone envelope only when it is not an
/// array, every write it holds keeps the domain's rules and re-encodes to
/// itself, and positions follow the record's order.
fn decoded(data: &[u8], record: Record, offset: u64) {
    let array = data.first() == Some(&b'[');
    if !array {
        assert!(record.writes.len() == 1 && record.writes[0].is_some(), "a lone envelope is one write");
    }
    for envelope in record.writes.iter().flatten() {
        keeps_the_rules(&envelope.write);
        if envelope.write == Write::Unreadable {
            assert!(array, "only an array element is unreadable");
            continue;
        }
        let bytes = serde_json::to_vec(envelope).expect("a decoded write serialises");
        let again = Record::decode(&bytes).expect("a re-encoded write decodes");
        assert_eq!(again.writes.len(), 1);
        assert_eq!(key(again.writes[0].as_ref().expect("it is a write")), key(envelope));
    }
    positions(record, offset, !array);
}

/// `into_positioned`: at most `RECORD_SLOTS` writes, in order, each at its
/// own position (a lone envelope at the offset itself).
fn positions(record: Record, offset: u64, lone: bool) {
    let count = record.writes.len();
    let positioned: Vec<(usize, u64)> = record.into_positioned(offset).map(|(index, at, _)| (index, at)).collect();
    assert_eq!(positioned.len(), count.min(RECORD_SLOTS as usize));
    for (expected, (index, at)) in positioned.iter().enumerate() {
        assert_eq!(*index, expected);
        if lone {
            assert_eq!(*at, offset);
        } else if offset < u64::MAX / RECORD_SLOTS {
            assert_eq!(*at, offset * RECORD_SLOTS + expected as u64);
        }
    }
    // Past 2^54 records positions saturate; no stream gets there.
    if !lone && offset < u64::MAX / RECORD_SLOTS {
        assert!(positioned.windows(2).all(|pair| pair[0].1 < pair[1].1), "positions increase");
    }
}

/// A decoded write holds only valid values: text trimmed and within
/// `MessageText`'s limit, names and conversation keys that parse back as
/// themselves, a session hash that is its own hex.
fn keeps_the_rules(write: &Write) {
    let name = |user: &Username| assert_eq!(Username::from_stored(user.as_str()).as_ref(), Ok(user));
    let conversation = |c: &Conversation| assert_eq!(Conversation::from_key(&c.key()).as_ref(), Some(c));
    let hash = |h: &SessionHash| assert_eq!(SessionHash::from_hex(&h.to_hex()), Some(*h));
    match write {
        Write::CreateUser { user, .. } => name(&user.username),
        Write::SetUserActive { username, .. } => name(username),
        Write::SetPassword { username, keep_session, .. } => {
            name(username);
            keep_session.iter().for_each(hash);
        }
        Write::CreateSession { token_hash, session } => {
            hash(token_hash);
            name(&session.username);
        }
        Write::DeleteSession { token_hash } => hash(token_hash),
        Write::Join { username, conversation: c } => {
            name(username);
            conversation(c);
        }
        Write::Message { conversation: c, author, text, .. } => {
            conversation(c);
            name(author);
            let text = text.as_str();
            assert!(!text.is_empty() && text == text.trim(), "{text:?}");
            assert!(text.chars().count() <= MessageText::MAX_CHARS);
        }
        Write::Edit { conversation: c, editor, text, .. } => {
            conversation(c);
            name(editor);
            let text = text.as_str();
            assert!(!text.is_empty() && text == text.trim(), "{text:?}");
            assert!(text.chars().count() <= MessageText::MAX_CHARS);
        }
        Write::Delete { conversation: c, deleter, .. } => {
            conversation(c);
            name(deleter);
        }
        Write::Read { username, conversation: c, .. } => {
            name(username);
            conversation(c);
        }
        Write::Marker | Write::Unreadable => {}
    }
}

fn key(envelope: &Envelope) -> (u64, u64, &Write) {
    (envelope.node, envelope.seq, &envelope.write)
}

/// Writes published as a node publishes them (serialised envelopes joined
/// by `encode_record`, or as older versions wrote, one bare envelope)
/// decode to the same envelopes, in order.
fn round_trip(envelopes: &[Envelope], offset: u64) {
    let bytes: Vec<Vec<u8>> =
        envelopes.iter().map(|e| serde_json::to_vec(e).expect("writes serialise infallibly")).collect();
    let sent: Vec<_> = envelopes.iter().map(|e| Some(key(e))).collect();
    let record = encode_record(bytes.iter().map(Vec::as_slice));
    let decoded = Record::decode(&record).expect("a published record decodes");
    assert_eq!(decoded.writes.iter().map(|w| w.as_ref().map(key)).collect::<Vec<_>>(), sent);
    positions(decoded, offset, false);
    if let [lone] = bytes.as_slice() {
        let decoded = Record::decode(lone).expect("a bare envelope decodes");
        assert_eq!(decoded.writes.iter().map(|w| w.as_ref().map(key)).collect::<Vec<_>>(), sent);
        positions(decoded, offset, true);
    }
}

/// Up to 64 envelopes of every kind of `Write` a node publishes (not
/// `Unreadable`, which is never written), and a stream offset.
fn published(u: &mut Unstructured) -> arbitrary::Result<(Vec<Envelope>, u64)> {
    let offset = u.arbitrary()?;
    let mut envelopes = Vec::new();
    u.arbitrary_loop(Some(0), Some(64), |u| {
        envelopes.push(Envelope { node: u.arbitrary()?, seq: u.arbitrary()?, write: any_write(u)? });
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((envelopes, offset))
}

fn any_write(u: &mut Unstructured) -> arbitrary::Result<Write> {
    Ok(match u.choose_index(11)? {
        0 => Write::CreateUser {
            user: UserRecord {
                username: username(u)?,
                email: u.arbitrary()?,
                password_hash: u.arbitrary()?,
                is_superuser: u.arbitrary()?,
                is_active: u.arbitrary()?,
                created_at_ms: u.arbitrary()?,
            },
            only_if_first: u.arbitrary()?,
        },
        1 => Write::SetUserActive { username: username(u)?, active: u.arbitrary()? },
        2 => Write::CreateSession {
            token_hash: SessionHash(u.arbitrary()?),
            session: SessionRecord {
                username: username(u)?,
                created_at_ms: u.arbitrary()?,
                expires_at_ms: u.arbitrary()?,
            },
        },
        3 => Write::DeleteSession { token_hash: SessionHash(u.arbitrary()?) },
        4 => Write::Join { username: username(u)?, conversation: conversation(u)? },
        5 => Write::Message {
            conversation: conversation(u)?,
            author: username(u)?,
            text: MessageText::parse(u.arbitrary()?).unwrap_or_else(|_| MessageText::parse("x").expect("valid")),
            ts_ms: u.arbitrary()?,
        },
        6 => Write::SetPassword {
            username: username(u)?,
            password_hash: u.arbitrary()?,
            keep_session: u.arbitrary::<Option<[u8; 32]>>()?.map(SessionHash),
        },
        7 => Write::Edit {
            conversation: conversation(u)?,
            editor: username(u)?,
            target: MessageId(u.arbitrary()?),
            text: MessageText::parse(u.arbitrary()?).unwrap_or_else(|_| MessageText::parse("x").expect("valid")),
            ts_ms: u.arbitrary()?,
        },
        8 => Write::Delete {
            conversation: conversation(u)?,
            deleter: username(u)?,
            target: MessageId(u.arbitrary()?),
            ts_ms: u.arbitrary()?,
        },
        9 => Write::Read { username: username(u)?, conversation: conversation(u)?, up_to: MessageId(u.arbitrary()?) },
        _ => Write::Marker,
    })
}

/// A name of `alphabet`'s characters, 1 to `max` long; `fallback` when
/// that breaks the type's other rules (a username of dots only).
fn name_from<T>(
    u: &mut Unstructured,
    alphabet: &[u8],
    max: usize,
    parse: impl Fn(&str) -> Option<T>,
    fallback: &str,
) -> arbitrary::Result<T> {
    let len = u.int_in_range(1..=max)?;
    let mut raw = String::with_capacity(len);
    for _ in 0..len {
        raw.push(char::from(*u.choose(alphabet)?));
    }
    Ok(parse(&raw).unwrap_or_else(|| parse(fallback).expect("the fallback is valid")))
}

fn username(u: &mut Unstructured) -> arbitrary::Result<Username> {
    const ALPHABET: &[u8] = b"abcXYZ019_.@+-";
    name_from(u, ALPHABET, Username::MAX_LEN, |raw| Username::parse(raw).ok(), "u")
}

fn conversation(u: &mut Unstructured) -> arbitrary::Result<Conversation> {
    if u.arbitrary()? {
        const ALPHABET: &[u8] = b"abcXYZ019_";
        Ok(Conversation::Room(name_from(u, ALPHABET, RoomName::MAX_LEN, |raw| RoomName::parse(raw).ok(), "r")?))
    } else {
        Ok(Conversation::direct(username(u)?, username(u)?))
    }
}
