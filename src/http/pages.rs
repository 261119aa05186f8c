//! The HTML pages a signed-in person uses: lobby, room, direct chat, admin.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};

use super::accounts::{log_failure_page, new_user_record, storage_failure_page};
use super::identity::{user_of_token, CurrentUser};
use super::notice::{self, Notice, Place};
use super::request::{self, form};
use super::respond::{self, error_page, escape_html, see_other, with_cookie, ErrorMessage, Reply};
use super::templates::{self, Page};
use crate::app::App;
use crate::auth::csrf;
use crate::domain::{Conversation, RoomName, Username};
use crate::log::write::{Outcome, Write};

/// Where a signed-in page sits, for its top bar.
#[derive(PartialEq, Eq)]
pub(super) enum Section {
    /// `/`.
    Lobby,
    /// A room or a direct chat: the bar leads back to the lobby.
    Chat,
    /// `/admin`.
    Admin,
    /// `/account`.
    Account,
    /// An error page.
    Elsewhere,
}

/// Renders a page under the signed-in top bar; `username` and `csrf_token`
/// are filled in the page too.
pub(super) fn signed_in_page(
    page: Page,
    user: &CurrentUser,
    section: Section,
    values: &[(&str, &str)],
    raw: &[(&str, &str)],
) -> String {
    let csrf_token = user.csrf_token();
    let common = [("username", user.username.as_str()), ("csrf_token", csrf_token.as_str())];
    let back_link = if section == Section::Chat { "<a class=\"back\" href=\"/\">← All chats</a>" } else { "" };
    let admin_link = match (user.is_superuser, section == Section::Admin) {
        (true, true) => "<a id=\"admin-link\" class=\"nav-link\" href=\"/admin\" aria-current=\"page\">Admin</a>",
        (true, false) => "<a id=\"admin-link\" class=\"nav-link\" href=\"/admin\">Admin</a>",
        (false, _) => "",
    };
    let account_current = if section == Section::Account { " aria-current=\"page\"" } else { "" };
    let topbar = templates::render_with_raw(
        Page::Topbar,
        &common,
        &[("back_link", back_link), ("admin_link", admin_link), ("account_current", account_current)],
    );
    let values: Vec<(&str, &str)> = common.iter().chain(values).copied().collect();
    let raw: Vec<(&str, &str)> = [("topbar", topbar.as_str())].iter().chain(raw).copied().collect();
    templates::render_with_raw(page, &values, &raw)
}

/// `/`: the lobby page; its script fills the conversation list from `/api/lobby`.
pub fn lobby(user: &CurrentUser) -> Reply {
    respond::html(StatusCode::OK, signed_in_page(Page::Lobby, user, Section::Lobby, &[], &[]))
}

/// `/chat/<room>/`: the room's page; its script opens the socket. Opening
/// the page makes the user a member, as opening the socket does.
pub async fn room(app: &App, user: &CurrentUser, room: &RoomName) -> Reply {
    // A refused join (the log is down) leaves the page usable: its socket
    // joins again and says what is wrong.
    if super::websocket::join(app, &user.username, &Conversation::Room(room.clone())).await.is_err() {
        tracing::debug!(room = %room.as_str(), "joining from the room page failed; the socket will retry");
    }
    chat_page(user, &format!("#{}", room.as_str()))
}

/// `/direct/<user>/`: a direct chat's page; 404 when there is no such
/// user, so typos do not open empty chats.
pub async fn direct(app: &Arc<App>, user: &CurrentUser, peer: &Username) -> Reply {
    let name = peer.as_str().to_owned();
    match app.store.call(move |store| store.user(&name)).await {
        Ok(Some(_)) => chat_page(user, &format!("@{}", peer.as_str())),
        Ok(None) => error_page(StatusCode::NOT_FOUND, "There is no user with that name."),
        Err(error) => storage_failure_page(error),
    }
}

fn chat_page(user: &CurrentUser, title: &str) -> Reply {
    respond::html(StatusCode::OK, signed_in_page(Page::Room, user, Section::Chat, &[("title", title)], &[]))
}

/// An error page (403, 404, 405) for a signed-in person keeps their top
/// bar, so they are never stranded: `reply` comes from
/// `respond::error_page`, and only its body changes.
pub async fn keep_top_bar(app: &Arc<App>, mut reply: Reply, session_token: Option<&str>) -> Reply {
    let Some(token) = session_token else { return reply };
    let Some(ErrorMessage(message)) = reply.extensions().get::<ErrorMessage>().cloned() else { return reply };
    let status = reply.status();
    if ![StatusCode::FORBIDDEN, StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&status) {
        return reply;
    }
    let Ok(Some(user)) = user_of_token(app, token).await else { return reply };
    let title = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16().to_string();
    let page = signed_in_page(
        Page::Error,
        &user,
        Section::Elsewhere,
        &[("code", &code), ("title", title), ("message", &message)],
        &[],
    );
    *reply.body_mut() = respond::Body::from(page);
    reply
}

