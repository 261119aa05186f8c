//! CSRF tokens for HTML forms. Before sign-in a token is the value of the
//! `chatctl_csrf` cookie (double submit: a foreign site can neither read nor
//! set it); once signed in it is derived from the session token, which the
//! page's origin alone can obtain.

use sha2::{Digest, Sha256};

use super::session::{constant_time_eq, hex, random_hex};

/// The cookie that holds a visitor's CSRF token before sign-in; forms echo it (double submit).
pub const COOKIE_NAME: &str = "chatctl_csrf";

/// A token for a visitor whose request brought no usable CSRF cookie.
pub fn new_anonymous_token() -> String {
    random_hex::<32>()
}

/// The `Set-Cookie` value for a visitor's token: no `Max-Age`, so it ends with the
/// browser session; `Secure` when the server says so.
pub fn anonymous_cookie(token: &str, secure: bool) -> String {
    format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Lax; Path=/{}", if secure { "; Secure" } else { "" })
}

/// The token a signed-in user's forms carry.
pub fn session_token(session_token: &str) -> String {
    hex(&Sha256::digest(format!("chatctl-csrf:{session_token}").as_bytes()))
}

/// Whether a submitted token matches the expected one.
pub fn matches(submitted: &str, expected: &str) -> bool {
    !expected.is_empty() && constant_time_eq(submitted.as_bytes(), expected.as_bytes())
}
