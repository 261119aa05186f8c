//! A conversation's entries: messages, and the edits and deletions made to
//! them, each with its own id in the conversation's one order. Stored only
//! through the write log (`log::apply` calls `in_txn::Entries` inside its
//! batch's transaction) and read back by conversation, in id order.
//!
//! A message row always holds the message as it now stands: an edit
//! rewrites its text (and appends an `edit` entry with the new text), a
//! deletion empties it and marks it gone (and appends a `delete` entry).
//! Pages skip gone rows, so a deleted message's text is never served again;
//! the row stays so that ids stay valid for read markers.

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

/// What an entry of a conversation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A message as it now stands; `edited_ms` says when it was last edited.
    Message {
        /// When its text was last changed, if ever.
        edited_ms: Option<u64>,
    },
    /// An edit of `target`: the entry's `text` is its new text and its `author` the editor.
    Edit {
        /// The message edited.
        target: MessageId,
    },
    /// The deletion of `target`; the entry's `author` is who deleted it and its `text` is empty.
    Delete {
        /// The message deleted.
        target: MessageId,
    },
}

/// A stored entry (a message, or an edit or deletion of one): it has an id and is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its place in the one order (see `MessageId`).
    pub id: MessageId,
    /// The conversation's key (`Conversation::key`).
    pub conversation: String,
    /// Who sent it (an edit: who edited; a deletion: who deleted).
    pub author: String,
    /// As stored: trimmed, 1 to 4,096 characters; empty for a deletion.
    pub text: String,
    /// When the server accepted it, in ms since the epoch.
    pub ts_ms: u64,
    /// A message, or an edit or deletion of one.
    pub kind: EntryKind,
}

impl Message {
    /// A message (not an edit or a deletion) that was never edited: tests and tools build these.
    pub fn posted(id: MessageId, conversation: &str, author: &str, text: &str, ts_ms: u64) -> Message {
        Message {
            id,
            conversation: conversation.to_owned(),
            author: author.to_owned(),
            text: text.to_owned(),
            ts_ms,
            kind: EntryKind::Message { edited_ms: None },
        }
    }

    /// Whether this entry is a message rather than an edit or deletion.
    pub fn is_message(&self) -> bool {
        matches!(self.kind, EntryKind::Message { .. })
    }
}

/// A row of `schema::MESSAGES`. Fields are only ever added, with defaults.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    author: String,
    text: String,
    ts_ms: u64,
    /// A message: when it was last edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_ms: Option<u64>,
    /// An edit entry: the message it edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edit_of: Option<u64>,
    /// A deletion entry: the message it deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete_of: Option<u64>,
    /// A message: the ids of its edit entries, emptied with it when it is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    edits: Vec<u64>,
    /// Deleted (a message, or an edit of a deleted message): its text is gone and no page serves it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gone: bool,
}

impl StoredEntry {
    fn kind(&self) -> EntryKind {
        match (self.edit_of, self.delete_of) {
            (Some(target), _) => EntryKind::Edit { target: MessageId(target) },
            (None, Some(target)) => EntryKind::Delete { target: MessageId(target) },
            (None, None) => EntryKind::Message { edited_ms: self.edited_ms },
        }
    }

    fn into_message(self, conversation: &str, id: u64) -> Message {
        let kind = self.kind();
        Message {
            id: MessageId(id),
            conversation: conversation.to_owned(),
            author: self.author,
            text: self.text,
            ts_ms: self.ts_ms,
            kind,
        }
    }
}

/// A row as a page sees it: `None` when it is gone (never served).
fn visible_entry(conversation: &str, id: u64, bytes: &[u8]) -> Result<Option<Message>> {
    let stored: StoredEntry = decode(bytes)?;
    Ok((!stored.gone).then(|| stored.into_message(conversation, id)))
}

/// Why an edit or a deletion was refused (the socket's error codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmendRefusal {
    /// `not_found`: no such message in this conversation, or it is deleted.
    NotFound,
    /// `forbidden`: not the author's (nor, for a deletion, a superuser's).
    Forbidden,
}

