//! Applying writes to storage: a batch in one redb transaction, in order.
//! The single node's writer thread and a cluster node's stream consumer both
//! come through here, so both modes store exactly the same way.

use std::collections::HashMap;

use redb::ReadableTable;

use super::write::{Outcome, Write};
use crate::domain::{Conversation, MessageId};
use crate::storage::{
    self, accounts, messages, now_ms, rooms, schema, AmendRefusal, MarkerMove, NewMessage, StorageError, Store,
};

/// One write to apply.
pub struct Entry {
    /// Its place in the stream (cluster): `write::position(offset, index)`.
    /// A message's id.
    pub position: Option<u64>,
    /// (writing process, its sequence number) (cluster): applied once.
    pub origin: Option<(u64, u64)>,
    /// The change itself.
    pub write: Write,
}

/// Applies `entries` in one transaction and records `next_offset` (the
/// stream position after them) in the same commit, so a restart resumes
/// exactly where the last commit ended. Refusals (a taken username) are
/// outcomes; only a storage failure fails the batch, and then nothing of it
/// is stored.
pub fn apply_batch(store: &Store, entries: &[Entry], next_offset: Option<u64>) -> storage::Result<Vec<Outcome>> {
    store.write(|txn| {
        let mut outcomes = Vec::with_capacity(entries.len());
        // Opened at the batch's first message, edit, deletion or marker.
        let mut conversation_writes: Option<messages::in_txn::Entries> = None;
        let mut highest_seq: HashMap<u64, u64> = HashMap::new();
        for entry in entries {
            if let Some((node, seq)) = entry.origin {
                let highest = match highest_seq.get(&node) {
                    Some(highest) => *highest,
                    None => {
                        txn.open_table(schema::META)?.get(schema::node_seq_key(node).as_str())?.map_or(0, |v| v.value())
                    }
                };
                // A writer's records apply in its own order: after a nack,
                // later records may reach the stream before the resent one.
                if seq <= highest {
                    outcomes.push(Outcome::Duplicate);
                    continue;
                }
                if seq > highest + 1 {
                    outcomes.push(Outcome::OutOfOrder);
                    continue;
                }
                highest_seq.insert(node, seq);
            }
            let id = entry.position.map(MessageId);
            let outcome = match &entry.write {
                Write::CreateUser { user, only_if_first } => {
                    match accounts::in_txn::insert_user(txn, user, *only_if_first) {
                        Ok(()) => Outcome::Applied,
                        Err(StorageError::UsernameTaken) => Outcome::UsernameTaken,
                        Err(StorageError::SetupClosed) => Outcome::SetupClosed,
                        Err(other) => return Err(other),
                    }
                }
                Write::SetUserActive { username, active } => {
                    if accounts::in_txn::set_user_active(txn, username.as_str(), *active)? {
                        Outcome::Applied
                    } else {
                        Outcome::NoSuchUser
                    }
                }
                Write::SetPassword { username, password_hash, keep_session } => {
                    let keep = keep_session.as_ref().map(|hash| &hash.0);
                    if accounts::in_txn::set_password(txn, username.as_str(), password_hash, keep)? {
                        Outcome::Applied
                    } else {
                        Outcome::NoSuchUser
                    }
                }
                Write::CreateSession { token_hash, session } => {
                    accounts::in_txn::insert_session(txn, &token_hash.0, session)?;
                    Outcome::Applied
                }
                Write::DeleteSession { token_hash } => {
                    accounts::in_txn::delete_session(txn, &token_hash.0)?;
                    Outcome::Applied
                }
                Write::Join { username, conversation } => {
                    rooms::in_txn::join(txn, &[username.as_str()], conversation, now_ms())?;
                    Outcome::Applied
                }
                Write::Message { conversation, author, text, ts_ms } => {
                    // Both users of a direct conversation are members from its first message.
                    if let Conversation::Direct { low, high } = conversation {
                        rooms::in_txn::join(txn, &[low.as_str(), high.as_str()], conversation, *ts_ms)?;
                    }
                    let new = NewMessage {
                        conversation: conversation.key(),
                        author: author.as_str().to_owned(),
                        text: text.as_str().to_owned(),
                        ts_ms: *ts_ms,
                    };
                    Outcome::Stored(open(&mut conversation_writes, txn)?.post(new, id)?)
                }
                Write::Edit { conversation, editor, target, text, ts_ms } => {
                    let key = conversation.key();
                    let edited = open(&mut conversation_writes, txn)?.edit(
                        &key,
                        editor.as_str(),
                        *target,
                        text.as_str().to_owned(),
                        *ts_ms,
                        id,
                    )?;
                    amended(edited)
                }
                Write::Delete { conversation, deleter, target, ts_ms } => {
                    let may_delete_any = accounts::in_txn::is_active_superuser(txn, deleter.as_str())?;
                    let key = conversation.key();
                    let deleted = open(&mut conversation_writes, txn)?.delete(
                        &key,
                        deleter.as_str(),
                        may_delete_any,
                        *target,
                        *ts_ms,
                        id,
                    )?;
                    amended(deleted)
                }
                Write::Read { username, conversation, up_to } => {
                    let key = conversation.key();
                    match open(&mut conversation_writes, txn)?.mark_read(username.as_str(), &key, *up_to)? {
                        MarkerMove::Moved => Outcome::MarkerMoved,
                        MarkerMove::NotForward => Outcome::MarkerNotForward,
                        MarkerMove::NoSuchEntry => Outcome::NoSuchEntry,
                    }
                }
                Write::Marker | Write::Unreadable => Outcome::Applied,
            };
            outcomes.push(outcome);
        }
        if let Some(writes) = conversation_writes {
            writes.finish(txn)?;
        }
        if !highest_seq.is_empty() || next_offset.is_some() {
            let mut meta = txn.open_table(schema::META)?;
            for (node, seq) in highest_seq {
                meta.insert(schema::node_seq_key(node).as_str(), seq)?;
            }
            if let Some(next) = next_offset {
                meta.insert(schema::STREAM_NEXT_OFFSET_KEY, next)?;
            }
        }
        Ok(outcomes)
    })
}

