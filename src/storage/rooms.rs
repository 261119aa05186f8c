//! Rooms (created on first join, with the joiner as owner) and memberships,
//! which the lobby lists.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::messages::{ReadState, Snapshot};
use super::{now_ms, schema, Message, Result, Store};
use crate::domain::{Conversation, MessageId};

#[derive(Serialize, Deserialize)]
struct RoomRecord {
    owner: String,
    created_at_ms: u64,
}

/// One row of the lobby: a conversation the user is in and its newest message.
#[derive(Clone, Debug)]
pub struct ConversationSummary {
    /// The room or direct chat, whose key links to its page.
    pub conversation: Conversation,
    /// Its newest message, for the preview; `None` before the first message.
    pub latest: Option<Message>,
    /// The user's read marker and unread count there.
    pub read: ReadState,
}

/// Writes inside a caller's transaction (see `log::apply`).
pub(crate) mod in_txn {
    use redb::{ReadableTable, WriteTransaction};

    use super::RoomRecord;
    use crate::domain::Conversation;
    use crate::storage::{encode, schema, Result};

    /// Makes each of `users` a member of `conversation`, creating the room
    /// on its first join (owner = the first of `users`). Returns who was
    /// not a member before; joining again changes nothing.
    pub fn join(
        txn: &WriteTransaction,
        users: &[&str],
        conversation: &Conversation,
        now_ms: u64,
    ) -> Result<Vec<String>> {
        let key = conversation.key();
        let mut rooms = txn.open_table(schema::ROOMS)?;
        if rooms.get(key.as_str())?.is_none() {
            let owner = users.first().copied().unwrap_or_default().to_owned();
            let record = RoomRecord { owner, created_at_ms: now_ms };
            rooms.insert(key.as_str(), encode(&record).as_slice())?;
        }
        let mut memberships = txn.open_table(schema::MEMBERSHIPS)?;
        let mut members = txn.open_table(schema::MEMBERS)?;
        let mut joined = Vec::new();
        for &user in users {
            if memberships.get((user, key.as_str()))?.is_none() {
                memberships.insert((user, key.as_str()), now_ms)?;
                members.insert((key.as_str(), user), now_ms)?;
                joined.push(user.to_owned());
            }
        }
        Ok(joined)
    }
}

impl Store {
    /// Whether `user` is a member of `conversation`: the fast path of every
    /// socket upgrade and page, which then writes nothing.
    pub fn is_member(&self, user: &str, conversation: &Conversation) -> Result<bool> {
        let txn = self.db()?.begin_read()?;
        let memberships = txn.open_table(schema::MEMBERSHIPS)?;
        Ok(memberships.get((user, conversation.key().as_str()))?.is_some())
    }

    /// `in_txn::join` of one user in a transaction of its own, bypassing the log: for tests.
    pub fn join(&self, user: &str, conversation: &Conversation) -> Result<()> {
        self.write(|txn| in_txn::join(txn, &[user], conversation, now_ms())).map(drop)
    }

    /// The owner of a room, if it exists.
    #[cfg(test)]
    pub fn room_owner(&self, conversation: &Conversation) -> Result<Option<String>> {
        let txn = self.db()?.begin_read()?;
        let rooms = txn.open_table(schema::ROOMS)?;
        let found = rooms.get(conversation.key().as_str())?;
        Ok(found.map(|v| super::decode::<RoomRecord>(v.value())).transpose()?.map(|r| r.owner))
    }

    /// The members of a conversation, in byte order of their names.
    pub fn members_of(&self, conversation: &str) -> Result<Vec<String>> {
        let txn = self.db()?.begin_read()?;
        paired_with(&txn.open_table(schema::MEMBERS)?, conversation)
    }

    /// Everyone who shares a conversation with `user` (`user` included), in byte order.
    pub fn contacts_of(&self, user: &str) -> Result<Vec<String>> {
        Ok(self.conversations_and_contacts(user)?.1)
    }

