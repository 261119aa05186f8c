//! The redb tables. Values are JSON so that later versions can add fields
//! without a migration; keys are typed so that ranges sort correctly.

use redb::TableDefinition;

/// `schema_version` and `next_message_id`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const SCHEMA_VERSION_KEY: &str = "schema_version";
pub const NEXT_MESSAGE_ID_KEY: &str = "next_message_id";

/// username -> `UserRecord`.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// SHA-256 of the session token -> `SessionRecord`. The token itself is never stored.
pub const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
/// conversation key -> `RoomRecord`.
pub const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");
/// (username, conversation key) -> joined at (ms).
pub const MEMBERSHIPS: TableDefinition<(&str, &str), u64> = TableDefinition::new("memberships");
/// (conversation key, message id) -> `StoredMessage`.
pub const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

/// Cluster nodes: the next stream offset to apply, stored with what was applied.
pub const STREAM_NEXT_OFFSET_KEY: &str = "stream_next_offset";

/// Cluster nodes: the highest `seq` applied from the writing process `node`.
pub fn node_seq_key(node: u64) -> String {
    format!("node_seq:{node:016x}")
}
