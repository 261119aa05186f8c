//! HTTP: the routing table (this file), then one module per area. Every
//! route of PROTOCOL.md is listed in `route` below.

pub mod accounts;
pub mod api;
pub mod identity;
pub mod pages;
pub mod request;
pub mod respond;
pub mod server;
pub mod templates;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::app::App;
use crate::domain::{Conversation, RoomName, Username};
use identity::{current_user, CurrentUser};
use respond::{error_page, json, json_error, see_other, text, Reply};
use websocket::Target;

/// Answers one request.
pub async fn route(app: Arc<App>, request: Request<Incoming>, client: SocketAddr) -> Reply {
    app.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    let is_api = path.starts_with("/api/");

    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["readyz"]) => readiness(&app).await,
        (&Method::GET, ["metrics"]) => metrics(&app, client),
        (&Method::GET, ["static", name]) => pages::static_file(&request, name),
        (&Method::GET, ["favicon.ico"]) => pages::static_file(&request, "favicon.svg"),

        (&Method::GET, ["login"]) => accounts::login_page(&request, app.config.secure_cookies).await,
        (&Method::POST, ["login"]) => accounts::login_submit(&app, request, client.ip()).await,
        (&Method::POST, ["logout"]) => accounts::logout(&app, request).await,
        (&Method::GET, ["setup"]) => accounts::setup_page(&app, &request).await,
        (&Method::POST, ["setup"]) => accounts::setup_submit(&app, request).await,
        (&Method::POST, ["api", "login"]) => accounts::api_login(&app, request, client.ip()).await,

        (&Method::GET, ["ws", "chat", room] | ["ws", "chat", room, ""]) => match RoomName::parse(room) {
            Ok(room) => websocket::upgrade(&app, request, Target::Room(room)).await,
            Err(_) => json_error(StatusCode::NOT_FOUND, "no such room: names are 1 to 64 of A-Z a-z 0-9 _"),
        },
        (&Method::GET, ["ws", "direct", name] | ["ws", "direct", name, ""]) => match Username::parse(name) {
            Ok(peer) => websocket::upgrade(&app, request, Target::Direct(peer)).await,
            Err(_) => json_error(StatusCode::NOT_FOUND, "no such user"),
        },

        _ => signed_in_route(&app, request, &method, &segments, is_api).await,
    }
}

/// Routes that need a signed-in user: 401 JSON for the API, a redirect to
/// the login page for pages.
async fn signed_in_route(
    app: &Arc<App>,
    request: Request<Incoming>,
    method: &Method,
    segments: &[&str],
    is_api: bool,
) -> Reply {
    if !is_known_route(method, segments) {
        return not_found(is_api, method, segments);
    }
    let user = match current_user(app, request.headers()).await {
        Ok(Some(user)) => user,
        Ok(None) if is_api => return json_error(StatusCode::UNAUTHORIZED, "sign in first (POST /api/login)"),
        Ok(None) if method == Method::GET => {
            let next: String = form_urlencoded::byte_serialize(request.uri().path().as_bytes()).collect();
            return see_other(&format!("/login?next={next}"));
        }
        Ok(None) => return error_page(StatusCode::FORBIDDEN, "Sign in first."),
        Err(error) if is_api => return accounts::storage_failure_json(error),
        Err(error) => return accounts::storage_failure_page(error),
    };
    match (method, segments) {
        (&Method::GET, [""]) => pages::lobby(&user),
        (&Method::GET, ["chat", room] | ["chat", room, ""]) => match RoomName::parse(room) {
            Ok(room) => pages::room(&user, &room),
            Err(_) => error_page(StatusCode::NOT_FOUND, "Room names are 1 to 64 letters, digits or _."),
        },
        (&Method::GET, ["direct", name] | ["direct", name, ""]) => match Username::parse(name) {
            Ok(peer) => pages::direct(app, &user, &peer).await,
            Err(_) => error_page(StatusCode::NOT_FOUND, "There is no user with that name."),
        },
        (&Method::GET, ["api", "me"]) => api::me(&user),
        (&Method::GET, ["api", "lobby"]) => api::lobby(app, &user).await,
        (&Method::GET, ["api", "rooms", room, "messages"]) => match RoomName::parse(room) {
            Ok(room) => api::history(app, &request, Conversation::Room(room)).await,
            Err(_) => json_error(StatusCode::NOT_FOUND, "no such room: names are 1 to 64 of A-Z a-z 0-9 _"),
        },
        (&Method::GET, ["api", "direct", name, "messages"]) => match api::direct_with(app, &user, name).await {
            Ok(conversation) => api::history(app, &request, conversation).await,
            Err(reply) => reply,
        },
        (_, ["admin", ..]) => admin_route(app, &user, request, method, segments).await,
        _ => not_found(is_api, method, segments),
    }
}

