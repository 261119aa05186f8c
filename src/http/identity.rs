//! Who is asking: the session cookie resolved to an active user.

use std::sync::Arc;

use hyper::header::HeaderMap;

use super::request::cookie;
use crate::app::App;
use crate::auth::{csrf, session};
use crate::domain::{SessionHash, Username};
use crate::log::write::Write;
use crate::log::LogError;
use crate::storage::{self, now_ms, SessionRecord};

/// A signed-in, active user and the session they came with.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    /// Who is signed in; checked active when the session was resolved.
    pub username: Username,
    /// May see `/admin` and use its actions.
    pub is_superuser: bool,
    session_token: String,
}

impl CurrentUser {
    /// The CSRF token this user's forms must carry.
    pub fn csrf_token(&self) -> String {
        csrf::session_token(&self.session_token)
    }

    /// The key of this user's session: a socket opened with it
    /// closes when it ends, and sign-out ends it.
    pub fn session_hash(&self) -> [u8; 32] {
        session::token_hash(&self.session_token)
    }
}

/// The signed-in user, or `None` for no, unknown, expired or deactivated session.
pub async fn current_user(app: &Arc<App>, headers: &HeaderMap) -> storage::Result<Option<CurrentUser>> {
    match cookie(headers, session::COOKIE_NAME) {
        Some(token) => user_of_token(app, token).await,
        None => Ok(None),
    }
}

/// The signed-in user of a session cookie's token, as `current_user`.
pub async fn user_of_token(app: &Arc<App>, token: &str) -> storage::Result<Option<CurrentUser>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let token = token.to_owned();
    let hash = session::token_hash(&token);
    let user = app.store.call(move |store| store.session_user(&hash, now_ms())).await?;
    Ok(user.and_then(|user| {
        let username = Username::from_stored(&user.username).ok()?;
        Some(CurrentUser { username, is_superuser: user.is_superuser, session_token: token })
    }))
}

/// Starts a session for `username` (through the log, so every node knows
/// it); returns the cookie token.
pub async fn start_session(app: &Arc<App>, username: &Username) -> Result<String, LogError> {
    let token = session::new_token();
    let now = now_ms();
    let session =
        SessionRecord { username: username.clone(), created_at_ms: now, expires_at_ms: now + session::LIFETIME_MS };
    let token_hash = SessionHash(session::token_hash(&token));
    app.log.apply(Write::CreateSession { token_hash, session }).await?;
    Ok(token)
}