    /// The keys of `user`'s conversations and everyone who shares one with
    /// them (`contacts_of`), read in one snapshot: whom a presence change concerns.
    pub fn conversations_and_contacts(&self, user: &str) -> Result<(Vec<String>, Vec<String>)> {
        let txn = self.db()?.begin_read()?;
        let keys = paired_with(&txn.open_table(schema::MEMBERSHIPS)?, user)?;
        let members = txn.open_table(schema::MEMBERS)?;
        let mut contacts = std::collections::BTreeSet::new();
        for key in &keys {
            contacts.extend(paired_with(&members, key)?);
        }
        Ok((keys, contacts.into_iter().collect()))
    }

    /// The keys of the conversations `user` is a member of.
    pub fn conversation_keys_of(&self, user: &str) -> Result<Vec<String>> {
        let txn = self.db()?.begin_read()?;
        paired_with(&txn.open_table(schema::MEMBERSHIPS)?, user)
    }

    /// The user's conversations with their newest message, marker and
    /// unread count, most recently active first; all from one snapshot.
    pub fn conversations_of(&self, user: &str) -> Result<Vec<ConversationSummary>> {
        Ok(self.inbox(user)?.0)
    }

    /// The user socket's inbox (`conversations_of`) and, from the same
    /// snapshot, the newest id applied anywhere: a live entry up to it is
    /// already counted in the inbox.
    pub fn inbox(&self, user: &str) -> Result<(Vec<ConversationSummary>, Option<MessageId>)> {
        let txn = self.db()?.begin_read()?;
        let keys = paired_with(&txn.open_table(schema::MEMBERSHIPS)?, user)?;
        let snapshot = Snapshot::open(&txn)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(conversation) = Conversation::from_key(&key) else { continue };
            let latest = snapshot.latest(&key)?;
            let read = snapshot.read_state(user, &key)?;
            out.push(ConversationSummary { conversation, latest, read });
        }
        sort_most_recent_first(&mut out, |s| s.latest.as_ref());
        Ok((out, applied_up_to(&txn)?))
    }

    /// Every group room (never a direct conversation) with its member count
    /// and newest message, most recently active first, rooms without
    /// messages last (in name order).
    pub fn room_directory(&self) -> Result<Vec<RoomSummary>> {
        let txn = self.db()?.begin_read()?;
        let rooms = txn.open_table(schema::ROOMS)?;
        let members = txn.open_table(schema::MEMBERS)?;
        let snapshot = Snapshot::open(&txn)?;
        let mut out = Vec::new();
        for entry in rooms.iter()? {
            let (key, _) = entry?;
            let Some(room @ Conversation::Room(_)) = Conversation::from_key(key.value()) else { continue };
            let key = key.value();
            let count = paired_with(&members, key)?.len() as u64;
            out.push(RoomSummary { room, members: count, latest: snapshot.latest(key)? });
        }
        sort_most_recent_first(&mut out, |s| s.latest.as_ref());
        Ok(out)
    }
}

/// The newest id any entry applied so far can have: the single node's
/// counter, or (cluster) everything below the next stream offset's positions.
fn applied_up_to(txn: &redb::ReadTransaction) -> Result<Option<MessageId>> {
    let meta = txn.open_table(schema::META)?;
    let local = meta.get(schema::NEXT_MESSAGE_ID_KEY)?.map(|v| v.value().saturating_sub(1));
    let stream = meta
        .get(schema::STREAM_NEXT_OFFSET_KEY)?
        .map(|v| v.value().saturating_mul(super::IDS_PER_STREAM_RECORD).saturating_sub(1));
    Ok(local.max(stream).filter(|id| *id > 0).map(MessageId))
}

/// Newest latest message first; those without one keep their (name) order, last.
fn sort_most_recent_first<T>(items: &mut [T], latest: impl Fn(&T) -> Option<&Message>) {
    items.sort_by(|a, b| latest(b).map(|m| m.id).cmp(&latest(a).map(|m| m.id)));
}