/// `GET /account`: who is signed in, and the form to change their password
/// (its script posts to `/api/password`).
pub fn account(user: &CurrentUser) -> Reply {
    let role = if user.is_superuser { "Administrator" } else { "User" };
    respond::html(StatusCode::OK, signed_in_page(Page::Account, user, Section::Account, &[("role", role)], &[]))
}

/// `GET /static/<name>`: embedded files, cacheable, revalidated by ETag.
pub fn static_file(request: &Request<Incoming>, name: &str) -> Reply {
    let Some(file) = templates::static_file(name) else {
        return error_page(StatusCode::NOT_FOUND, "No such file.");
    };
    let fresh = request.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(file.etag.as_str());
    let mut reply = if fresh {
        let mut reply = hyper::Response::new(respond::Body::default());
        *reply.status_mut() = StatusCode::NOT_MODIFIED;
        reply
    } else {
        hyper::Response::new(respond::Body::from(bytes::Bytes::from_static(file.bytes)))
    };
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600, must-revalidate"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(etag) = HeaderValue::from_str(&file.etag) {
        headers.insert(header::ETAG, etag);
    }
    reply
}

/// `GET /admin`: every user, a form to create one, buttons to deactivate,
/// and the notice an admin action left in its cookie (shown once).
pub async fn admin(app: &Arc<App>, user: &CurrentUser, request: &Request<Incoming>, secure: bool) -> Reply {
    let notice = Notice::from_headers(request.headers(), Place::Admin).map(|n| n.text()).unwrap_or_default();
    let page = admin_page(app, user, StatusCode::OK, AdminView { notice: &notice, ..AdminView::default() }).await;
    if request::cookie(request.headers(), notice::COOKIE_NAME).is_some() {
        return with_cookie(page, &notice::cleared_cookie(Place::Admin, secure));
    }
    page
}

/// What the admin page shows besides the users: a message, and after a
/// refused form what was typed into it (never a password).
#[derive(Default)]
pub(super) struct AdminView<'a> {
    /// Why the last action was refused.
    pub error: &'a str,
    /// What the last action did.
    pub notice: &'a str,
    /// The create form's username, as typed.
    pub username: &'a str,
    /// The create form's email, as typed.
    pub email: &'a str,
    /// The create form's administrator box, as ticked.
    pub is_superuser: bool,
    /// The user whose reset-password form was refused: it is shown open.
    pub reset_open: Option<&'a str>,
}

/// The admin page with `view`'s messages and form values.
pub(super) async fn admin_page(app: &Arc<App>, user: &CurrentUser, status: StatusCode, view: AdminView<'_>) -> Reply {
    let users = match app.store.call(|store| store.users()).await {
        Ok(users) => users,
        Err(error) => return storage_failure_page(error),
    };
    let csrf = escape_html(&user.csrf_token());
    let mut rows = String::new();
    for u in &users {
        let joined = crate::chat::frames::rfc3339(u.created_at_ms);
        let open = view.reset_open == Some(u.username.as_str());
        let actions = user_actions(u, u.username == user.username, &csrf, open);
        rows.push_str(&format!(
            "<tr><td>{name}</td><td>{email}</td><td>{role}</td><td>{status}</td><td><time datetime=\"{joined}\">{date}</time></td><td>{actions}</td></tr>",
            name = escape_html(&u.username),
            email = escape_html(&u.email),
            role = if u.is_superuser { "superuser" } else { "user" },
            status = if u.is_active { "active" } else { "deactivated" },
            date = &joined[..10],
        ));
    }
    let checked = if view.is_superuser { " checked" } else { "" };
    let page = signed_in_page(
        Page::Admin,
        user,
        Section::Admin,
        &[("error", view.error), ("notice", view.notice), ("new_username", view.username), ("new_email", view.email)],
        &[("user_rows", &rows), ("new_is_superuser_checked", checked)],
    );
    respond::html(status, page)
}

