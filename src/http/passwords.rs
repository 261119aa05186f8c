//! Changing passwords over HTTP: a signed-in person's own
//! (`POST /api/password`, which keeps the session that asked) and an
//! administrator's reset of anyone's (`POST /admin/users/<name>/password`,
//! which ends every session of that account). Both check Django's rules,
//! hash where the password was submitted, off the runtime and within the
//! `password_checks` bound, and write `SetPassword` to the log, whose
//! fan-out closes the sockets of the sessions that ended, on every node.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::accounts::{
    check_password, log_failure_json, log_failure_page, retry_after, storage_failure_json, storage_failure_page,
    Purpose, SignIn, BUSY_RETRY_AFTER, PASSWORD_CHECK_WAIT,
};
use super::identity::CurrentUser;
use super::notice::Notice;
use super::pages::{admin_form, admin_page, notice_redirect, AdminView};
use super::peer::Peer;
use super::request;
use super::respond::{error_page, json, json_error, Reply};
use crate::app::App;
use crate::auth::password;
use crate::domain::{SessionHash, Username};
use crate::log::write::{Outcome, Write};
use crate::telemetry::SECURITY;

#[derive(Deserialize)]
struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// Why a new password was not hashed.
enum HashRefused {
    /// It breaks a rule; the reasons, worded for the person choosing it.
    Rules(String),
    /// Every password-check slot stayed taken: retry in a few seconds.
    Busy,
}

/// Checks `new` against the rules for this account, then hashes it off the
/// runtime, holding one of the `password_checks` slots as sign-ins do.
async fn checked_hash(app: &App, new: &str, username: &str, email: &str) -> Result<String, HashRefused> {
    let problems = password::check_rules(new, username, email);
    if !problems.is_empty() {
        return Err(HashRefused::Rules(problems.join(" ")));
    }
    let Ok(Ok(_slot)) = tokio::time::timeout(PASSWORD_CHECK_WAIT, app.password_checks.acquire()).await else {
        return Err(HashRefused::Busy);
    };
    let new = new.to_owned();
    tokio::task::spawn_blocking(move || password::hash(&new)).await.map_err(|_| HashRefused::Busy)
}

/// `POST /api/password` JSON `{"old_password", "new_password"}`.
pub async fn change_own(app: &Arc<App>, user: &CurrentUser, request: Request<Incoming>, peer: &Peer) -> Reply {
    // A page of another site could otherwise post here with the user's cookie.
    if !request::origin_allowed(request.headers(), peer, &app.config) {
        tracing::warn!(target: SECURITY, client = %peer.address, username = %user.username.as_str(), reason = "origin", "password change refused");
        return json_error(StatusCode::FORBIDDEN, "cross-origin requests may not change a password");
    }
    let body = match request::body(request, app.config.body_deadline).await {
        Ok(body) => body,
        Err(e) => return json_error(e.status(), e.explain()),
    };
    let Ok(change) = serde_json::from_slice::<PasswordChange>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "send JSON {\"old_password\": \"...\", \"new_password\": \"...\"} with both as strings",
        );
    };
    let name = user.username.clone();
    let record = match app.store.call(move |store| store.user(name.as_str())).await {
        Ok(Some(record)) => record,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "this account no longer exists; sign in again"),
        Err(error) => return storage_failure_json(error),
    };
    // The rules first: they cost nothing and reveal nothing, and a person
    // choosing a new password should not spend sign-in attempts on them.
    let problems = password::check_rules(&change.new_password, user.username.as_str(), &record.email);
    if !problems.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, &problems.join(" "));
    }
    let username = user.username.as_str();
    match check_password(app, username, &change.old_password, peer.address, Purpose::PasswordChange).await {
        Ok(SignIn::Ok(_)) => {}
        Ok(SignIn::Invalid) => {
            return json_error(
                StatusCode::FORBIDDEN,
                "the current password is not correct; the password was not changed",
            )
        }
        Ok(SignIn::Throttled(wait)) => {
            let answer = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong passwords; wait a few minutes, then try again",
            );
            return retry_after(answer, wait);
        }
        Ok(SignIn::Busy) => return busy_json(),
        Err(error) => return storage_failure_json(error),
    }
    let password_hash = match checked_hash(app, &change.new_password, username, &record.email).await {
        Ok(hash) => hash,
        Err(HashRefused::Rules(reasons)) => return json_error(StatusCode::BAD_REQUEST, &reasons),
        Err(HashRefused::Busy) => return busy_json(),
    };
    let keep_session = Some(SessionHash(user.session_hash()));
    let write = Write::SetPassword { username: user.username.clone(), password_hash, keep_session };
    match app.log.apply(write).await {
        Ok(Outcome::Applied) => {
            tracing::info!(target: SECURITY, client = %peer.address, username = %username, "password changed by its owner; their other sessions ended");
            json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
        Ok(Outcome::NoSuchUser) => json_error(StatusCode::UNAUTHORIZED, "this account no longer exists; sign in again"),
        Ok(other) => {
            tracing::error!(?other, "a password change came to an unexpected outcome");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the password change had an unexpected outcome; try again")
        }
        Err(error) => log_failure_json(error),
    }
}

