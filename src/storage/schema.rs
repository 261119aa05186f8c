//! The redb tables. Values are JSON so that later versions can add fields
//! without a migration; keys are typed so that ranges sort correctly.

use redb::TableDefinition;

/// `schema_version` and `next_message_id`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `META` key of the schema version, which `Store::open` checks against this build's.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";
/// `META` key of the single node's next message id; a cluster node never uses it.
pub const NEXT_MESSAGE_ID_KEY: &str = "next_message_id";

/// username -> `UserRecord`.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// A username folded to ASCII lower case -> the username that holds it.
/// Names unique in this table cannot differ only in case; lookups still
/// go to `USERS`, exactly as written.
pub const USERNAME_FOLDS: TableDefinition<&str, &str> = TableDefinition::new("username_folds");
/// SHA-256 of the session token -> `SessionRecord`. The token itself is never stored.
pub const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
/// conversation key -> `RoomRecord`.
pub const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");
/// (username, conversation key) -> joined at (ms).
pub const MEMBERSHIPS: TableDefinition<(&str, &str), u64> = TableDefinition::new("memberships");
/// (conversation key, username) -> joined at (ms): `MEMBERSHIPS` the other
/// way round, for a conversation's members (presence, unread fan-out).
pub const MEMBERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("members");
/// (conversation key, entry id) -> `StoredEntry`: messages, edits, deletions.
pub const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// (username, conversation key) -> the id the user has read up to.
pub const READ_MARKERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("read_markers");

/// Cluster nodes: the next stream offset to apply, stored with what was applied.
pub const STREAM_NEXT_OFFSET_KEY: &str = "stream_next_offset";

/// Cluster nodes: the highest `seq` applied from the writing process `node`.
pub fn node_seq_key(node: u64) -> String {
    format!("node_seq:{node:016x}")
}

/// Something done to every table of the schema, whatever its key and value
/// types (backups copy each one).
pub trait TableVisitor {
    /// What stops the walk; `for_each_table` returns it at once.
    type Error;
    /// Called once per table, with its typed definition, so the visitor can open it.
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), Self::Error>;
}

/// Every table of the schema, the one list backups copy from. A table added
/// above must be added here too: a unit test fails while a fresh database
/// holds a table this list misses, and a backup refuses to leave one out.
pub fn for_each_table<T: TableVisitor>(visitor: &mut T) -> Result<(), T::Error> {
    visitor.table(META)?;
    visitor.table(USERS)?;
    visitor.table(USERNAME_FOLDS)?;
    visitor.table(SESSIONS)?;
    visitor.table(ROOMS)?;
    visitor.table(MEMBERSHIPS)?;
    visitor.table(MEMBERS)?;
    visitor.table(MESSAGES)?;
    visitor.table(READ_MARKERS)?;
    Ok(())
}

/// The names of every table `for_each_table` visits.
pub fn table_names() -> Vec<String> {
    struct Names(Vec<String>);
    impl TableVisitor for Names {
        type Error = std::convert::Infallible;
        fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
            &mut self,
            table: TableDefinition<'static, K, V>,
        ) -> Result<(), Self::Error> {
            self.0.push(redb::TableHandle::name(&table).to_owned());
            Ok(())
        }
    }
    let mut names = Names(Vec::new());
    let Ok(()) = for_each_table(&mut names);
    names.0
}

#[cfg(test)]
mod tests {
    use redb::{MultimapTableHandle, ReadableDatabase, TableHandle};

    #[test]
    fn the_table_list_names_every_table_of_a_fresh_database() {
        let (_dir, store) = crate::storage::test_store();
        let txn = store.db().unwrap().begin_read().unwrap();
        let mut in_db: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_owned()).collect();
        in_db.sort();
        let mut listed = super::table_names();
        listed.sort();
        assert_eq!(
            in_db, listed,
            "a table of the schema is missing from schema::for_each_table (backups copy that list)"
        );
        let multimap: Vec<String> = txn.list_multimap_tables().unwrap().map(|t| t.name().to_owned()).collect();
        assert!(multimap.is_empty(), "backups copy no multimap tables, and the database has {multimap:?}: add them");
    }
}
