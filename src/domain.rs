//! Validated names and ids. A value of these types can only exist valid, so
//! code past the edge (HTTP parsing, CLI parsing) trusts them without checks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A room name: 1 to 64 characters of `[A-Za-z0-9_]` (the seed's ASCII `\w+`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomName(String);

impl RoomName {
    /// The longest room name, in bytes (ASCII, so also characters).
    pub const MAX_LEN: usize = 64;

    /// The only way to make a room name from outside input (URLs, stored keys).
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(NameError::Length { what: "room name", max: Self::MAX_LEN });
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(NameError::Characters { what: "room name", allowed: "letters, digits and _" });
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as it appears in URLs and as the conversation key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A username: 1 to 150 characters of `[A-Za-z0-9_.@+-]` (Django's rule),
/// not made only of dots (`.` and `..` are path segments a URL cannot carry),
/// compared case-sensitively. That two names may not differ only in ASCII
/// case is storage's rule (`storage::accounts`), checked where accounts are
/// created.
///
/// Read back (from storage, or a cluster's stream) with `from_stored`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Django's limit, in bytes (ASCII, so also characters).
    pub const MAX_LEN: usize = 150;

    /// Checks a name typed by a person or taken from a URL; stored names use `from_stored`.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(NameError::Length { what: "username", max: Self::MAX_LEN });
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'+' | b'-')) {
            return Err(NameError::Characters { what: "username", allowed: "letters, digits and _ . @ + -" });
        }
        if raw.bytes().all(|b| b == b'.') {
            return Err(NameError::OnlyDots { what: "username" });
        }
        Ok(Self(raw.to_owned()))
    }

    /// A name read back from storage. Accounts named only with dots could be
    /// created before `parse` refused them; they keep signing in and
    /// chatting, though no URL can name them.
    pub fn from_stored(raw: &str) -> Result<Self, NameError> {
        match Self::parse(raw) {
            Err(NameError::OnlyDots { .. }) => Ok(Self(raw.to_owned())),
            other => other,
        }
    }

    /// The name exactly as stored and shown; compare it case-sensitively.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A username reads as the text it is wherever a `&str` is expected.
impl std::ops::Deref for Username {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Username {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Username {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Maps keyed by `Username` are looked up with a plain `&str` (a name from
/// a URL or storage) without building a `Username`; both hash alike.
impl std::borrow::Borrow<str> for Username {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Why a name was refused, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or too long; `max` is the limit in characters.
    #[error("a {what} must be 1 to {max} characters long")]
    Length {
        /// Which kind of name, for the message.
        what: &'static str,
        /// The most characters allowed.
        max: usize,
    },
    /// A character outside the set; `allowed` lists the set for the message.
    #[error("a {what} may only contain {allowed}")]
    Characters {
        /// Which kind of name, for the message.
        what: &'static str,
        /// The characters allowed, in words.
        allowed: &'static str,
    },
    /// Only `.`: a URL cannot carry `.` or `..` as a segment.
    #[error("a {what} cannot be made only of dots (. and .. would break its links)")]
    OnlyDots {
        /// Which kind of name, for the message.
        what: &'static str,
    },
}

/// Where messages live: a group room or the private conversation of two users.
/// Its key (`lobby`, `dm:alice:bob`) is the `room` field of every frame and the
/// storage key; room names cannot contain `:`, so the two kinds never collide.
/// It is serialised as its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Conversation {
    /// A group room anyone signed in may join by name.
    Room(RoomName),
    /// Two users' private conversation; `low` sorts first by bytes,
    /// so both users open the same one.
    Direct {
        /// The member whose name sorts first by bytes.
        low: Username,
        /// The other member (the same one, for a chat with oneself).
        high: Username,
    },
}

impl Conversation {
    /// The direct conversation between two users; the same value whichever
    /// of the two opens it.
    pub fn direct(a: Username, b: Username) -> Self {
        if a.as_str().as_bytes() <= b.as_str().as_bytes() {
            Conversation::Direct { low: a, high: b }
        } else {
            Conversation::Direct { low: b, high: a }
        }
    }

    /// The storage key and the `room` field of every frame: the room name, or `dm:low:high`.
    pub fn key(&self) -> String {
        match self {
            Conversation::Room(room) => room.as_str().to_owned(),
            Conversation::Direct { low, high } => format!("dm:{}:{}", low.as_str(), high.as_str()),
        }
    }

    /// Parses a stored key back; `None` for a key no version of chatctl writes.
    pub fn from_key(key: &str) -> Option<Self> {
        match key.strip_prefix("dm:") {
            Some(pair) => {
                let (a, b) = pair.split_once(':')?;
                Some(Conversation::direct(Username::from_stored(a).ok()?, Username::from_stored(b).ok()?))
            }
            None => RoomName::parse(key).ok().map(Conversation::Room),
        }
    }

