//! The WebSocket routes' checks before the upgrade: every failed check is a
//! plain HTTP error and no upgrade happens.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};

use super::identity::current_user;
use super::peer::Peer;
use super::per_address::HeldSlot;
use super::request::{origin_allowed, query};
use super::respond::{json_error, Body, Reply};
use crate::app::App;
use crate::chat::socket::{self, SocketRequest, Watch};
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
    /// `/ws/chat/<room>/`: the room is created on first join.
    Room(RoomName),
    /// `/ws/direct/<user>/`: the direct chat with this user, who must exist.
    Direct(Username),
    /// `/ws/user/`: every conversation of the signed-in user.
    Inbox,
}

/// Checks Origin, session, `since`, the peer, the handshake and the per-user cap,
/// records the membership, then answers 101 and runs the socket; a failure is plain HTTP.
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
        Target::Room(room) => Some(Conversation::Room(room)),
        Target::Direct(peer) => match super::api::direct_with(app, &user, &peer).await {
            Ok(conversation) => Some(conversation),
            Err(reply) => return reply,
        },
        Target::Inbox => None,
    };
    if let Some(refusal) = handshake_refusal(&request) {
        return refusal;
    }
    // Taken before anything is written, so a refused upgrade joins nothing.
    let cap = app.config.max_sockets_per_user;
    let Some(user_slot) = app.chat.live.reserve(user.username.as_str(), cap) else {
        tracing::warn!(target: SECURITY, client = %peer.address, username = %log_safe(user.username.as_str()), reason = "sockets per user", "upgrade refused");
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("this account already has {cap} open sockets on this server, the most one user may hold (--max-sockets-per-user); close other tabs or windows and retry"),
        );
    };
    // Validated above, so this cannot fail; it still comes before the
    // membership write, so that nothing is written for a refused upgrade.
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, &format!("bad WebSocket handshake: {error}")),
    };
    let watch = match conversation {
        Some(conversation) => {
            if let Err(reply) = join(app, &user.username, &conversation).await {
                return reply;
            }
            Watch::Conversation(conversation)
        }
        None => Watch::Inbox,
    };
    let socket_request = SocketRequest { session: user.session_hash(), user: user.username, watch, since };
    // The socket outlives its HTTP connection: it keeps the connection's
    // place under --max-connections-per-address until it closes.
    let held = request.extensions_mut().remove::<HeldSlot>();
    let socket = socket::serve(app.chat.clone(), upgrade, socket_request);
    let running = app.shutdown.running();
    tokio::spawn(async move {
        let _held = (held, user_slot, running);
        socket.await
    });
    response.map(|_| Body::default())
}

/// Makes `user` a member of `conversation` (opening its socket or page
/// does): rooms are created and memberships recorded through the log, and a
/// member (the common case) writes nothing. The error is the JSON answer.
pub async fn join(app: &App, user: &Username, conversation: &Conversation) -> Result<(), Reply> {
    let (member, joined) = (user.as_str().to_owned(), conversation.clone());
    match app.store.call(move |store| store.is_member(&member, &joined)).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            let write = Write::Join { username: user.clone(), conversation: conversation.clone() };
            app.log.apply(write).await.map(drop).map_err(super::accounts::log_failure_json)
        }
        Err(error) => Err(super::accounts::storage_failure_json(error)),
    }
}

/// The answer to a request that breaks RFC 6455's handshake rules (section
/// 4.2.1), if it does. Checked in full before anything is written:
/// fastwebsockets checks only that a key is present and the version is 13,
/// and answers a wrong version with a plain 400. Public and over any body
/// type so the fuzz targets can check it against fastwebsockets.
pub fn handshake_refusal<B>(request: &Request<B>) -> Option<Reply> {
    if !fastwebsockets::upgrade::is_upgrade_request(request) {
        return Some(json_error(StatusCode::UPGRADE_REQUIRED, "this route speaks WebSocket only"));
    }
    let headers = request.headers();
    if only_value(headers, "sec-websocket-version") != Some(b"13".as_slice()) {
        let mut reply = json_error(
            StatusCode::UPGRADE_REQUIRED,
            "this server speaks WebSocket version 13 only: send Sec-WebSocket-Version: 13",
        );
        reply.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
        return Some(reply);
    }
    if !only_value(headers, "sec-websocket-key").is_some_and(is_websocket_key) {
        return Some(json_error(
            StatusCode::BAD_REQUEST,
            "bad WebSocket handshake: Sec-WebSocket-Key must be the base64 of 16 random bytes",
        ));
    }
    None
}

/// The value of a header sent exactly once; a repeated handshake header is
/// as bad as a missing one.
fn only_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value.as_bytes()),
        _ => None,
    }
}

/// Whether `key` is the base64 of exactly 16 bytes: 22 characters of the
/// standard alphabet, the last of which carries 2 bits (so its low 4 bits
/// are zero: `A`, `Q`, `g` or `w`), then `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    let is_base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    match key.split_last_chunk::<3>() {
        Some((body, [last, b'=', b'='])) => {
            body.len() == 21 && body.iter().all(is_base64) && matches!(last, b'A' | b'Q' | b'g' | b'w')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_websocket_key;

    #[test]
    fn only_the_base64_of_16_bytes_is_a_websocket_key() {
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "RFC 6455's sample key");
        assert!(is_websocket_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(is_websocket_key(b"/////////////////////w=="));
        for bad in [
            &b"short"[..],
            b"",
            b"dGhlIHNhbXBsZSBub25jZQ",     // unpadded
            b"dGhlIHNhbXBsZSBub25jZR==",   // trailing bits set
            b"dGhlIHNhbXBsZSBub25jZQ==\0", // too long
            b"dGhlIHNhbXBsZSBub25j",       // 15 bytes
            b"dGhlIHNhbXBsZSBub25jZXM=",   // 17 bytes
            b"dGhlIHNhbXBsZSBub25j*Q==",   // not the alphabet
            b"dGhlIHNhbXBsZSBub25jZ-_==",  // base64url
        ] {
            assert!(!is_websocket_key(bad), "{:?} was taken as a key", String::from_utf8_lossy(bad));
        }
    }
}