fn busy_json() -> Reply {
    let answer = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "the server is busy checking other passwords; try again in a few seconds",
    );
    retry_after(answer, BUSY_RETRY_AFTER)
}

/// `POST /admin/users/<name>/password` (superusers; form fields `password`
/// and `csrf_token`): a new password for `target`, and every session of
/// theirs ends.
pub async fn admin_reset(
    app: &Arc<App>,
    user: &CurrentUser,
    request: Request<Incoming>,
    target: Username,
    secure: bool,
) -> Reply {
    let fields = match admin_form(app, user, request).await {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let new = fields.get("password").map(String::as_str).unwrap_or("");
    let name = target.clone();
    let record = match app.store.call(move |store| store.user(name.as_str())).await {
        Ok(Some(record)) => record,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "There is no user with that name."),
        Err(error) => return storage_failure_page(error),
    };
    let password_hash = match checked_hash(app, new, target.as_str(), &record.email).await {
        Ok(hash) => hash,
        Err(HashRefused::Rules(reasons)) => {
            let error = format!("The password of {} was not changed: {reasons}", target.as_str());
            return refused_reset(app, user, StatusCode::BAD_REQUEST, &target, &error).await;
        }
        Err(HashRefused::Busy) => {
            let error = "The server is busy checking other passwords. Try again in a few seconds.";
            let page = refused_reset(app, user, StatusCode::TOO_MANY_REQUESTS, &target, error).await;
            return retry_after(page, BUSY_RETRY_AFTER);
        }
    };
    // Applying it also closes that user's sockets, on every node.
    let write = Write::SetPassword { username: target.clone(), password_hash, keep_session: None };
    match app.log.apply(write).await {
        Ok(Outcome::Applied) => {
            tracing::info!(target: SECURITY, by = %user.username.as_str(), username = %target.as_str(), "password set from the admin page; their sessions ended");
            notice_redirect(Notice::PasswordSet(target), secure)
        }
        Ok(Outcome::NoSuchUser) => error_page(StatusCode::NOT_FOUND, "There is no user with that name."),
        Ok(other) => {
            tracing::error!(?other, "a password reset came to an unexpected outcome");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "The password change had an unexpected outcome. Try again.")
        }
        Err(error) => log_failure_page(error),
    }
}

/// The admin page again after a refused reset: the error, and the
/// target's reset form open (the password itself is never shown again).
async fn refused_reset(
    app: &Arc<App>,
    user: &CurrentUser,
    status: StatusCode,
    target: &Username,
    error: &str,
) -> Reply {
    let view = AdminView { error, reset_open: Some(target.as_str()), ..AdminView::default() };
    admin_page(app, user, status, view).await
}
