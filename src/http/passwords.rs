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
    check_password, hash_in_slot, log_failure_json, log_failure_page, retry_after, storage_failure_json,
    storage_failure_page, Purpose, SignIn, BUSY_CHECKING, BUSY_RETRY_AFTER,
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
    let Some(password_hash) = hash_in_slot(app, &change.new_password).await else { return busy_json() };
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
    let problems = password::check_rules(new, target.as_str(), &record.email);
    if !problems.is_empty() {
        let error = format!("The password of {} was not changed: {}", target.as_str(), problems.join(" "));
        return refused_reset(app, user, StatusCode::BAD_REQUEST, &target, &error).await;
    }
    let Some(password_hash) = hash_in_slot(app, new).await else {
        let page = refused_reset(app, user, StatusCode::TOO_MANY_REQUESTS, &target, BUSY_CHECKING).await;
        return retry_after(page, BUSY_RETRY_AFTER);
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