/// What moving a read marker came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerMove {
    /// The marker now stands at the id.
    Moved,
    /// It already stood there or further on: a marker never moves back.
    NotForward,
    /// The conversation has no entry with that id.
    NoSuchEntry,
}

/// Where a marker standing at `current` would go for `up_to`: a marker never moves back.
fn forward_move(current: Option<u64>, up_to: MessageId) -> MarkerMove {
    if current.is_some_and(|current| current >= up_to.0) {
        MarkerMove::NotForward
    } else {
        MarkerMove::Moved
    }
}

/// Writes inside a caller's transaction (see `log::apply`).
pub(crate) mod in_txn {
    use redb::{ReadableTable, Table, WriteTransaction};

    use super::{AmendRefusal, EntryKind, MarkerMove, Message, NewMessage, StoredEntry};
    use crate::domain::MessageId;
    use crate::storage::{decode, encode, schema, Result};

    /// The tables a batch's messages, edits, deletions and read markers
    /// write, opened once per batch.
    pub struct Entries<'txn> {
        messages: Table<'txn, (&'static str, u64), &'static [u8]>,
        markers: Table<'txn, (&'static str, &'static str), u64>,
        /// The single node's id counter; a cluster node gives every id.
        next_id: u64,
        counter_used: bool,
        /// Posters' markers, written once per batch at `finish`: a batch of
        /// a thousand messages from one author moves one marker once.
        posted_markers: std::collections::HashMap<(String, String), MessageId>,
    }

    impl<'txn> Entries<'txn> {
        /// Opens the tables in `txn`.
        pub fn open(txn: &'txn WriteTransaction) -> Result<Self> {
            let next_id =
                txn.open_table(schema::META)?.get(schema::NEXT_MESSAGE_ID_KEY)?.map(|v| v.value()).unwrap_or(1);
            Ok(Entries {
                messages: txn.open_table(schema::MESSAGES)?,
                markers: txn.open_table(schema::READ_MARKERS)?,
                next_id,
                counter_used: false,
                posted_markers: std::collections::HashMap::new(),
            })
        }

        /// An id given (a cluster node uses the stream position) is kept;
        /// otherwise the local counter's next (a single node).
        fn id(&mut self, given: Option<MessageId>) -> MessageId {
            given.unwrap_or_else(|| {
                self.counter_used = true;
                self.next_id += 1;
                MessageId(self.next_id - 1)
            })
        }

        fn get(&self, conversation: &str, id: MessageId) -> Result<Option<StoredEntry>> {
            self.messages.get((conversation, id.0))?.map(|v| decode(v.value())).transpose()
        }

        fn put(&mut self, conversation: &str, id: MessageId, entry: &StoredEntry) -> Result<()> {
            self.messages.insert((conversation, id.0), encode(entry).as_slice())?;
            Ok(())
        }

        /// Stores a message and moves its author's read marker to it.
        pub fn post(&mut self, new: NewMessage, given: Option<MessageId>) -> Result<Message> {
            let id = self.id(given);
            let entry = StoredEntry::new(new.author, new.text, new.ts_ms);
            self.put(&new.conversation, id, &entry)?;
            // Ids rise through a batch: the last of an author's messages wins.
            self.posted_markers.insert((entry.author.clone(), new.conversation.clone()), id);
            Ok(entry.into_message(&new.conversation, id.0))
        }

        /// The message `target`, when it is a message of `conversation` that is not deleted.
        fn live_message(&self, conversation: &str, target: MessageId) -> Result<Option<StoredEntry>> {
            let found = self.get(conversation, target)?;
            Ok(found.filter(|entry| !entry.gone && matches!(entry.kind(), EntryKind::Message { .. })))
        }

        /// Rewrites `target`'s text (the author only) and stores the edit as an entry of its own.
        pub fn edit(
            &mut self,
            conversation: &str,
            editor: &str,
            target: MessageId,
            text: String,
            ts_ms: u64,
            given: Option<MessageId>,
        ) -> Result<std::result::Result<Message, AmendRefusal>> {
            let Some(mut original) = self.live_message(conversation, target)? else {
                return Ok(Err(AmendRefusal::NotFound));
            };
            if original.author != editor {
                return Ok(Err(AmendRefusal::Forbidden));
            }
            let id = self.id(given);
            original.text.clone_from(&text);
            original.edited_ms = Some(ts_ms);
            original.edits.push(id.0);
            self.put(conversation, target, &original)?;
            let edit = StoredEntry { edit_of: Some(target.0), ..StoredEntry::new(editor.to_owned(), text, ts_ms) };
            self.put(conversation, id, &edit)?;
            Ok(Ok(edit.into_message(conversation, id.0)))
        }

        /// Deletes `target` (its author, or anyone when `may_delete_any`):
        /// its text and its edits' texts are emptied and marked gone, and the
        /// deletion is stored as an entry of its own.
        pub fn delete(
            &mut self,
            conversation: &str,
            deleter: &str,
            may_delete_any: bool,
            target: MessageId,
            ts_ms: u64,
            given: Option<MessageId>,
        ) -> Result<std::result::Result<Message, AmendRefusal>> {
            let Some(mut original) = self.live_message(conversation, target)? else {
                return Ok(Err(AmendRefusal::NotFound));
            };
            if original.author != deleter && !may_delete_any {
                return Ok(Err(AmendRefusal::Forbidden));
            }
            let id = self.id(given);
            for edit_id in std::mem::take(&mut original.edits) {
                if let Some(mut edit) = self.get(conversation, MessageId(edit_id))? {
                    edit.text.clear();
                    edit.gone = true;
                    self.put(conversation, MessageId(edit_id), &edit)?;
                }
            }
            original.text.clear();
            original.gone = true;
            self.put(conversation, target, &original)?;
            let deletion =
                StoredEntry { delete_of: Some(target.0), ..StoredEntry::new(deleter.to_owned(), String::new(), ts_ms) };
            self.put(conversation, id, &deletion)?;
            Ok(Ok(deletion.into_message(conversation, id.0)))
        }

        /// Moves `user`'s read marker in `conversation` forward to `up_to`, an id it holds.
        pub fn mark_read(&mut self, user: &str, conversation: &str, up_to: MessageId) -> Result<MarkerMove> {
            if self.messages.get((conversation, up_to.0))?.is_none() {
                return Ok(MarkerMove::NoSuchEntry);
            }
            // A post earlier in this batch moved it already, in memory.
            let posted = self.posted_markers.get(&(user.to_owned(), conversation.to_owned())).copied();
            if posted.is_some_and(|posted| posted >= up_to) {
                return Ok(MarkerMove::NotForward);
            }
            self.advance_marker(user, conversation, up_to)
        }

        fn advance_marker(&mut self, user: &str, conversation: &str, up_to: MessageId) -> Result<MarkerMove> {
            let current = self.markers.get((user, conversation))?.map(|v| v.value());
            let movement = super::forward_move(current, up_to);
            if movement == MarkerMove::Moved {
                self.markers.insert((user, conversation), up_to.0)?;
            }
            Ok(movement)
        }

        /// Moves the posters' markers and records the counter's next id, if
        /// this batch drew any.
        pub fn finish(mut self, txn: &WriteTransaction) -> Result<()> {
            for ((author, conversation), id) in std::mem::take(&mut self.posted_markers) {
                self.advance_marker(&author, &conversation, id)?;
            }
            let (used, next) = (self.counter_used, self.next_id);
            drop(self);
            if used {
                txn.open_table(schema::META)?.insert(schema::NEXT_MESSAGE_ID_KEY, next)?;
            }
            Ok(())
        }
    }
}

