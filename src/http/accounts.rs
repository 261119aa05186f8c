//! Signing in and out (HTML form and JSON API) and the first-run setup page.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::identity::{current_user, start_session, CurrentUser};
use super::notice::{self, Notice, Place};
use super::peer::Peer;
use super::request::{self, cookie, form, query, safe_next};
use super::respond::{self, error_page, json, json_error, see_other, with_cookie, Reply};
use super::templates::{self, Page};
use crate::app::App;
use crate::auth::throttle::{LoginThrottle, Throttled};
use crate::auth::{csrf, password, session};
use crate::chat::ephemeral::{Ephemeral, EphemeralBus};
use crate::domain::{ClientHost, SessionHash, Username};
use crate::log::write::{Outcome, Write};
use crate::log::LogError;
use crate::metrics::Metrics;
use crate::shutdown::Stopping;
use crate::storage::{now_ms, StorageError, UserRecord};
use crate::telemetry::{log_safe, SECURITY};

/// What a sign-in attempt came to.
pub enum SignIn {
    /// The password matched an active account: start its session.
    Ok(UserRecord),
    /// Unknown user, deactivated user or wrong password: one answer
    /// for all, so names cannot be probed.
    Invalid,
    /// Refused unchecked: this address (or this address against this name)
    /// failed too often. Retry after the given time.
    Throttled(Duration),
    /// Not checked: every password-check slot stayed taken (a login storm).
    /// Not counted against anyone; they should simply retry.
    Busy,
}

/// Why a password is being checked; the security log and the metrics say
/// which. Both count a wrong password in the login throttle alike, so the
/// password-change form is no way around it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Signing in (the form or `/api/login`).
    SignIn,
    /// A signed-in user confirming their current password to change it.
    PasswordChange,
}

impl Purpose {
    fn log_words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Purpose::SignIn => ("signed in", "sign-in failed", "sign-in throttled"),
            Purpose::PasswordChange => (
                "current password confirmed",
                "password change refused: wrong current password",
                "password change throttled",
            ),
        }
    }
}

/// Checks credentials. Unknown users, deactivated users and wrong passwords
/// all cost one argon2 verification and give the same answer. `client` is
/// the client's address as resolved through trusted proxies.
pub async fn authenticate(
    app: &Arc<App>,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<SignIn, StorageError> {
    check_password(app, username, password, client, Purpose::SignIn).await
}

/// `authenticate`, for any `purpose`: the same throttle, the same bounded
/// number of argon2 checks at once, the same answers.
pub async fn check_password(
    app: &Arc<App>,
    username: &str,
    password: &str,
    client: IpAddr,
    purpose: Purpose,
) -> Result<SignIn, StorageError> {
    let (ok_words, failed_words, _) = purpose.log_words();
    // Lenient: an account made only of dots, from before the rule, signs in.
    let valid_name = Username::from_stored(username).ok();
    let name = valid_name.as_ref().map(Username::as_str);
    let delay = match app.login_throttle.admit(name, client) {
        Ok(delay) => delay,
        Err(throttled) => return Ok(throttled_attempt(app, throttled, username, client, purpose)),
    };
    // A name under attack: every attempt on it waits, the owner's too, but
    // only for seconds, and without holding a password-check slot.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Some(_slot) = password_slot(app).await else {
        app.metrics.logins_busy.fetch_add(1, Ordering::Relaxed);
        return Ok(SignIn::Busy);
    };
    // Failures may have landed while this attempt waited: ask again, now
    // counting the attempts still being checked, so a burst of parallel
    // guesses cannot slip past the limits.
    let pending_until = std::time::Instant::now() + PASSWORD_CHECK_WAIT;
    let attempt = loop {
        match app.login_throttle.reserve(name, client) {
            Ok(attempt) => break attempt,
            // Their outcomes are milliseconds away (they hold the other slots).
            Err(Throttled::Pending) if std::time::Instant::now() < pending_until => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(Throttled::Pending) => return Ok(SignIn::Busy),
            Err(throttled) => return Ok(throttled_attempt(app, throttled, username, client, purpose)),
        }
    };
    let user = match valid_name.clone() {
        Some(name) => app.store.call(move |store| store.user(name.as_str())).await?,
        None => None,
    };
    let password = password.to_owned();
    let verified = tokio::task::spawn_blocking(move || {
        let hash = user.as_ref().map_or(password::dummy_hash(), |u| u.password_hash.as_str());
        let matches = password::verify(&password, hash);
        user.filter(|u| matches && u.is_active)
    })
    .await
    .unwrap_or(None);
    match verified {
        Some(user) => {
            attempt.succeeded();
            if purpose == Purpose::SignIn {
                app.metrics.logins_succeeded.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(target: SECURITY, client = %client, username = %log_safe(username), "{ok_words}");
            Ok(SignIn::Ok(user))
        }
        None => {
            attempt.failed();
            app.metrics.logins_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: SECURITY, client = %client, username = %log_safe(username), "{failed_words}");
            Ok(SignIn::Invalid)
        }
    }
}

