//! Session tokens: 256 random bits in the cookie, only their SHA-256 stored,
//! so a copy of the database does not let anyone sign in.

use sha2::{Digest, Sha256};

/// The cookie that carries the session token; the server keeps only its hash.
pub const COOKIE_NAME: &str = "chatctl_session";
/// Two weeks, Django's default.
pub const LIFETIME_MS: u64 = 14 * 24 * 3600 * 1000;

/// A new random token, as 64 hex characters.
pub fn new_token() -> String {
    random_hex::<32>()
}

/// The key a session is stored and looked up under, so the token itself is never stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `N` bytes from the OS random source as `2N` hex digits: tokens, and unguessable
/// suffixes for temporary file names.
pub fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex(&bytes)
}

/// Lower-case hex, the form tokens and hashes take in cookies, forms and file names.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Compares secrets without an early exit, so timing reveals nothing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Set-Cookie` value for a new session.
pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{}",
        LIFETIME_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn expired_session_cookie(secure: bool) -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}", if secure { "; Secure" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token());
        assert_eq!(token_hash(&a), token_hash(&a));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn cookie_carries_the_required_attributes() {
        let c = session_cookie("t", false);
        assert!(c.starts_with("chatctl_session=t; HttpOnly; SameSite=Lax; Path=/"));
        assert!(!c.contains("Secure"));
        assert!(session_cookie("t", true).ends_with("; Secure"));
    }
}