impl StoredEntry {
    fn new(author: String, text: String, ts_ms: u64) -> StoredEntry {
        StoredEntry {
            author,
            text,
            ts_ms,
            edited_ms: None,
            edit_of: None,
            delete_of: None,
            edits: Vec::new(),
            gone: false,
        }
    }
}

/// Stores a batch the way the log's apply does, for storage's own tests.
#[cfg(test)]
pub(crate) fn store_for_test(store: &Store, batch: Vec<NewMessage>) -> Vec<Message> {
    store
        .write(|txn| {
            let mut entries = in_txn::Entries::open(txn)?;
            let stored = batch.into_iter().map(|m| entries.post(m, None)).collect::<Result<Vec<_>>>()?;
            entries.finish(txn)?;
            Ok(stored)
        })
        .unwrap()
}

/// Unread messages are counted exactly up to this; past it a client shows "99+".
pub const UNREAD_CAP: u32 = 99;
/// Entries an unread count reads at most: a conversation where the user
/// wrote thousands of messages since their marker still answers quickly.
const UNREAD_SCAN: usize = 10_000;

impl Store {
    /// The newest `limit` messages older than `before` (or the newest of all),
    /// oldest first, as they now stand (no edits or deletions).
    pub fn messages_before(&self, conversation: &str, before: Option<MessageId>, limit: usize) -> Result<Vec<Message>> {
        let mut out = Vec::with_capacity(limit.min(512));
        self.walk_messages(conversation, PageFrom::Before(before), limit, |m| {
            out.push(m);
            true
        })?;
        out.reverse();
        Ok(out)
    }