    /// For a direct conversation, the member who is not `me`.
    pub fn peer_of(&self, me: &Username) -> Option<&Username> {
        match self {
            Conversation::Room(_) => None,
            Conversation::Direct { low, high } => Some(if low == me { high } else { low }),
        }
    }
}

/// A message's position. Ids are allocated from one increasing sequence, so
/// within a conversation they follow its order; on the wire they are written
/// as 20 zero-padded digits so that they also sort as strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl MessageId {
    /// Reads an id from a URL (`since=`, `before=`, `after=`): 1 to
    /// 20 digits, leading zeros allowed.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        raw.parse().ok().map(MessageId)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}", self.0)
    }
}

/// A chat message's text: trimmed of Unicode white space, 1 to 4096 scalar values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageText(String);

impl MessageText {
    /// PROTOCOL.md's limit, counted in Unicode scalar values after trimming.
    pub const MAX_CHARS: usize = 4096;

    /// Trims and checks a message as a client sent it; the only way to make one.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        // `str::trim` trims exactly the Unicode White_Space property.
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TextError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(TextError::TooLong);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The trimmed text, as stored and sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Gives up the type; code on the way to storage keeps `MessageText` until the storage call.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Why a message text was refused; the socket turns it into an error frame's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// Nothing left after trimming white space (`empty`).
    Empty,
    /// Over `MessageText::MAX_CHARS` after trimming (`too_long`).
    TooLong,
}

/// The SHA-256 of a session cookie's token: the key a session is stored
/// and ended under (the token itself is never stored). Written as 64 hex
/// digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionHash(pub [u8; 32]);

impl SessionHash {
    /// Parses 64 hex digits (only digits: `from_str_radix` alone would
    /// also take a `+` sign).
    pub fn from_hex(hex: &str) -> Option<SessionHash> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(SessionHash(out))
    }

