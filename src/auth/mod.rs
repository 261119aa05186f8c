//! Accounts and sign-in: password hashing and rules, session tokens, CSRF
//! tokens and login throttling. Storage of users and sessions is in `storage`.

pub mod csrf;
pub mod password;
pub mod session;
pub mod setup;
pub mod throttle;