/// The second names of the keys `(first, second)` of a table of name
/// pairs (`MEMBERSHIPS`: a user's conversations; `MEMBERS`: a
/// conversation's users), in byte order.
fn paired_with(pairs: &redb::ReadOnlyTable<(&'static str, &'static str), u64>, first: &str) -> Result<Vec<String>> {
    let mut seconds = Vec::new();
    for entry in pairs.range((first, "")..)? {
        let (key, _) = entry?;
        let (of, second) = key.value();
        if of != first {
            break;
        }
        seconds.push(second.to_owned());
    }
    Ok(seconds)
}

/// One row of `GET /api/rooms`.
#[derive(Clone, Debug)]
pub struct RoomSummary {
    /// The group room.
    pub room: Conversation,
    /// How many users are members.
    pub members: u64,
    /// Its newest message as it now stands.
    pub latest: Option<Message>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RoomName, Username};
    use crate::storage::{test_store, NewMessage};

    #[test]
    fn joining_creates_the_room_once_and_lists_it_in_the_lobby() {
        let (_dir, store) = test_store();
        let lobby = Conversation::Room(RoomName::parse("lobby").unwrap());
        let quiet = Conversation::Room(RoomName::parse("quiet").unwrap());
        store.join("alice", &lobby).unwrap();
        store.join("bob", &lobby).unwrap();
        store.join("alice", &quiet).unwrap();
        assert_eq!(store.room_owner(&lobby).unwrap().as_deref(), Some("alice"));
        let hi = NewMessage { conversation: "lobby".into(), author: "bob".into(), text: "hi".into(), ts_ms: 1 };
        crate::storage::messages::store_for_test(&store, vec![hi]);
        let rooms = store.conversations_of("alice").unwrap();
        assert_eq!(rooms.len(), 2);
        assert_eq!(rooms[0].conversation, lobby);
        assert_eq!(rooms[0].latest.as_ref().unwrap().text, "hi");
        assert!(rooms[1].latest.is_none());
        assert_eq!(store.conversations_of("bob").unwrap().len(), 1);
        assert!(store.conversations_of("alic").unwrap().is_empty());
    }

    #[test]
    fn opening_a_direct_conversation_makes_only_the_opener_a_member() {
        let (_dir, store) = test_store();
        let dm = Conversation::direct(Username::parse("bob").unwrap(), Username::parse("alice").unwrap());
        store.join("bob", &dm).unwrap();
        assert!(store.conversations_of("alice").unwrap().is_empty(), "alice hears of it with its first message");
        assert_eq!(store.conversations_of("bob").unwrap()[0].conversation, dm);
        assert_eq!(store.members_of(&dm.key()).unwrap(), ["bob"]);
    }

    #[test]
    fn the_directory_lists_group_rooms_by_activity_with_member_counts() {
        let (_dir, store) = test_store();
        let room = |name: &str| Conversation::Room(RoomName::parse(name).unwrap());
        store.join("alice", &room("quiet")).unwrap();
        store.join("alice", &room("busy")).unwrap();
        store.join("bob", &room("busy")).unwrap();
        store.join("alice", &room("older")).unwrap();
        let dm = Conversation::direct(Username::parse("bob").unwrap(), Username::parse("alice").unwrap());
        store.join("bob", &dm).unwrap();
        let new = |c: &str| NewMessage { conversation: c.into(), author: "bob".into(), text: "x".into(), ts_ms: 1 };
        crate::storage::messages::store_for_test(&store, vec![new("older"), new("busy")]);
        let rooms = store.room_directory().unwrap();
        let rows: Vec<_> = rooms.iter().map(|r| (r.room.key(), r.members, r.latest.is_some())).collect();
        assert_eq!(rows, [("busy".into(), 2, true), ("older".into(), 1, true), ("quiet".into(), 1, false)]);
        let alice = store.conversations_of("alice").unwrap();
        assert_eq!(alice[0].read.unread, 1, "bob's message in busy is unread for alice");
    }
}