    /// The 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A serialised value that breaks its type's rules (a record from a broken
/// or hostile writer), refused as it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {detail}")]
pub struct InvalidValue {
    what: &'static str,
    detail: String,
}

impl InvalidValue {
    fn new(what: &'static str, detail: impl fmt::Display) -> Self {
        InvalidValue { what, detail: detail.to_string() }
    }
}

impl TryFrom<String> for RoomName {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, InvalidValue> {
        RoomName::parse(&raw).map_err(|e| InvalidValue::new("room name", e))
    }
}

impl From<RoomName> for String {
    fn from(name: RoomName) -> String {
        name.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, InvalidValue> {
        Username::from_stored(&raw).map_err(|e| InvalidValue::new("username", e))
    }
}

impl From<Username> for String {
    fn from(name: Username) -> String {
        name.0
    }
}

impl TryFrom<String> for Conversation {
    type Error = InvalidValue;
    fn try_from(key: String) -> Result<Self, InvalidValue> {
        Conversation::from_key(&key).ok_or_else(|| InvalidValue::new("conversation", key))
    }
}

impl From<Conversation> for String {
    fn from(conversation: Conversation) -> String {
        conversation.key()
    }
}

impl TryFrom<String> for MessageText {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, InvalidValue> {
        // Text is stored trimmed, so a valid one parses back unchanged.
        MessageText::parse(&raw).map_err(|e| InvalidValue::new("message text", format!("{e:?}")))
    }
}

impl From<MessageText> for String {
    fn from(text: MessageText) -> String {
        text.0
    }
}

impl TryFrom<String> for SessionHash {
    type Error = InvalidValue;
    fn try_from(hex: String) -> Result<Self, InvalidValue> {
        SessionHash::from_hex(&hex).ok_or_else(|| InvalidValue::new("session hash", "not 64 hex digits"))
    }
}

impl From<SessionHash> for String {
    fn from(hash: SessionHash) -> String {
        hash.to_hex()
    }
}

/// Whom per-client limits (sign-in throttling, connection caps) count
/// against: an IPv4 address, or the /64 of an IPv6 one (a host is given a
/// whole /64 and picks addresses in it freely).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientHost {
    /// An IPv4 client (IPv4-mapped IPv6 included), counted alone.
    V4(u32),
    /// An IPv6 client, counted by its /64: the top 64 bits.
    V6Prefix(u64),
}

impl ClientHost {
    /// The key a client's address counts under.
    pub fn of(address: std::net::IpAddr) -> ClientHost {
        match canonical_ip(address) {
            std::net::IpAddr::V4(v4) => ClientHost::V4(u32::from(v4)),
            std::net::IpAddr::V6(v6) => ClientHost::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The string form other nodes read back (`FromStr`): an IPv4 address as
/// `203.0.113.7`, an IPv6 /64 as `2001:db8:0:1::/64`.
impl fmt::Display for ClientHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientHost::V4(v4) => write!(f, "{}", std::net::Ipv4Addr::from(*v4)),
            ClientHost::V6Prefix(prefix) => write!(f, "{}/64", std::net::Ipv6Addr::from(u128::from(*prefix) << 64)),
        }
    }
}

impl std::str::FromStr for ClientHost {
    type Err = InvalidValue;
    fn from_str(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::new("client host", "neither an IPv4 address nor an IPv6 /64");
        match raw.strip_suffix("/64") {
            Some(v6) => {
                let v6: std::net::Ipv6Addr = v6.parse().map_err(|_| invalid())?;
                Ok(ClientHost::V6Prefix((u128::from(v6) >> 64) as u64))
            }
            None => Ok(ClientHost::V4(u32::from(raw.parse::<std::net::Ipv4Addr>().map_err(|_| invalid())?))),
        }
    }
}

/// An IPv4 address seen as IPv6 (`::ffff:a.b.c.d`, from dual-stack
/// sockets) is the IPv4 address, for every rule that looks at addresses.
pub fn canonical_ip(address: std::net::IpAddr) -> std::net::IpAddr {
    match address {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, std::net::IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hosts_travel_as_text_and_come_back_the_same() {
        for raw in ["203.0.113.7", "::ffff:203.0.113.7", "2001:db8:0:1::42", "::1"] {
            let host = ClientHost::of(raw.parse().unwrap());
            assert_eq!(host.to_string().parse::<ClientHost>(), Ok(host), "{raw} as {host}");
        }
        assert_eq!(ClientHost::of("2001:db8:0:1::42".parse().unwrap()).to_string(), "2001:db8:0:1::/64");
        assert_eq!(ClientHost::of("::ffff:203.0.113.7".parse().unwrap()).to_string(), "203.0.113.7");
        assert!("2001:db8::1".parse::<ClientHost>().is_err(), "an IPv6 host counts by its /64");
        assert!("example.com".parse::<ClientHost>().is_err());
    }

    #[test]
    fn room_names_follow_the_seed_rule() {
        assert!(RoomName::parse("lobby_2").is_ok());
        assert!(RoomName::parse(&"a".repeat(64)).is_ok());
        assert!(RoomName::parse(&"a".repeat(65)).is_err());
        assert!(RoomName::parse("").is_err());
        assert!(RoomName::parse("caf\u{e9}").is_err());
        assert!(RoomName::parse("a-b").is_err());
        assert!(RoomName::parse("dm:a:b").is_err());
    }

    #[test]
    fn usernames_follow_django_rule() {
        assert!(Username::parse("a.b+c-d@e_f").is_ok());
        assert!(Username::parse(&"u".repeat(150)).is_ok());
        assert!(Username::parse(&"u".repeat(151)).is_err());
        assert!(Username::parse("with space").is_err());
        assert!(Username::parse("colon:").is_err());
        assert_ne!(Username::parse("Bob").unwrap(), Username::parse("bob").unwrap());
    }

    #[test]
    fn usernames_made_only_of_dots_are_refused_with_the_reason() {
        for dots in [".", "..", "..."] {
            let err = Username::parse(dots).unwrap_err();
            assert_eq!(err, NameError::OnlyDots { what: "username" });
            assert!(err.to_string().contains("only of dots"), "{err}");
            // An account an older version created still reads back.
            assert_eq!(Username::from_stored(dots).unwrap().as_str(), dots);
        }
        assert!(Username::parse(".a.").is_ok());
        assert!(Username::parse("a..").is_ok());
        assert!(Username::from_stored("with space").is_err());
    }

    #[test]
    fn direct_conversation_is_the_same_from_both_sides() {
        let a = Username::parse("zed").unwrap();
        let b = Username::parse("Amy").unwrap();
        let one = Conversation::direct(a.clone(), b.clone());
        let other = Conversation::direct(b.clone(), a.clone());
        assert_eq!(one, other);
        assert_eq!(one.key(), "dm:Amy:zed");
        assert_eq!(Conversation::from_key("dm:Amy:zed"), Some(one.clone()));
        assert_eq!(one.peer_of(&a), Some(&b));
    }

    #[test]
    fn message_ids_sort_as_strings() {
        let small = MessageId(9).to_string();
        let big = MessageId(10).to_string();
        assert!(small < big);
        assert_eq!(MessageId::parse(&big), Some(MessageId(10)));
        assert_eq!(MessageId::parse("-1"), None);
        assert_eq!(MessageId::parse("abc"), None);
    }

    #[test]
    fn message_text_is_trimmed_and_bounded() {
        assert_eq!(MessageText::parse("  hi \u{3000}\n").unwrap().as_str(), "hi");
        assert_eq!(MessageText::parse(" \u{2003} "), Err(TextError::Empty));
        assert!(MessageText::parse(&"\u{e9}".repeat(4096)).is_ok());
        assert_eq!(MessageText::parse(&"x".repeat(4097)), Err(TextError::TooLong));
    }
}