async fn admin_route(
    app: &Arc<App>,
    user: &CurrentUser,
    request: Request<Incoming>,
    method: &Method,
    segments: &[&str],
) -> Reply {
    if !user.is_superuser {
        return error_page(StatusCode::FORBIDDEN, "Only administrators may open the admin pages.");
    }
    match (method, segments) {
        (&Method::GET, ["admin"] | ["admin", ""]) => pages::admin(app, user, &request).await,
        (&Method::POST, ["admin", "users"]) => pages::admin_create_user(app, user, request).await,
        (&Method::POST, ["admin", "users", name, "deactivate"]) => {
            pages::admin_set_active(app, user, request, name, false).await
        }
        (&Method::POST, ["admin", "users", name, "activate"]) => {
            pages::admin_set_active(app, user, request, name, true).await
        }
        _ => error_page(StatusCode::NOT_FOUND, "No such page."),
    }
}

/// Whether a path is a signed-in route at all, so unknown paths get 404
/// without a session lookup and known ones with the wrong method get 405.
fn is_known_route(method: &Method, segments: &[&str]) -> bool {
    let get = method == Method::GET;
    match segments {
        [""] | ["chat", _] | ["chat", _, ""] | ["direct", _] | ["direct", _, ""] => get,
        ["api", "me"] | ["api", "lobby"] | ["api", "rooms", _, "messages"] | ["api", "direct", _, "messages"] => get,
        ["admin"] | ["admin", ""] => get,
        ["admin", "users"] | ["admin", "users", _, "deactivate" | "activate"] => method == Method::POST,
        _ => false,
    }
}

fn not_found(is_api: bool, method: &Method, segments: &[&str]) -> Reply {
    let exists_with_other_method = [Method::GET, Method::POST]
        .iter()
        .any(|m| m != method && (is_known_route(m, segments) || is_public_route(m, segments)));
    match (is_api, exists_with_other_method) {
        (true, true) => json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route"),
        (true, false) => json_error(StatusCode::NOT_FOUND, "no such API route"),
        (false, true) => error_page(StatusCode::METHOD_NOT_ALLOWED, "That action is not allowed here."),
        (false, false) => error_page(StatusCode::NOT_FOUND, "No such page."),
    }
}

fn is_public_route(method: &Method, segments: &[&str]) -> bool {
    match segments {
        ["login"] | ["setup"] => true,
        ["logout"] | ["api", "login"] => method == Method::POST,
        ["healthz"] | ["readyz"] | ["metrics"] => method == Method::GET,
        _ => false,
    }
}

/// `GET /readyz`: storage readable and the message writer running.
async fn readiness(app: &Arc<App>) -> Reply {
    let storage = app.storage(|store| store.check_readable()).await;
    let reason = match storage {
        Err(error) => Some(format!("storage: {error}")),
        Ok(()) if app.log.is_closed() => Some("the message writer has stopped".to_owned()),
        Ok(()) => None,
    };
    match reason {
        None => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        Some(reason) => {
            json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": "unavailable", "reason": reason}))
        }
    }
}

/// `GET /metrics`: loopback clients only, unless `--public-metrics`.
fn metrics(app: &Arc<App>, client: SocketAddr) -> Reply {
    if !client.ip().is_loopback() && !app.config.public_metrics {
        return text(
            StatusCode::FORBIDDEN,
            "metrics are served to loopback clients only; start serve with --public-metrics to change that\n",
        );
    }
    let mut reply = hyper::Response::new(respond::Body::from(app.metrics.render()));
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    reply
}
