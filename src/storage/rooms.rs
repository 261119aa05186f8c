//! Rooms (created on first join, with the joiner as owner) and memberships,
//! which the lobby lists.

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::{now_ms, schema, Message, Result, Store};
use crate::domain::Conversation;

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
}

/// Writes inside a caller's transaction (see `log::apply`).
pub(crate) mod in_txn {
    use redb::{ReadableTable, WriteTransaction};

    use super::RoomRecord;
    use crate::domain::Conversation;
    use crate::storage::{encode, schema, Result};

    /// Records that `user` joined `conversation`: creates the room on first
    /// join (owner = `user`) and the membership, of both members for a
    /// direct conversation. Joining again changes nothing.
    pub fn join(txn: &WriteTransaction, user: &str, conversation: &Conversation, now_ms: u64) -> Result<()> {
        let key = conversation.key();
        let mut rooms = txn.open_table(schema::ROOMS)?;
        if rooms.get(key.as_str())?.is_none() {
            let record = RoomRecord { owner: user.to_owned(), created_at_ms: now_ms };
            rooms.insert(key.as_str(), encode(&record).as_slice())?;
        }
        let mut memberships = txn.open_table(schema::MEMBERSHIPS)?;
        for member in super::members(user, conversation) {
            if memberships.get((member, key.as_str()))?.is_none() {
                memberships.insert((member, key.as_str()), now_ms)?;
            }
        }
        Ok(())
    }
}

/// Who a join makes a member: the joiner, or both users of a direct chat.
fn members<'a>(user: &'a str, conversation: &'a Conversation) -> Vec<&'a str> {
    match conversation {
        Conversation::Room(_) => vec![user],
        Conversation::Direct { low, high } => vec![low.as_str(), high.as_str()],
    }
}

impl Store {
    /// Whether joining `conversation` would change nothing: the fast path
    /// of every socket upgrade, which then writes nothing.
    pub fn is_member(&self, user: &str, conversation: &Conversation) -> Result<bool> {
        let key = conversation.key();
        let txn = self.db()?.begin_read()?;
        let memberships = txn.open_table(schema::MEMBERSHIPS)?;
        for member in members(user, conversation) {
            if memberships.get((member, key.as_str()))?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `in_txn::join` in a transaction of its own, bypassing the log: for tests.
    pub fn join(&self, user: &str, conversation: &Conversation) -> Result<()> {
        self.write(|txn| in_txn::join(txn, user, conversation, now_ms()))
    }

    /// The owner of a room, if it exists.
    #[cfg(test)]
    pub fn room_owner(&self, conversation: &Conversation) -> Result<Option<String>> {
        let txn = self.db()?.begin_read()?;
        let rooms = txn.open_table(schema::ROOMS)?;
        let found = rooms.get(conversation.key().as_str())?;
        Ok(found.map(|v| super::decode::<RoomRecord>(v.value())).transpose()?.map(|r| r.owner))
    }

    /// The user's conversations, most recently active first.
    pub fn conversations_of(&self, user: &str) -> Result<Vec<ConversationSummary>> {
        let keys: Vec<String> = {
            let txn = self.db()?.begin_read()?;
            let memberships = txn.open_table(schema::MEMBERSHIPS)?;
            let mut keys = Vec::new();
            for entry in memberships.range((user, "")..)? {
                let (key, _) = entry?;
                let (member, conversation) = key.value();
                if member != user {
                    break;
                }
                keys.push(conversation.to_owned());
            }
            keys
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(conversation) = Conversation::from_key(&key) else { continue };
            let latest = self.latest_message(&key)?;
            out.push(ConversationSummary { conversation, latest });
        }
        out.sort_by(|a, b| {
            let id = |s: &ConversationSummary| s.latest.as_ref().map(|m| m.id);
            id(b).cmp(&id(a))
        });
        Ok(out)
    }
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
    fn a_direct_conversation_is_listed_for_both_members() {
        let (_dir, store) = test_store();
        let dm = Conversation::direct(Username::parse("bob").unwrap(), Username::parse("alice").unwrap());
        store.join("bob", &dm).unwrap();
        assert_eq!(store.conversations_of("alice").unwrap()[0].conversation, dm);
        assert_eq!(store.conversations_of("bob").unwrap()[0].conversation, dm);
    }
}
