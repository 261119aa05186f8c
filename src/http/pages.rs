//! The HTML pages a signed-in person uses: lobby, room, direct chat, admin.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};

use super::accounts::{log_failure_page, new_user_record, storage_failure_page};
use super::identity::CurrentUser;
use super::notice::{self, Notice};
use super::request::{self, form};
use super::respond::{self, error_page, escape_html, see_other, with_cookie, Reply};
use super::templates::{self, Page};
use crate::app::App;
use crate::auth::csrf;
use crate::domain::{Conversation, RoomName, Username};
use crate::log::write::{Outcome, Write};

/// Where a signed-in page sits, for its top bar.
#[derive(PartialEq, Eq)]
enum Section {
    Lobby,
    Chat,
    Admin,
}

/// Renders a page under the signed-in top bar; `username` and `csrf_token`
/// are filled in the page too.
fn signed_in_page(
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
    let topbar =
        templates::render_with_raw(Page::Topbar, &common, &[("back_link", back_link), ("admin_link", admin_link)]);
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
    let notice = Notice::from_headers(request.headers()).map(|n| n.text()).unwrap_or_default();
    let page = admin_page(app, user, StatusCode::OK, "", &notice).await;
    if request::cookie(request.headers(), notice::COOKIE_NAME).is_some() {
        return with_cookie(page, &notice::cleared_cookie(secure));
    }
    page
}

async fn admin_page(app: &Arc<App>, user: &CurrentUser, status: StatusCode, error: &str, notice: &str) -> Reply {
    let users = match app.store.call(|store| store.users()).await {
        Ok(users) => users,
        Err(error) => return storage_failure_page(error),
    };
    let csrf_token = user.csrf_token();
    let mut rows = String::new();
    for u in &users {
        let name = escape_html(&u.username);
        let joined = crate::chat::frames::rfc3339(u.created_at_ms);
        let (action, label, class) =
            if u.is_active { ("deactivate", "Deactivate", "danger") } else { ("activate", "Activate", "secondary") };
        let button = if u.username == user.username.as_str() {
            "<span class=\"muted\">you</span>".to_owned()
        } else {
            format!(
                "<form method=\"post\" action=\"/admin/users/{name}/{action}\"><input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\"><button class=\"{class}\">{label}</button></form>",
                csrf = escape_html(&csrf_token)
            )
        };
        rows.push_str(&format!(
            "<tr><td>{name}</td><td>{email}</td><td>{role}</td><td>{status}</td><td><time datetime=\"{joined}\">{date}</time></td><td>{button}</td></tr>",
            email = escape_html(&u.email),
            role = if u.is_superuser { "superuser" } else { "user" },
            status = if u.is_active { "active" } else { "deactivated" },
            date = &joined[..10],
        ));
    }
    let page = signed_in_page(
        Page::Admin,
        user,
        Section::Admin,
        &[("error", error), ("notice", notice)],
        &[("user_rows", &rows)],
    );
    respond::html(status, page)
}

/// `POST /admin/users`: creates a user.
pub async fn admin_create_user(app: &Arc<App>, user: &CurrentUser, request: Request<Incoming>, secure: bool) -> Reply {
    let fields = match admin_form(app, user, request).await {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let is_superuser = field("is_superuser") == "on";
    let record =
        match new_user_record(field("username"), field("email").trim(), field("password"), None, is_superuser).await {
            Ok(record) => record,
            Err(error) => return admin_page(app, user, StatusCode::BAD_REQUEST, &error, "").await,
        };
    let name = record.username.clone();
    let created = Username::parse(&name);
    match app.log.apply(Write::CreateUser { user: record, only_if_first: false }).await {
        Ok(Outcome::UsernameTaken) => {
            let error =
                "A user with that username already exists; usernames that differ only in case count as the same.";
            admin_page(app, user, StatusCode::CONFLICT, error, "").await
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
        return admin_page(app, user, StatusCode::BAD_REQUEST, "You cannot deactivate your own account.", "").await;
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
fn notice_redirect(notice: Notice, secure: bool) -> Reply {
    with_cookie(see_other("/admin"), &notice.cookie(secure))
}

/// Reads an admin form and checks its CSRF token.
async fn admin_form(
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
