//! Messages: stored only through the write log (`log::apply` calls
//! `in_txn::insert_messages` inside its batch's transaction) and read back
//! by conversation, in id order.

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::{decode, schema, Result, Store};
use crate::domain::MessageId;

/// A message accepted from a socket, not yet stored.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// The conversation's key (`Conversation::key`).
    pub conversation: String,
    /// Who sent it.
    pub author: String,
    /// Validated and trimmed before it got here (`MessageText`).
    pub text: String,
    /// When the server accepted it, in ms since the epoch.
    pub ts_ms: u64,
}

/// A stored message: it has an id and is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its place in the one order (see `MessageId`).
    pub id: MessageId,
    /// The conversation's key (`Conversation::key`).
    pub conversation: String,
    /// Who sent it.
    pub author: String,
    /// As stored: trimmed, 1 to 4,096 characters.
    pub text: String,
    /// When the server accepted it, in ms since the epoch.
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

/// Stores a batch the way the log's apply does, for storage's own tests.
#[cfg(test)]
pub(crate) fn store_for_test(store: &Store, batch: Vec<NewMessage>) -> Vec<Message> {
    store.write(|txn| in_txn::insert_messages(txn, batch.into_iter().map(|m| (m, None)).collect())).unwrap()
}

impl Store {
    /// The newest `limit` messages older than `before` (or the newest of all),
    /// oldest first.
    pub fn messages_before(&self, conversation: &str, before: Option<MessageId>, limit: usize) -> Result<Vec<Message>> {
        let mut out = Vec::with_capacity(limit.min(512));
        self.walk_messages(conversation, PageFrom::Before(before), limit, |m| {
            out.push(m);
            true
        })?;
        out.reverse();
        Ok(out)
    }

    /// The oldest `limit` messages newer than `after`, oldest first, and
    /// whether there are more after them.
    pub fn messages_after(&self, conversation: &str, after: MessageId, limit: usize) -> Result<(Vec<Message>, bool)> {
        let mut out = Vec::with_capacity(limit.min(1024));
        let end = self.walk_messages(conversation, PageFrom::After(after), limit, |m| {
            out.push(m);
            true
        })?;
        Ok((out, end != PageEnd::Exhausted))
    }

    /// Reads a page one message at a time, handing each to `take` (which
    /// refuses it when a byte budget is full) and stopping there, so a reader
    /// never loads more than it keeps, plus one.
    pub fn walk_messages(
        &self,
        conversation: &str,
        from: PageFrom,
        limit: usize,
        take: impl FnMut(Message) -> bool,
    ) -> Result<PageEnd> {
        let txn = self.db()?.begin_read()?;
        walk_in(&txn.open_table(schema::MESSAGES)?, conversation, from, limit, take)
    }

    /// The conversation's newest message, if any.
    pub fn latest_message(&self, conversation: &str) -> Result<Option<Message>> {
        Ok(self.messages_before(conversation, None, 1)?.pop())
    }

    /// A new socket's `history` frame: the page `from`, handed to `take` as
    /// `walk_messages` does, and the newest id at that moment, all from one
    /// snapshot so that live delivery can skip exactly what the frame covers.
    pub fn socket_history(
        &self,
        conversation: &str,
        from: PageFrom,
        limit: usize,
        take: impl FnMut(Message) -> bool,
    ) -> Result<SocketHistory> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(schema::MESSAGES)?;
        let end = walk_in(&table, conversation, from, limit, take)?;
        let mut latest = None;
        walk_in(&table, conversation, PageFrom::Before(None), 1, |m| {
            latest = Some(m.id);
            true
        })?;
        Ok(SocketHistory { end, latest })
    }
}

/// Where a page of messages starts, and so which way it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFrom {
    /// Newest first, from just below this id (or from the newest of all).
    Before(Option<MessageId>),
    /// Oldest first, from just above this id.
    After(MessageId),
}

/// Why a page read stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageEnd {
    /// No message is left that way.
    Exhausted,
    /// `limit` messages were taken and more are left.
    Limit,
    /// The taker refused a message; it, and any past it, are left.
    Full,
}

/// See `Store::socket_history`.
pub struct SocketHistory {
    /// Why the read stopped: whether older messages are left for `"more"`.
    pub end: PageEnd,
    /// The conversation's newest id when the snapshot was taken.
    pub latest: Option<MessageId>,
}

type MessagesTable = redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>;

fn walk_in(
    table: &MessagesTable,
    conversation: &str,
    from: PageFrom,
    limit: usize,
    take: impl FnMut(Message) -> bool,
) -> Result<PageEnd> {
    match from {
        PageFrom::Before(before) => {
            let upper = before.map(|id| id.0).unwrap_or(u64::MAX);
            take_until(table.range((conversation, 0)..(conversation, upper))?.rev(), conversation, limit, take)
        }
        PageFrom::After(after) => match after.0.checked_add(1) {
            None => Ok(PageEnd::Exhausted),
            Some(lower) => {
                let range = table.range((conversation, lower)..=(conversation, u64::MAX))?;
                take_until(range, conversation, limit, take)
            }
        },
    }
}

type Entry<'a> = std::result::Result<
    (redb::AccessGuard<'a, (&'static str, u64)>, redb::AccessGuard<'a, &'static [u8]>),
    redb::StorageError,
>;

fn take_until<'a>(
    entries: impl Iterator<Item = Entry<'a>>,
    conversation: &str,
    limit: usize,
    mut take: impl FnMut(Message) -> bool,
) -> Result<PageEnd> {
    // `taken` messages were kept before this entry.
    for (taken, entry) in entries.enumerate() {
        if taken == limit {
            return Ok(PageEnd::Limit);
        }
        let (key, value) = entry?;
        if !take(message_from(conversation, key.value().1, value.value())?) {
            return Ok(PageEnd::Full);
        }
    }
    Ok(PageEnd::Exhausted)
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
        let stored = store_for_test(&store, batch);
        store_for_test(&store, vec![new("other", "x"), new("room", "10")]);
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
    fn a_walk_stops_where_the_taker_refuses_and_says_why() {
        let (_dir, store) = test_store();
        let stored = store_for_test(&store, (0..5).map(|i| new("room", &i.to_string())).collect());
        let mut seen = Vec::new();
        let end = store
            .walk_messages("room", PageFrom::After(stored[0].id), 10, |m| {
                seen.push(m.text);
                seen.len() < 3
            })
            .unwrap();
        assert_eq!(end, PageEnd::Full);
        assert_eq!(seen, ["1", "2", "3"], "the walk stops at the refused message");
        let mut newest = Vec::new();
        let end = store.walk_messages("room", PageFrom::Before(None), 2, |m| {
            newest.push(m.text);
            true
        });
        assert_eq!(end.unwrap(), PageEnd::Limit);
        assert_eq!(newest, ["4", "3"], "a before walk reads newest first");
        let end = store.walk_messages("room", PageFrom::Before(Some(stored[2].id)), 2, |_| true).unwrap();
        assert_eq!(end, PageEnd::Exhausted, "exactly limit left is not more");
    }

    #[test]
    fn messages_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), crate::storage::SchemaCheck::RequireCurrent).unwrap();
            store_for_test(&store, vec![new("room", "kept")]);
        }
        let store = Store::open(dir.path(), crate::storage::SchemaCheck::RequireCurrent).unwrap();
        assert_eq!(store.latest_message("room").unwrap().unwrap().text, "kept");
        let next = store_for_test(&store, vec![new("room", "next")]);
        assert_eq!(next[0].id, MessageId(2));
    }
}