/// One user's actions on the admin page: a reset-password form, and
/// (de)activation. Deactivating asks first: its button only opens a
/// confirm step (`<details>`, so it works without JavaScript) holding the
/// real form. Your own row links to your account page instead.
fn user_actions(u: &crate::storage::UserRecord, is_you: bool, csrf: &str, reset_open: bool) -> String {
    if is_you {
        return "<span class=\"muted\">you</span> <a class=\"row-link\" href=\"/account\">Change password</a>"
            .to_owned();
    }
    let name = escape_html(&u.username);
    // Usernames are URL-safe ([A-Za-z0-9_.@+-]); `@` and `+` are fine in a path.
    let open = if reset_open { " open" } else { "" };
    let reset = format!(
        "<details class=\"row-action\"{open}><summary class=\"secondary\">Reset password</summary>\
         <form method=\"post\" action=\"/admin/users/{name}/password\" class=\"reset-form\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <label class=\"visually-hidden\" for=\"reset-{name}\">New password for {name}</label>\
         <input type=\"password\" name=\"password\" id=\"reset-{name}\" autocomplete=\"new-password\" placeholder=\"New password\" required>\
         <button type=\"submit\">Set password</button></form></details>"
    );
    let status = if u.is_active {
        format!(
            "<details class=\"row-action\"><summary class=\"danger\">Deactivate</summary>\
             <form method=\"post\" action=\"/admin/users/{name}/deactivate\" class=\"confirm-form\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
             <span>Sign {name} out everywhere and stop them signing in?</span>\
             <button class=\"danger\">Yes, deactivate</button></form></details>"
        )
    } else {
        format!(
            "<form method=\"post\" action=\"/admin/users/{name}/activate\"><input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\"><button class=\"secondary\">Activate</button></form>"
        )
    };
    format!("<div class=\"row-actions\">{reset}{status}</div>")
}

/// `POST /admin/users`: creates a user. A refusal shows the form again
/// with what was typed, but the password.
pub async fn admin_create_user(app: &Arc<App>, user: &CurrentUser, request: Request<Incoming>, secure: bool) -> Reply {
    let fields = match admin_form(app, user, request).await {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let is_superuser = field("is_superuser") == "on";
    let (username, email) = (field("username"), field("email").trim());
    fn again<'a>(error: &'a str, username: &'a str, email: &'a str, is_superuser: bool) -> AdminView<'a> {
        AdminView { error, username, email, is_superuser, ..AdminView::default() }
    }
    let record = match new_user_record(app, username, email, field("password"), None, is_superuser).await {
        Ok(record) => record,
        Err(error) => {
            return admin_page(app, user, StatusCode::BAD_REQUEST, again(&error, username, email, is_superuser)).await
        }
    };
    let name = record.username.clone();
    let created = Username::parse(&name);
    match app.log.apply(Write::CreateUser { user: record, only_if_first: false }).await {
        Ok(Outcome::UsernameTaken) => {
            let error =
                "A user with that username already exists; usernames that differ only in case count as the same.";
            admin_page(app, user, StatusCode::CONFLICT, again(error, username, email, is_superuser)).await
        }
        Ok(_) => {
            tracing::info!(by = %user.username.as_str(), username = %name, is_superuser, "user created from the admin page");
            match created {
                Ok(name) => notice_redirect(Notice::Created(name), secure),
                Err(_) => see_other("/admin"),
            }
        }
        Err(error) => log_failure_page(error),
    }
}

/// `POST /admin/users/<name>/(de)activate`.
pub async fn admin_set_active(
    app: &Arc<App>,
    user: &CurrentUser,
    request: Request<Incoming>,
    target: Username,
    active: bool,
    secure: bool,
) -> Reply {
    if let Err(reply) = admin_form(app, user, request).await {
        return reply;
    }
    if target == user.username {
        let view = AdminView { error: "You cannot deactivate your own account.", ..AdminView::default() };
        return admin_page(app, user, StatusCode::BAD_REQUEST, view).await;
    }
    // Applying a deactivation also closes that user's sockets, on every node.
    match app.log.apply(Write::SetUserActive { username: target.clone(), active }).await {
        Ok(Outcome::NoSuchUser) => error_page(StatusCode::NOT_FOUND, "There is no user with that name."),
        Ok(_) => {
            tracing::info!(by = %user.username.as_str(), username = %target.as_str(), active, "user status changed");
            let notice = if active { Notice::Activated(target) } else { Notice::Deactivated(target) };
            notice_redirect(notice, secure)
        }
        Err(error) => log_failure_page(error),
    }
}

/// Back to the admin page (post/redirect/get), which shows `notice` once.
pub(super) fn notice_redirect(notice: Notice, secure: bool) -> Reply {
    with_cookie(see_other("/admin"), &notice.cookie(secure))
}

/// Reads an admin form and checks its CSRF token.
pub(super) async fn admin_form(
    app: &Arc<App>,
    user: &CurrentUser,
    request: Request<Incoming>,
) -> Result<std::collections::HashMap<String, String>, Reply> {
    let body = request::body(request, app.config.body_deadline)
        .await
        .map_err(|e| error_page(e.status(), "The form could not be read."))?;
    let fields = form(&body);
    let submitted = fields.get("csrf_token").map(String::as_str).unwrap_or("");
    if !csrf::matches(submitted, &user.csrf_token()) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or stale. Reload the page and try again.",
        ));
    }
    Ok(fields)
}