/// The batch's conversation tables, opened on first use.
fn open<'a, 'txn>(
    slot: &'a mut Option<messages::in_txn::Entries<'txn>>,
    txn: &'txn redb::WriteTransaction,
) -> storage::Result<&'a mut messages::in_txn::Entries<'txn>> {
    if slot.is_none() {
        *slot = Some(messages::in_txn::Entries::open(txn)?);
    }
    Ok(slot.as_mut().expect("just opened"))
}

/// An edit's or deletion's outcome.
fn amended(result: Result<storage::Message, AmendRefusal>) -> Outcome {
    match result {
        Ok(entry) => Outcome::Stored(entry),
        Err(AmendRefusal::NotFound) => Outcome::NotFound,
        Err(AmendRefusal::Forbidden) => Outcome::Forbidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{test_store, test_user as user};

    fn message(text: &str) -> Write {
        Write::Message {
            conversation: crate::domain::Conversation::from_key("r").unwrap(),
            author: crate::domain::Username::parse("a").unwrap(),
            text: crate::domain::MessageText::parse(text).unwrap(),
            ts_ms: 1,
        }
    }

    #[test]
    fn the_first_claim_of_a_username_wins_and_messages_take_their_positions() {
        let (_dir, store) = test_store();
        let entries = vec![
            Entry {
                position: Some(10),
                origin: Some((1, 1)),
                write: Write::CreateUser { user: user("amy"), only_if_first: false },
            },
            Entry {
                position: Some(11),
                origin: Some((2, 1)),
                write: Write::CreateUser { user: user("amy"), only_if_first: false },
            },
            Entry { position: Some(12), origin: Some((1, 2)), write: message("hi") },
        ];
        let outcomes = apply_batch(&store, &entries, Some(13)).unwrap();
        assert!(matches!(outcomes[0], Outcome::Applied));
        assert!(matches!(outcomes[1], Outcome::UsernameTaken));
        assert!(matches!(&outcomes[2], Outcome::Stored(m) if m.id == MessageId(12)));
        assert_eq!(store.stream_next_offset().unwrap(), Some(13));
    }

    #[test]
    fn a_writers_records_apply_in_its_own_order_whatever_the_stream_order() {
        let (_dir, store) = test_store();
        let write =
            |position, seq, text| Entry { position: Some(position), origin: Some((7, seq)), write: message(text) };
        // The broker nacked seq 1 but stored 2 and 3; the writer resends 1, 2, 3.
        let outcomes = apply_batch(&store, &[write(10, 2, "b"), write(11, 3, "c"), write(12, 1, "a")], None).unwrap();
        assert!(matches!(outcomes[0], Outcome::OutOfOrder) && matches!(outcomes[1], Outcome::OutOfOrder));
        assert!(matches!(outcomes[2], Outcome::Stored(_)));
        let outcomes = apply_batch(&store, &[write(13, 2, "b"), write(14, 3, "c")], None).unwrap();
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Stored(_))));
        let texts: Vec<_> = store.messages_before("r", None, 10).unwrap().into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["a", "b", "c"]);
    }

    #[test]
    fn a_republished_write_is_applied_once() {
        let (_dir, store) = test_store();
        let once = |seq| Entry { position: None, origin: Some((7, seq)), write: message("x") };
        apply_batch(&store, &[once(1), once(2)], None).unwrap();
        let outcomes = apply_batch(&store, &[once(2), once(3)], None).unwrap();
        assert!(matches!(outcomes[0], Outcome::Duplicate));
        assert!(matches!(outcomes[1], Outcome::Stored(_)));
        assert_eq!(store.messages_before("r", None, 10).unwrap().len(), 3);
    }
}