    /// The oldest `limit` entries newer than `after` (messages, edits and
    /// deletions), oldest first, and whether there are more after them.
    pub fn messages_after(&self, conversation: &str, after: MessageId, limit: usize) -> Result<(Vec<Message>, bool)> {
        let mut out = Vec::with_capacity(limit.min(1024));
        let end = self.walk_messages(conversation, PageFrom::After(after), limit, |m| {
            out.push(m);
            true
        })?;
        Ok((out, end != PageEnd::Exhausted))
    }

    /// Reads a page one entry at a time, handing each to `take` (which
    /// refuses it when a byte budget is full) and stopping there, so a reader
    /// never loads more than it keeps, plus one. Reading back in time
    /// (`Before`) yields messages as they now stand; reading forward
    /// (`After`, catching up) also yields the edits and deletions, in order.
    /// Deleted messages are never yielded.
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

    /// The conversation's newest message as it now stands, if any.
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
        let latest = newest_id(&table, conversation)?;
        Ok(SocketHistory { end, latest })
    }

    /// Where `user`'s read marker stands in `conversation`.
    pub fn read_marker(&self, user: &str, conversation: &str) -> Result<Option<MessageId>> {
        let txn = self.db()?.begin_read()?;
        let markers = txn.open_table(schema::READ_MARKERS)?;
        Ok(markers.get((user, conversation))?.map(|v| MessageId(v.value())))
    }

    /// What moving `user`'s marker in `conversation` to `up_to` would do
    /// now: a socket asks before it writes, so that repeated or bogus read
    /// frames cost a read, not a write (the write checks again).
    pub fn marker_move(&self, user: &str, conversation: &str, up_to: MessageId) -> Result<MarkerMove> {
        let txn = self.db()?.begin_read()?;
        if txn.open_table(schema::MESSAGES)?.get((conversation, up_to.0))?.is_none() {
            return Ok(MarkerMove::NoSuchEntry);
        }
        let current = txn.open_table(schema::READ_MARKERS)?.get((user, conversation))?.map(|v| v.value());
        Ok(forward_move(current, up_to))
    }
}

/// One conversation's unread state for a user, read in one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The user's marker, if they ever read or wrote there.
    pub read_up_to: Option<MessageId>,
    /// Messages past the marker that others wrote and that are not deleted,
    /// exact up to `UNREAD_CAP`, which means that many or more.
    pub unread: u32,
}

type MessagesTable = redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>;

/// Read-side helpers over one snapshot, for summaries of many conversations.
pub(crate) struct Snapshot {
    messages: MessagesTable,
    markers: redb::ReadOnlyTable<(&'static str, &'static str), u64>,
}

impl Snapshot {
    pub(crate) fn open(txn: &redb::ReadTransaction) -> Result<Snapshot> {
        Ok(Snapshot { messages: txn.open_table(schema::MESSAGES)?, markers: txn.open_table(schema::READ_MARKERS)? })
    }

