//! The WebSocket routes' checks before the upgrade: every failed check is a
//! plain HTTP error and no upgrade happens.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::identity::current_user;
use super::peer::Peer;
use super::per_address::HeldSlot;
use super::request::{origin_allowed, query};
use super::respond::{json_error, Body, Reply};
use crate::app::App;
use crate::chat::socket::{self, SocketRequest};
use crate::domain::{Conversation, MessageId, RoomName, Username};
use crate::log::write::Write;
use crate::telemetry::{log_safe, SECURITY};

/// What a refused Origin is told. The usual cause is a proxy: the page's
/// origin is its public URL, which the server cannot guess.
const ORIGIN_HINT: &str = "this Origin may not open chat sockets. If users reach chatctl through a reverse proxy or \
     another name, start serve with --public-url set to the URL they open (and --trusted-proxy for the proxy); \
     for another site's pages, add --allowed-origin";

/// What the path names: a room, or the other member of a direct conversation.
pub enum Target {
    Room(RoomName),
    Direct(Username),
}

pub async fn upgrade(app: &Arc<App>, mut request: Request<Incoming>, peer: &Peer, target: Target) -> Reply {
    if !origin_allowed(request.headers(), peer, &app.config) {
        let origin = request.headers().get(hyper::header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("");
        tracing::warn!(target: SECURITY, client = %peer.address, reason = "origin", origin = %log_safe(origin), "upgrade refused");
        return json_error(StatusCode::FORBIDDEN, ORIGIN_HINT);
    }
    let user = match current_user(app, request.headers()).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            tracing::warn!(target: SECURITY, client = %peer.address, reason = "not signed in", "upgrade refused");
            return json_error(StatusCode::UNAUTHORIZED, "sign in first: the upgrade needs a valid session cookie");
        }
        Err(error) => return super::accounts::storage_failure_json(error),
    };
    let since = match query(&request).get("since") {
        None => None,
        Some(raw) => match MessageId::parse(raw) {
            Some(id) => Some(id),
            None => return json_error(StatusCode::BAD_REQUEST, "since must be a message id"),
        },
    };
    let conversation = match target {
        Target::Room(room) => Conversation::Room(room),
        Target::Direct(peer) => match super::api::direct_with(app, &user, &peer).await {
            Ok(conversation) => conversation,
            Err(reply) => return reply,
        },
    };
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return json_error(StatusCode::UPGRADE_REQUIRED, "this route speaks WebSocket only");
    }
    let member = user.username.as_str().to_owned();
    let joined = conversation.clone();
    // Rooms are created and memberships recorded through the log; an
    // upgrade by a member (the common case) writes nothing.
    match app.storage(move |store| store.is_member(&member, &joined)).await {
        Ok(true) => {}
        Ok(false) => {
            let write = Write::Join { username: user.username.as_str().to_owned(), conversation: conversation.key() };
            if let Err(error) = app.log.apply(write).await {
                return super::accounts::log_failure_json(error);
            }
        }
        Err(error) => return super::accounts::storage_failure_json(error),
    }
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, &format!("bad WebSocket handshake: {error}")),
    };
    let socket_request = SocketRequest { session: user.session_hash(), user: user.username, conversation, since };
    // The socket outlives its HTTP connection: it keeps the connection's
    // place under --max-connections-per-address until it closes.
    let held = request.extensions_mut().remove::<HeldSlot>();
    let socket = socket::serve(app.clone(), upgrade, socket_request);
    tokio::spawn(async move {
        let _held = held;
        socket.await
    });
    response.map(|_| Body::default())
}