/// The login throttle of a node: on a single node, its own; on a cluster
/// node, one whose failures count on every node. Each failure here goes out
/// on the ephemeral bus as `Ephemeral::LoginFailed`, and those of other
/// nodes are counted here (never sent on again), until shutdown.
pub fn cluster_login_throttle(
    bus: &Arc<EphemeralBus>,
    node: u64,
    metrics: Arc<Metrics>,
    stopping: Stopping,
) -> Arc<LoginThrottle> {
    if !bus.is_clustered() {
        return Arc::new(LoginThrottle::default());
    }
    let throttle = Arc::new(LoginThrottle::sharing_failures({
        let bus = bus.clone();
        move |host, name| {
            let username = name.and_then(|name| Username::from_stored(name).ok());
            bus.publish(Ephemeral::LoginFailed { node, host: host.to_string(), username });
        }
    }));
    tokio::spawn(count_other_nodes_failures(bus.subscribe(), throttle.clone(), node, metrics, stopping));
    throttle
}

/// Feeds the failed sign-ins of other nodes into this node's throttle.
async fn count_other_nodes_failures(
    mut events: broadcast::Receiver<Ephemeral>,
    throttle: Arc<LoginThrottle>,
    node: u64,
    metrics: Arc<Metrics>,
    mut stopping: Stopping,
) {
    let _running = stopping.running();
    loop {
        let event = tokio::select! {
            _ = stopping.requested() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(Ephemeral::LoginFailed { node: from, host, username }) if from != node => {
                let Ok(host) = host.parse::<ClientHost>() else { continue };
                throttle.record_remote_failure(host, username.as_deref());
                metrics.login_failures_from_other_nodes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "ephemeral events skipped; other nodes' failed sign-ins may be undercounted")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn throttled_attempt(app: &App, throttled: Throttled, username: &str, client: IpAddr, purpose: Purpose) -> SignIn {
    let (_, _, throttled_words) = purpose.log_words();
    app.metrics.logins_throttled.fetch_add(1, Ordering::Relaxed);
    let scope = match throttled {
        Throttled::Address { .. } => "address",
        Throttled::AddressAndName { .. } | Throttled::Pending => "address and username",
    };
    tracing::warn!(target: SECURITY, client = %client, username = %log_safe(username), scope, "{throttled_words}");
    SignIn::Throttled(throttled.retry_after())
}

/// How long a login waits for a free password-check slot before it is
/// answered "busy, retry" (`SignIn::Busy`).
/// Long enough for a crowd signing in at once (200 checks of ~30 ms on one
/// slot), short enough that a storm is told to retry before proxies give up.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(30);

const BAD_CREDENTIALS: &str = "Please enter a correct username and password. Both fields may be case-sensitive.";
const THROTTLED: &str = "Too many failed sign-in attempts. Wait a few minutes, then try again.";
const BUSY: &str = "The server is busy checking other sign-ins. Try again in a few seconds.";
/// `Retry-After` on a busy answer.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// `GET /login`: the form, with a CSRF token bound to a cookie, and what
/// the person should know first: that they signed out (a one-shot notice
/// from `POST /logout`), that their account was deactivated (the chat
/// client comes here with `?reason=deactivated` after its socket closed
/// so), or that no account exists yet.
pub async fn login_page(app: &App, request: &Request<Incoming>, secure: bool) -> Reply {
    let params = query(request);
    let next = safe_next(params.get("next").map(String::as_str));
    let flash = Notice::from_headers(request.headers(), Place::Login);
    let notice = match (flash, params.get("reason").map(String::as_str)) {
        (Some(flash), _) => flash.text(),
        (None, Some("deactivated")) => DEACTIVATED.to_owned(),
        (None, Some("signed_out")) => SIGNED_OUT_ELSEWHERE.to_owned(),
        (None, _) => String::new(),
    };
    let notice = if app.setup.get().is_some() { SETUP_PENDING.to_owned() } else { notice };
    let reply = render_login(request.headers(), secure, StatusCode::OK, &next, "", "", &notice);
    if cookie(request.headers(), notice::COOKIE_NAME).is_some() {
        return with_cookie(reply, &notice::cleared_cookie(Place::Login, secure));
    }
    reply
}

/// Fixed texts only: a crafted `?reason=` link can show no words of its own.
const DEACTIVATED: &str = "This account has been deactivated. Ask an administrator if you think this is a mistake.";
const SIGNED_OUT_ELSEWHERE: &str = "You were signed out (for example, your password was changed). Sign in again.";
/// The setup link holds a secret, so the page only says where to find it.
const SETUP_PENDING: &str = "No account exists yet. To create the first administrator, open the setup link that `chatctl serve` printed in its log.";

fn render_login(
    headers: &hyper::HeaderMap,
    secure: bool,
    status: StatusCode,
    next: &str,
    username: &str,
    error: &str,
    notice: &str,
) -> Reply {
    let existing = cookie(headers, csrf::COOKIE_NAME).filter(|t| t.len() == 64).map(str::to_owned);
    let token = existing.clone().unwrap_or_else(csrf::new_anonymous_token);
    let page = templates::render(
        Page::Login,
        &[("csrf_token", &token), ("next", next), ("username", username), ("error", error), ("notice", notice)],
    );
    let reply = respond::html(status, page);
    if existing.is_some() {
        reply
    } else {
        with_cookie(reply, &csrf::anonymous_cookie(&token, secure))
    }
}

/// `POST /login`.
pub async fn login_submit(app: &Arc<App>, request: Request<Incoming>, peer: &Peer) -> Reply {
    let secure = peer.secure_cookies(&app.config);
    let headers = request.headers().clone();
    let body = match request::body(request, app.config.body_deadline).await {
        Ok(body) => body,
        Err(e) => return error_page(e.status(), "The form could not be read."),
    };
    let fields = form(&body);
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let expected = cookie(&headers, csrf::COOKIE_NAME).unwrap_or("");
    if !csrf::matches(field("csrf_token"), expected) {
        return error_page(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or stale. Reload the sign-in page and try again.",
        );
    }
    let next = safe_next(fields.get("next").map(String::as_str));
    let username = field("username");
    match authenticate(app, username, field("password"), peer.address).await {
        Ok(SignIn::Ok(user)) => match start_session(app, &user.username).await {
            Ok(token) => with_cookie(see_other(&next), &session::session_cookie(&token, secure)),
            Err(error) => log_failure_page(error),
        },
        Ok(SignIn::Invalid) => render_login(&headers, secure, StatusCode::OK, &next, username, BAD_CREDENTIALS, ""),
        Ok(SignIn::Throttled(wait)) => retry_after(
            render_login(&headers, secure, StatusCode::TOO_MANY_REQUESTS, &next, username, THROTTLED, ""),
            wait,
        ),
        Ok(SignIn::Busy) => retry_after(
            render_login(&headers, secure, StatusCode::TOO_MANY_REQUESTS, &next, username, BUSY, ""),
            BUSY_RETRY_AFTER,
        ),
        Err(error) => storage_failure_page(error),
    }
}

/// `POST /logout`: ends this session server side.
pub async fn logout(app: &Arc<App>, request: Request<Incoming>, peer: &Peer) -> Reply {
    let user = match current_user(app, request.headers()).await {
        Ok(user) => user,
        Err(error) => return storage_failure_page(error),
    };
    let body = match request::body(request, app.config.body_deadline).await {
        Ok(body) => body,
        Err(e) => return error_page(e.status(), "The form could not be read."),
    };
    let fields = form(&body);
    let submitted = fields.get("csrf_token").map(String::as_str).unwrap_or("");
    let Some(user) = user.filter(|u| csrf::matches(submitted, &u.csrf_token())) else {
        return error_page(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or stale. Reload the page and try again.",
        );
    };
    end_session(app, &user, peer.secure_cookies(&app.config)).await
}

async fn end_session(app: &Arc<App>, user: &CurrentUser, secure: bool) -> Reply {
    // Applying the delete also closes this session's sockets, on every node.
    let token_hash = SessionHash(user.session_hash());
    if let Err(error) = app.log.apply(Write::DeleteSession { token_hash }).await {
        return log_failure_page(error);
    }
    let reply = with_cookie(see_other("/login"), &session::expired_session_cookie(secure));
    with_cookie(reply, &Notice::SignedOut.cookie(secure))
}

#[derive(Deserialize)]
struct ApiCredentials {
    username: String,
    password: String,
}

/// `POST /api/login`.
pub async fn api_login(app: &Arc<App>, request: Request<Incoming>, peer: &Peer) -> Reply {
    // Browsers send Origin on cross-site POSTs: refuse those (login CSRF).
    if !request::origin_allowed(request.headers(), peer, &app.config) {
        tracing::warn!(target: SECURITY, client = %peer.address, reason = "origin", "sign-in refused");
        return json_error(StatusCode::FORBIDDEN, "cross-origin sign-in is not allowed");
    }
    let body = match request::body(request, app.config.body_deadline).await {
        Ok(body) => body,
        Err(e) => return json_error(e.status(), e.explain()),
    };
    let Ok(credentials) = serde_json::from_slice::<ApiCredentials>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "send JSON {\"username\": ..., \"password\": ...}");
    };
    match authenticate(app, &credentials.username, &credentials.password, peer.address).await {
        Ok(SignIn::Ok(user)) => match start_session(app, &user.username).await {
            Ok(token) => with_cookie(
                json(
                    StatusCode::OK,
                    &serde_json::json!({"username": user.username, "is_superuser": user.is_superuser}),
                ),
                &session::session_cookie(&token, peer.secure_cookies(&app.config)),
            ),
            Err(error) => log_failure_json(error),
        },
        Ok(SignIn::Invalid) => json_error(StatusCode::UNAUTHORIZED, "invalid username or password"),
        Ok(SignIn::Throttled(wait)) => retry_after(
            json_error(StatusCode::TOO_MANY_REQUESTS, "too many failed sign-in attempts; wait a few minutes"),
            wait,
        ),
        // 429 as PROTOCOL.md has it for every refusal to check; the message
        // and Retry-After tell a storm from a throttle.
        Ok(SignIn::Busy) => retry_after(
            json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "the server is busy checking other sign-ins; try again in a few seconds",
            ),
            BUSY_RETRY_AFTER,
        ),
        Err(error) => storage_failure_json(error),
    }
}

