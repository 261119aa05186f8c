//! HTTP: the routing table (this file), then one module per area. Every
//! route of PROTOCOL.md is listed in `route` below.

pub mod accounts;
pub mod api;
pub mod identity;
pub mod notice;
pub mod pages;
pub mod passwords;
pub mod peer;
pub mod per_address;
pub mod request;
pub mod respond;
pub mod server;
pub mod templates;
pub mod tls;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::app::App;
use crate::domain::{Conversation, RoomName, Username};
use identity::{current_user, CurrentUser};
use peer::Peer;
use respond::{error_page, json, json_error, see_other, text, Reply};
use websocket::Target;

/// Every route of chatctl, parsed (names validated) before any work is done.
/// Public so the router can be fuzzed (`fuzz/`) without a server.
pub enum Route {
    /// `GET /healthz`
    Health,
    /// `GET /readyz`
    Ready,
    /// `GET /metrics`
    Metrics,
    /// `GET /static/<name>` (and `/favicon.ico`)
    Static(String),
    /// `GET /login`
    LoginPage,
    /// `POST /login`
    LoginSubmit,
    /// `POST /logout`
    Logout,
    /// `GET /setup`
    SetupPage,
    /// `POST /setup`
    SetupSubmit,
    /// `POST /api/login`
    ApiLogin,
    /// `GET /ws/chat/<room>/`
    RoomSocket(RoomName),
    /// `GET /ws/direct/<user>/`
    DirectSocket(Username),
    /// `GET /ws/user/`
    UserSocket,
    // Signed in from here on.
    /// `GET /`
    Lobby,
    /// `GET /chat/<room>/`
    RoomPage(RoomName),
    /// `GET /direct/<user>/`
    DirectPage(Username),
    /// `GET /api/me`
    Me,
    /// `GET /api/lobby`
    LobbyApi,
    /// `GET /api/inbox`
    Inbox,
    /// `GET /api/rooms`
    RoomDirectory,
    /// `GET /api/users?prefix=`
    UserSearch,
    /// `GET /api/rooms/<room>/messages`
    RoomHistory(RoomName),
    /// `GET /api/direct/<user>/messages`
    DirectHistory(Username),
    /// `GET /account`
    Account,
    /// `POST /api/password`
    ApiPassword,
    // Superusers only.
    /// `GET /admin`
    Admin,
    /// `POST /admin/users`
    AdminCreateUser,
    /// `POST /admin/users/<user>/activate` (true) or `/deactivate` (false)
    AdminSetActive(Username, bool),
    /// `POST /admin/users/<user>/password`
    AdminSetPassword(Username),
}

/// Why no route matched. Public with `Route`, for the fuzz targets.
pub enum Miss {
    /// 404, and why.
    NotFound(&'static str),
    /// 405: the path exists, not for this method.
    MethodNotAllowed,
}

impl Miss {
    fn reply(self, is_api: bool) -> Reply {
        match (self, is_api) {
            (Miss::NotFound(why), true) => json_error(StatusCode::NOT_FOUND, why),
            (Miss::NotFound(why), false) => error_page(StatusCode::NOT_FOUND, why),
            (Miss::MethodNotAllowed, true) => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
            }
            (Miss::MethodNotAllowed, false) => {
                error_page(StatusCode::METHOD_NOT_ALLOWED, "That action is not allowed here.")
            }
        }
    }
}

const NO_SUCH_ROOM: &str = "no such room: room names are 1 to 64 of A-Z a-z 0-9 _";
const NO_SUCH_USER: &str = "no such user";