    /// The conversation's newest message as it now stands.
    pub(crate) fn latest(&self, conversation: &str) -> Result<Option<Message>> {
        let mut latest = None;
        walk_in(&self.messages, conversation, PageFrom::Before(None), 1, |m| {
            latest = Some(m);
            true
        })?;
        Ok(latest)
    }

    /// `user`'s marker and unread count in `conversation`.
    pub(crate) fn read_state(&self, user: &str, conversation: &str) -> Result<ReadState> {
        let read_up_to = self.markers.get((user, conversation))?.map(|v| MessageId(v.value()));
        let lower = read_up_to.map_or(0, |id| id.0.saturating_add(1));
        let mut unread = 0;
        for entry in self.messages.range((conversation, lower)..=(conversation, u64::MAX))?.take(UNREAD_SCAN) {
            let (_, value) = entry?;
            let stored: StoredEntry = decode(value.value())?;
            if !stored.gone && stored.edit_of.is_none() && stored.delete_of.is_none() && stored.author != user {
                unread += 1;
                if unread == UNREAD_CAP {
                    break;
                }
            }
        }
        Ok(ReadState { read_up_to, unread })
    }
}

/// The newest id of any entry of the conversation (gone ones included).
fn newest_id(table: &MessagesTable, conversation: &str) -> Result<Option<MessageId>> {
    let mut range = table.range((conversation, 0)..=(conversation, u64::MAX))?;
    Ok(range.next_back().transpose()?.map(|(key, _)| MessageId(key.value().1)))
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
            let range = table.range((conversation, 0)..(conversation, upper))?.rev();
            take_until(range, conversation, Yield::MessagesOnly, limit, take)
        }
        PageFrom::After(after) => match after.0.checked_add(1) {
            None => Ok(PageEnd::Exhausted),
            Some(lower) => {
                let range = table.range((conversation, lower)..=(conversation, u64::MAX))?;
                take_until(range, conversation, Yield::WithChanges, limit, take)
            }
        },
    }
}

/// Which entries a page yields besides messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Yield {
    /// Messages as they now stand (reading back in time).
    MessagesOnly,
    /// Edits and deletions too, each at its id (catching up).
    WithChanges,
}

type Entry<'a> = std::result::Result<
    (redb::AccessGuard<'a, (&'static str, u64)>, redb::AccessGuard<'a, &'static [u8]>),
    redb::StorageError,
>;

