//! Messages: appended in batches (one transaction per batch, see
//! `chat::writer`) and read back by conversation, in id order.

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::{decode, schema, Result, Store};
use crate::domain::MessageId;

/// A message accepted from a socket, not yet stored.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub conversation: String,
    pub author: String,
    pub text: String,
    pub ts_ms: u64,
}

/// A stored message: it has an id and is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub conversation: String,
    pub author: String,
    pub text: String,
    pub ts_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredMessage {
    author: String,
    text: String,
    ts_ms: u64,
}

fn message_from(conversation: &str, id: u64, bytes: &[u8]) -> Result<Message> {
    let stored: StoredMessage = decode(bytes)?;
    Ok(Message {
        id: MessageId(id),
        conversation: conversation.to_owned(),
        author: stored.author,
        text: stored.text,
        ts_ms: stored.ts_ms,
    })
}

/// Writes inside a caller's transaction (see `log::apply`).
pub(crate) mod in_txn {
    use redb::{ReadableTable, WriteTransaction};

    use super::{Message, NewMessage, StoredMessage};
    use crate::domain::MessageId;
    use crate::storage::{encode, schema, Result};

    /// Stores messages in order. A message with an id keeps it (a cluster
    /// node uses the stream position); one without takes the next id of the
    /// local counter (a single node).
    pub fn insert_messages(
        txn: &WriteTransaction,
        batch: Vec<(NewMessage, Option<MessageId>)>,
    ) -> Result<Vec<Message>> {
        let mut stored = Vec::with_capacity(batch.len());
        let mut meta = txn.open_table(schema::META)?;
        let mut next = meta.get(schema::NEXT_MESSAGE_ID_KEY)?.map(|v| v.value()).unwrap_or(1);
        let mut messages = txn.open_table(schema::MESSAGES)?;
        for (new, given) in batch {
            let id = given.unwrap_or_else(|| {
                next += 1;
                MessageId(next - 1)
            });
            let record = StoredMessage { author: new.author, text: new.text, ts_ms: new.ts_ms };
            messages.insert((new.conversation.as_str(), id.0), encode(&record).as_slice())?;
            stored.push(Message {
                id,
                conversation: new.conversation,
                author: record.author,
                text: record.text,
                ts_ms: record.ts_ms,
            });
        }
        meta.insert(schema::NEXT_MESSAGE_ID_KEY, next)?;
        Ok(stored)
    }
}

impl Store {
    /// Stores a batch in one durable transaction and gives each message the
    /// next id, in batch order. Either every message is stored or none is.
    pub fn append_messages(&self, batch: Vec<NewMessage>) -> Result<Vec<Message>> {
        self.write(|txn| in_txn::insert_messages(txn, batch.into_iter().map(|m| (m, None)).collect()))
    }

    /// The newest `limit` messages older than `before` (or the newest of all),
    /// oldest first.
    pub fn messages_before(&self, conversation: &str, before: Option<MessageId>, limit: usize) -> Result<Vec<Message>> {
        let txn = self.db().begin_read()?;
        before_in(&txn.open_table(schema::MESSAGES)?, conversation, before, limit)
    }

    /// The oldest `limit` messages newer than `after`, oldest first, and
    /// whether there are more after them.
    pub fn messages_after(&self, conversation: &str, after: MessageId, limit: usize) -> Result<(Vec<Message>, bool)> {
        let txn = self.db().begin_read()?;
        after_in(&txn.open_table(schema::MESSAGES)?, conversation, after, limit)
    }

    /// The conversation's newest message, if any.
    pub fn latest_message(&self, conversation: &str) -> Result<Option<Message>> {
        Ok(self.messages_before(conversation, None, 1)?.pop())
    }

    /// A new socket's `history` frame: the newest `recent` messages, or with
    /// `since` the oldest `recovery` after it, and the newest id at that
    /// moment, all from one snapshot so that live delivery can skip exactly
    /// what the frame covers.
    pub fn socket_history(
        &self,
        conversation: &str,
        since: Option<MessageId>,
        recent: usize,
        recovery: usize,
    ) -> Result<SocketHistory> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(schema::MESSAGES)?;
        let (messages, more) = match since {
            Some(after) => after_in(&table, conversation, after, recovery)?,
            None => (before_in(&table, conversation, None, recent)?, false),
        };
        let latest = before_in(&table, conversation, None, 1)?.pop().map(|m| m.id);
        Ok(SocketHistory { messages, more, latest })
    }
}

/// See `Store::socket_history`.
pub struct SocketHistory {
    pub messages: Vec<Message>,
    pub more: bool,
    /// The conversation's newest id when the snapshot was taken.
    pub latest: Option<MessageId>,
}

type MessagesTable = redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>;

fn before_in(
    table: &MessagesTable,
    conversation: &str,
    before: Option<MessageId>,
    limit: usize,
) -> Result<Vec<Message>> {
    let upper = before.map(|id| id.0).unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(limit.min(512));
    for entry in table.range((conversation, 0)..(conversation, upper))?.rev().take(limit) {
        let (key, value) = entry?;
        out.push(message_from(conversation, key.value().1, value.value())?);
    }
    out.reverse();
    Ok(out)
}

fn after_in(table: &MessagesTable, conversation: &str, after: MessageId, limit: usize) -> Result<(Vec<Message>, bool)> {
    let Some(lower) = after.0.checked_add(1) else {
        return Ok((Vec::new(), false));
    };
    let mut out = Vec::with_capacity(limit.min(1024));
    let mut range = table.range((conversation, lower)..=(conversation, u64::MAX))?;
    for entry in range.by_ref().take(limit) {
        let (key, value) = entry?;
        out.push(message_from(conversation, key.value().1, value.value())?);
    }
    let more = range.next().is_some();
    Ok((out, more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_store;

    fn new(conversation: &str, text: &str) -> NewMessage {
        NewMessage { conversation: conversation.into(), author: "a".into(), text: text.into(), ts_ms: 5 }
    }

    #[test]
    fn ids_increase_in_batch_order_and_pages_work_both_ways() {
        let (_dir, store) = test_store();
        let batch: Vec<_> = (0..10).map(|i| new("room", &i.to_string())).collect();
        let stored = store.append_messages(batch).unwrap();
        store.append_messages(vec![new("other", "x"), new("room", "10")]).unwrap();
        assert!(stored.windows(2).all(|w| w[0].id < w[1].id));

        let last3 = store.messages_before("room", None, 3).unwrap();
        assert_eq!(last3.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["8", "9", "10"]);
        let before = store.messages_before("room", Some(last3[0].id), 2).unwrap();
        assert_eq!(before.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["6", "7"]);

        let (after, more) = store.messages_after("room", stored[1].id, 3).unwrap();
        assert_eq!(after.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["2", "3", "4"]);
        assert!(more);
        let (tail, more) = store.messages_after("room", stored[8].id, 10).unwrap();
        assert_eq!(tail.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["9", "10"]);
        assert!(!more);
        assert_eq!(store.latest_message("other").unwrap().unwrap().text, "x");
        assert!(store.latest_message("empty").unwrap().is_none());
    }

    #[test]
    fn messages_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), crate::storage::SchemaCheck::RequireCurrent).unwrap();
            store.append_messages(vec![new("room", "kept")]).unwrap();
        }
        let store = Store::open(dir.path(), crate::storage::SchemaCheck::RequireCurrent).unwrap();
        assert_eq!(store.latest_message("room").unwrap().unwrap().text, "kept");
        let next = store.append_messages(vec![new("room", "next")]).unwrap();
        assert_eq!(next[0].id, MessageId(2));
    }
}
