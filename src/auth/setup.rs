//! The first-run setup token: a random secret that lets the setup page
//! create the first superuser, until any account exists.

use std::sync::Mutex;

/// Shared by the setup page, which checks it, and startup, which prints its link;
/// empty once any account exists.
#[derive(Default)]
pub struct SetupToken(Mutex<Option<String>>);

impl SetupToken {
    /// `None` when the database already has an account: setup is closed from the start.
    pub fn new(token: Option<String>) -> Self {
        SetupToken(Mutex::new(token))
    }

    /// The token the setup page must be given; `None` once setup is closed.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Any account now exists: the setup page stops working.
    pub fn close(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