/// The routing table. Bad room and user names are 404 before sign-in is
/// checked, on every route alike. Public for the fuzz targets.
pub fn parse_route(method: &Method, segments: &[&str]) -> Result<Route, Miss> {
    let (get, post) = (method == Method::GET, method == Method::POST);
    let only = |allowed: bool, route: Route| if allowed { Ok(route) } else { Err(Miss::MethodNotAllowed) };
    let room = |raw: &str| RoomName::parse(raw).map_err(|_| Miss::NotFound(NO_SUCH_ROOM));
    let user = |raw: &str| Username::parse(raw).map_err(|_| Miss::NotFound(NO_SUCH_USER));
    match segments {
        ["healthz"] => only(get, Route::Health),
        ["readyz"] => only(get, Route::Ready),
        ["metrics"] => only(get, Route::Metrics),
        ["static", name] => only(get, Route::Static((*name).to_owned())),
        ["favicon.ico"] => only(get, Route::Static("favicon.svg".to_owned())),
        ["login"] if get => Ok(Route::LoginPage),
        ["login"] => only(post, Route::LoginSubmit),
        ["logout"] => only(post, Route::Logout),
        ["setup"] if get => Ok(Route::SetupPage),
        ["setup"] => only(post, Route::SetupSubmit),
        ["api", "login"] => only(post, Route::ApiLogin),
        ["ws", "chat", name] | ["ws", "chat", name, ""] => only(get, Route::RoomSocket(room(name)?)),
        ["ws", "direct", name] | ["ws", "direct", name, ""] => only(get, Route::DirectSocket(user(name)?)),
        ["ws", "user"] | ["ws", "user", ""] => only(get, Route::UserSocket),
        [""] => only(get, Route::Lobby),
        ["chat", name] | ["chat", name, ""] => only(get, Route::RoomPage(room(name)?)),
        ["direct", name] | ["direct", name, ""] => only(get, Route::DirectPage(user(name)?)),
        ["api", "me"] => only(get, Route::Me),
        ["api", "lobby"] => only(get, Route::LobbyApi),
        ["api", "inbox"] => only(get, Route::Inbox),
        ["api", "rooms"] | ["api", "rooms", ""] => only(get, Route::RoomDirectory),
        ["api", "users"] | ["api", "users", ""] => only(get, Route::UserSearch),
        ["api", "rooms", name, "messages"] => only(get, Route::RoomHistory(room(name)?)),
        ["api", "direct", name, "messages"] => only(get, Route::DirectHistory(user(name)?)),
        ["account"] | ["account", ""] => only(get, Route::Account),
        ["api", "password"] => only(post, Route::ApiPassword),
        ["admin"] | ["admin", ""] => only(get, Route::Admin),
        ["admin", "users"] => only(post, Route::AdminCreateUser),
        ["admin", "users", name, "deactivate"] => only(post, Route::AdminSetActive(user(name)?, false)),
        ["admin", "users", name, "activate"] => only(post, Route::AdminSetActive(user(name)?, true)),
        ["admin", "users", name, "password"] => only(post, Route::AdminSetPassword(user(name)?)),
        _ if segments.first() == Some(&"api") => Err(Miss::NotFound("no such API route")),
        _ => Err(Miss::NotFound("No such page.")),
    }
}

/// A request path's segments, percent-decoded (browsers send
/// `/direct/bob%40example`); `None` when an escape is malformed. Public so
/// the fuzz targets route paths exactly as `route` does.
pub fn path_segments(path: &str) -> Option<Vec<String>> {
    path.trim_start_matches('/').split('/').map(request::percent_decode).collect()
}

/// Answers one request that arrived over a connection from `tcp_peer`.
pub async fn route(app: Arc<App>, request: Request<Incoming>, tcp_peer: SocketAddr) -> Reply {
    let session = request::cookie(request.headers(), crate::auth::session::COOKIE_NAME).map(str::to_owned);
    let reply = dispatch(&app, request, tcp_peer).await;
    pages::keep_top_bar(&app, reply, session.as_deref()).await
}