/// `GET /setup?token=...`: the first-run page, while no user exists.
pub async fn setup_page(app: &Arc<App>, request: &Request<Incoming>) -> Reply {
    let token = query(request).remove("token").unwrap_or_default();
    if let Some(refusal) = setup_refusal(app, &token) {
        return refusal;
    }
    respond::html(
        StatusCode::OK,
        templates::render(Page::Setup, &[("token", &token), ("username", ""), ("email", ""), ("error", "")]),
    )
}

fn setup_refusal(app: &App, token: &str) -> Option<Reply> {
    match app.setup.get() {
        None => Some(error_page(StatusCode::NOT_FOUND, "Setup is closed: an account already exists. Sign in instead.")),
        Some(expected) if !csrf::matches(token, &expected) => Some(error_page(
            StatusCode::FORBIDDEN,
            "This setup link is not valid. Use the exact URL that `chatctl serve` printed in its log.",
        )),
        Some(_) => None,
    }
}

/// `POST /setup`: creates the first superuser and signs them in.
pub async fn setup_submit(app: &Arc<App>, request: Request<Incoming>, peer: &Peer) -> Reply {
    let body = match request::body(request, app.config.body_deadline).await {
        Ok(body) => body,
        Err(e) => return error_page(e.status(), "The form could not be read."),
    };
    let fields = form(&body);
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("").to_owned();
    let (token, username, email) = (field("token"), field("username"), field("email").trim().to_owned());
    if let Some(refusal) = setup_refusal(app, &token) {
        return refusal;
    }
    let again = |error: String| {
        respond::html(
            StatusCode::BAD_REQUEST,
            templates::render(
                Page::Setup,
                &[("token", &token), ("username", &username), ("email", &email), ("error", &error)],
            ),
        )
    };
    let record =
        match new_user_record(app, &username, &email, &field("password"), Some(&field("password2")), true).await {
            Ok(record) => record,
            Err(error) => return again(error),
        };
    let name = record.username.clone();
    match app.log.apply(Write::CreateUser { user: record, only_if_first: true }).await {
        Ok(Outcome::Applied) => {}
        Ok(Outcome::UsernameTaken | Outcome::SetupClosed) => {
            app.setup.close();
            return error_page(StatusCode::NOT_FOUND, "Setup is closed: an account already exists. Sign in instead.");
        }
        Ok(_) => {}
        Err(error) => return log_failure_page(error),
    }
    tracing::info!(username = %name, "first superuser created through the setup page");
    match start_session(app, &name).await {
        Ok(token) => with_cookie(see_other("/"), &session::session_cookie(&token, peer.secure_cookies(&app.config))),
        Err(error) => log_failure_page(error),
    }
}

