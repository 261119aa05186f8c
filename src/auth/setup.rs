//! The first-run setup token: a random secret that lets the setup page
//! create the first superuser, until any account exists.

use std::sync::Mutex;

#[derive(Default)]
pub struct SetupToken(Mutex<Option<String>>);

impl SetupToken {
    pub fn new(token: Option<String>) -> Self {
        SetupToken(Mutex::new(token))
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Any account now exists: the setup page stops working.
    pub fn close(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