async fn dispatch(app: &Arc<App>, request: Request<Incoming>, tcp_peer: SocketAddr) -> Reply {
    app.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    let is_api = request.uri().path().starts_with("/api/");
    let Some(decoded) = path_segments(request.uri().path()) else {
        return Miss::NotFound("No such page.").reply(is_api);
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let route = match parse_route(request.method(), &segments) {
        Ok(route) => route,
        Err(miss) => return miss.reply(is_api),
    };
    // With --tls-cert every connection on the listener is TLS; with
    // --secure-cookies a proxy in front terminates TLS. Either way the
    // request's own origin is https (unless a trusted proxy says otherwise).
    let direct_https = app.config.tls.is_some() || app.config.secure_cookies;
    let peer = Peer::resolve(tcp_peer, request.headers(), &app.config.trusted_proxies, direct_https);
    if peer.forwarded_by_untrusted_peer() {
        warn_of_untrusted_proxy(tcp_peer);
    }
    match route {
        Route::Health => text(StatusCode::OK, "ok"),
        Route::Ready => readiness(app).await,
        Route::Metrics => metrics(app, &peer),
        Route::Static(name) => pages::static_file(&request, &name),
        Route::LoginPage => accounts::login_page(app, &request, peer.secure_cookies(&app.config)).await,
        Route::LoginSubmit => accounts::login_submit(app, request, &peer).await,
        Route::Logout => accounts::logout(app, request, &peer).await,
        Route::SetupPage => accounts::setup_page(app, &request).await,
        Route::SetupSubmit => accounts::setup_submit(app, request, &peer).await,
        Route::ApiLogin => accounts::api_login(app, request, &peer).await,
        Route::RoomSocket(room) => websocket::upgrade(app, request, &peer, Target::Room(room)).await,
        Route::DirectSocket(other) => websocket::upgrade(app, request, &peer, Target::Direct(other)).await,
        Route::UserSocket => websocket::upgrade(app, request, &peer, Target::Inbox).await,
        signed_in => signed_in_route(app, request, signed_in, is_api, &peer).await,
    }
}

/// Routes that need a signed-in user: 401 JSON for the API, a redirect to
/// the login page for pages. `peer` is the client as resolved through
/// trusted proxies (its address, whether cookies must be `Secure`).
async fn signed_in_route(app: &Arc<App>, request: Request<Incoming>, route: Route, is_api: bool, peer: &Peer) -> Reply {
    let secure = peer.secure_cookies(&app.config);
    let user = match current_user(app, request.headers()).await {
        Ok(Some(user)) => user,
        Ok(None) if is_api => return json_error(StatusCode::UNAUTHORIZED, "sign in first (POST /api/login)"),
        Ok(None) if request.method() == Method::GET => {
            return see_other(&format!("/login?next={}", request::query_value(request.uri().path())));
        }
        Ok(None) => return error_page(StatusCode::FORBIDDEN, "Sign in first."),
        Err(error) if is_api => return accounts::storage_failure_json(error),
        Err(error) => return accounts::storage_failure_page(error),
    };
    match route {
        Route::Lobby => pages::lobby(&user),
        Route::RoomPage(room) => pages::room(app, &user, &room).await,
        Route::DirectPage(peer) => pages::direct(app, &user, &peer).await,
        Route::Me => api::me(&user),
        Route::Account => pages::account(&user),
        Route::ApiPassword => passwords::change_own(app, &user, request, peer).await,
        Route::LobbyApi => api::lobby(app, &user).await,
        Route::Inbox => api::inbox(app, &user).await,
        Route::RoomDirectory => api::room_directory(app).await,
        Route::UserSearch => api::user_search(app, &request).await,
        Route::RoomHistory(room) => api::history(app, &request, Conversation::Room(room)).await,
        Route::DirectHistory(peer) => match api::direct_with(app, &user, &peer).await {
            Ok(conversation) => api::history(app, &request, conversation).await,
            Err(reply) => reply,
        },
        admin => admin_route(app, &user, request, admin, secure).await,
    }
}

async fn admin_route(
    app: &Arc<App>,
    user: &CurrentUser,
    request: Request<Incoming>,
    route: Route,
    secure: bool,
) -> Reply {
    if !user.is_superuser {
        return error_page(StatusCode::FORBIDDEN, "Only administrators may open the admin pages.");
    }
    match route {
        Route::Admin => pages::admin(app, user, &request, secure).await,
        Route::AdminCreateUser => pages::admin_create_user(app, user, request, secure).await,
        Route::AdminSetActive(name, active) => pages::admin_set_active(app, user, request, name, active, secure).await,
        Route::AdminSetPassword(name) => passwords::admin_reset(app, user, request, name, secure).await,
        _ => error_page(StatusCode::NOT_FOUND, "No such page."),
    }
}

/// `GET /readyz`: storage readable, able to write (no failed write since
/// it was opened, space left on its disk) and the log taking writes (with a
/// broker: connected and caught up on the stream).
async fn readiness(app: &Arc<App>) -> Reply {
    let reason = match app.store.call(|store| store.check_ready()).await {
        Err(error) => Some(format!("storage: {error}")),
        Ok(()) => app.log.readiness().and_then(|()| app.fan_out.readiness()).err(),
    };
    match reason {
        None => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        Some(reason) => {
            json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": "unavailable", "reason": reason}))
        }
    }
}

/// `GET /metrics`: clients on this machine only, unless `--public-metrics`.
/// A forwarded request is never local, even from a loopback proxy that is
/// not configured as trusted: its real client is somewhere else.
fn metrics(app: &Arc<App>, peer: &Peer) -> Reply {
    let local = peer.address.is_loopback() && !peer.forwarded;
    if !local && !app.config.public_metrics {
        return text(
            StatusCode::FORBIDDEN,
            "metrics are served to clients on this machine only (not through a proxy); start serve with --public-metrics to change that\n",
        );
    }
    let mut reply = hyper::Response::new(respond::Body::from(app.metrics.render()));
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    reply
}

/// Says, at most every ten minutes, that forwarding headers arrive from a
/// peer that is not a trusted proxy: behind an undeclared proxy every client
/// looks like the proxy, shares one sign-in allowance, and the security log
/// names the proxy.
fn warn_of_untrusted_proxy(tcp_peer: SocketAddr) {
    static LAST_WARNED_MS: AtomicU64 = AtomicU64::new(0);
    if crate::telemetry::due(&LAST_WARNED_MS, std::time::Duration::from_secs(10 * 60)) {
        tracing::warn!(
            peer = %tcp_peer.ip(),
            "requests carry X-Forwarded-For or Forwarded from {}, which is not a trusted proxy: every client behind it looks like it; if it is your reverse proxy, start serve with --trusted-proxy {}",
            tcp_peer.ip(),
            tcp_peer.ip()
        );
    }
}