/// One of the `password_checks` slots, waited for up to `PASSWORD_CHECK_WAIT`.
/// argon2 takes ~19 MiB and a core for ~30 ms: every check and every hash
/// holds one, so that sign-ins and new passwords together leave a core to the chat.
async fn password_slot(app: &App) -> Option<tokio::sync::SemaphorePermit<'_>> {
    tokio::time::timeout(PASSWORD_CHECK_WAIT, app.password_checks.acquire()).await.ok()?.ok()
}

/// Hashes a new password off the runtime, holding one of the
/// `password_checks` slots as sign-ins do, so that making accounts cannot
/// starve sign-ins of cores. `None` when no slot freed up within
/// `PASSWORD_CHECK_WAIT` (or the hashing thread failed): the caller answers "busy, retry".
pub async fn hash_in_slot(app: &App, password: &str) -> Option<String> {
    let _slot = password_slot(app).await?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || password::hash(&password)).await.ok()
}

/// What a form says when `hash_in_slot` found every slot taken.
pub const BUSY_CHECKING: &str = "The server is busy checking other passwords. Try again in a few seconds.";

/// Validates a new account's fields (Django's rules) and hashes the
/// password off the runtime. The error is worded for the form.
pub async fn new_user_record(
    app: &App,
    username: &str,
    email: &str,
    password: &str,
    confirmation: Option<&str>,
    is_superuser: bool,
) -> Result<UserRecord, String> {
    let username = Username::parse(username).map_err(|e| format!("Invalid username: {e}."))?;
    if !email.is_empty() && (email.len() > 254 || !email.contains('@')) {
        return Err("Enter a valid email address, or leave it empty.".to_owned());
    }
    if confirmation.is_some_and(|c| c != password) {
        return Err("The two password fields didn't match.".to_owned());
    }
    let problems = password::check_rules(password, username.as_str(), email);
    if !problems.is_empty() {
        return Err(problems.join(" "));
    }
    let hash = hash_in_slot(app, password).await.ok_or_else(|| BUSY_CHECKING.to_owned())?;
    Ok(UserRecord {
        username: username.clone(),
        email: email.to_owned(),
        password_hash: hash,
        is_superuser,
        is_active: true,
        created_at_ms: now_ms(),
    })
}

/// The page for a write the log refused (broker or storage down): 503, retry later.
pub fn log_failure_page(error: LogError) -> Reply {
    tracing::warn!(%error, "a write could not be applied");
    error_page(StatusCode::SERVICE_UNAVAILABLE, "The server cannot save changes right now. Try again shortly.")
}

/// `/api/`'s answer for a write the log refused: 503 with the reason.
pub fn log_failure_json(error: LogError) -> Reply {
    tracing::warn!(%error, "a write could not be applied");
    json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("cannot save changes right now: {error}"))
}

/// The page for a failed storage read: 503; the log line has the details.
pub fn storage_failure_page(error: StorageError) -> Reply {
    tracing::error!(%error, "storage call failed");
    error_page(StatusCode::SERVICE_UNAVAILABLE, "The server cannot reach its storage right now. Try again shortly.")
}

/// `/api/`'s answer for a failed storage read: 503, without internals.
pub fn storage_failure_json(error: StorageError) -> Reply {
    tracing::error!(%error, "storage call failed");
    json_error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again shortly")
}

/// Adds `Retry-After` (whole seconds, rounded up) to a 429.
pub fn retry_after(mut reply: Reply, wait: Duration) -> Reply {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    reply.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(seconds.max(1)));
    reply
}