fn take_until<'a>(
    entries: impl Iterator<Item = Entry<'a>>,
    conversation: &str,
    yields: Yield,
    limit: usize,
    mut take: impl FnMut(Message) -> bool,
) -> Result<PageEnd> {
    let mut taken = 0;
    for entry in entries {
        let (key, value) = entry?;
        let Some(message) = visible_entry(conversation, key.value().1, value.value())? else { continue };
        if yields == Yield::MessagesOnly && !message.is_message() {
            continue;
        }
        if taken == limit {
            return Ok(PageEnd::Limit);
        }
        if !take(message) {
            return Ok(PageEnd::Full);
        }
        taken += 1;
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

#[cfg(test)]
mod amend_tests {
    use super::*;
    use crate::storage::test_store;

    fn post(store: &Store, author: &str, text: &str) -> Message {
        let new = NewMessage { conversation: "room".into(), author: author.into(), text: text.into(), ts_ms: 5 };
        store_for_test(store, vec![new]).pop().unwrap()
    }

    fn amend<T>(store: &Store, act: impl FnOnce(&mut in_txn::Entries) -> Result<T>) -> T {
        store
            .write(|txn| {
                let mut entries = in_txn::Entries::open(txn)?;
                let out = act(&mut entries)?;
                entries.finish(txn)?;
                Ok(out)
            })
            .unwrap()
    }

    #[test]
    fn an_edit_rewrites_the_message_and_is_an_entry_of_its_own() {
        let (_dir, store) = test_store();
        let hi = post(&store, "ann", "hi");
        let refused = amend(&store, |e| e.edit("room", "bob", hi.id, "no".into(), 6, None));
        assert_eq!(refused, Err(AmendRefusal::Forbidden), "only the author edits");
        let missing = amend(&store, |e| e.edit("other", "ann", hi.id, "x".into(), 6, None));
        assert_eq!(missing, Err(AmendRefusal::NotFound), "the id is another conversation's");
        let edit = amend(&store, |e| e.edit("room", "ann", hi.id, "hello".into(), 7, None)).unwrap();
        assert_eq!(edit.kind, EntryKind::Edit { target: hi.id });
        assert!(edit.id > hi.id);
        let now = store.messages_before("room", None, 10).unwrap();
        assert_eq!(now.len(), 1, "reading back shows messages only");
        assert_eq!((now[0].text.as_str(), now[0].kind), ("hello", EntryKind::Message { edited_ms: Some(7) }));
        let (since, _) = store.messages_after("room", MessageId(0), 10).unwrap();
        assert_eq!(since.iter().map(|m| m.id).collect::<Vec<_>>(), [hi.id, edit.id], "catching up replays the edit");
    }

    #[test]
    fn a_deletion_removes_the_text_everywhere_and_replays_as_an_entry() {
        let (_dir, store) = test_store();
        let hi = post(&store, "ann", "secret");
        amend(&store, |e| e.edit("room", "ann", hi.id, "still secret".into(), 6, None)).unwrap();
        let kept = post(&store, "bob", "kept");
        assert_eq!(amend(&store, |e| e.delete("room", "bob", false, hi.id, 7, None)), Err(AmendRefusal::Forbidden));
        let deletion = amend(&store, |e| e.delete("room", "root", true, hi.id, 7, None)).unwrap();
        assert_eq!((deletion.kind, deletion.author.as_str()), (EntryKind::Delete { target: hi.id }, "root"));
        assert_eq!(amend(&store, |e| e.delete("room", "ann", false, hi.id, 8, None)), Err(AmendRefusal::NotFound));
        assert_eq!(amend(&store, |e| e.edit("room", "ann", hi.id, "x".into(), 8, None)), Err(AmendRefusal::NotFound));
        let now = store.messages_before("room", None, 10).unwrap();
        assert_eq!(now, std::slice::from_ref(&kept));
        let (since, _) = store.messages_after("room", MessageId(0), 10).unwrap();
        assert_eq!(since.iter().map(|m| m.id).collect::<Vec<_>>(), [kept.id, deletion.id]);
        assert!(since.iter().all(|m| !m.text.contains("secret")), "no page serves the deleted text");
        let marker = store.marker_move("ann", "room", hi.id).unwrap();
        assert_ne!(marker, MarkerMove::NoSuchEntry, "its id stays, for read markers");
    }

    #[test]
    fn markers_move_forward_only_and_count_what_others_wrote() {
        let (_dir, store) = test_store();
        let first = post(&store, "ann", "1");
        let mine = post(&store, "bob", "2");
        assert_eq!(store.read_marker("bob", "room").unwrap(), Some(mine.id), "posting moves the author's marker");
        for text in ["3", "4", "5"] {
            post(&store, "ann", text);
        }
        let state = |user: &str| {
            let txn = store.db().unwrap().begin_read().unwrap();
            Snapshot::open(&txn).unwrap().read_state(user, "room").unwrap()
        };
        assert_eq!(state("bob").unread, 3);
        assert_eq!(state("cid"), ReadState { read_up_to: None, unread: 5 }, "nothing read: all of others' messages");
        assert_eq!(amend(&store, |e| e.mark_read("bob", "room", first.id)), MarkerMove::NotForward);
        assert_eq!(amend(&store, |e| e.mark_read("bob", "room", MessageId(999))), MarkerMove::NoSuchEntry);
        let last = store.latest_message("room").unwrap().unwrap();
        assert_eq!(amend(&store, |e| e.mark_read("bob", "room", last.id)), MarkerMove::Moved);
        assert_eq!(state("bob").unread, 0);
        for i in 0..120 {
            post(&store, "ann", &i.to_string());
        }
        assert_eq!(state("bob").unread, UNREAD_CAP, "99 means 99 or more");
    }
}
