//! The JSON API for signed-in users: history pages, the lobby, who am I.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::accounts::storage_failure_json;
use super::identity::CurrentUser;
use super::request::query;
use super::respond::{json, json_bytes, json_error, Reply};
use crate::app::App;
use crate::chat::frames::{self, MessageFrame, PageBuilder};
use crate::domain::{Conversation, MessageId, Username};
use crate::storage::PageFrom;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// Which page of history a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Page {
    /// The newest `limit` messages, or those before the id (`before=`): reading back in time.
    Before(Option<MessageId>, usize),
    /// The oldest `limit` messages after the id (`after=`): catching up.
    After(MessageId, usize),
}

/// Parses `before`, `after` and `limit`; the error is the 400 message.
pub fn parse_page(params: &std::collections::HashMap<String, String>) -> Result<Page, String> {
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if n > 0 => (n as u64).min(MAX_LIMIT as u64) as usize,
            // Digits too many for 64 bits are still "above 500".
            Err(_) if !raw.trim().is_empty() && raw.trim().bytes().all(|b| b.is_ascii_digit()) => MAX_LIMIT,
            _ => return Err("limit must be a positive whole number (at most 500 are returned)".into()),
        },
    };
    let id = |name: &str| -> Result<Option<MessageId>, String> {
        params.get(name).map(|raw| MessageId::parse(raw).ok_or(format!("{name} must be a message id"))).transpose()
    };
    match (id("before")?, id("after")?) {
        (Some(_), Some(_)) => Err("give before or after, not both".into()),
        (before, None) => Ok(Page::Before(before, limit)),
        (None, Some(after)) => Ok(Page::After(after, limit)),
    }
}

/// `GET /api/rooms/<room>/messages` and `GET /api/direct/<user>/messages`.
pub async fn history(app: &Arc<App>, request: &Request<Incoming>, conversation: Conversation) -> Reply {
    let page = match parse_page(&query(request)) {
        Ok(page) => page,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let key = conversation.key();
    let (from, limit) = match page {
        Page::Before(before, limit) => (PageFrom::Before(before), limit),
        Page::After(after, limit) => (PageFrom::After(after), limit),
    };
    // Shares the sockets' bound on pages being built at once (1 MiB each).
    let _building = app.chat.history_frames.acquire().await.expect("the semaphore is never closed");
    let body = app
        .store
        .call(move |store| {
            let mut page = PageBuilder::api(from);
            let end = store.walk_messages(&key, from, limit, |m| page.push(&m))?;
            Ok(page.finish(frames::page_has_more(from, end)))
        })
        .await;
    match body {
        Ok(body) => json_bytes(StatusCode::OK, body),
        Err(error) => storage_failure_json(error),
    }
}

/// The direct conversation with `peer`, if that user exists.
pub async fn direct_with(app: &Arc<App>, user: &CurrentUser, peer: &Username) -> Result<Conversation, Reply> {
    let name = peer.as_str().to_owned();
    match app.store.call(move |store| store.user(&name)).await {
        Ok(Some(_)) => Ok(Conversation::direct(user.username.clone(), peer.clone())),
        Ok(None) => Err(json_error(StatusCode::NOT_FOUND, "no such user")),
        Err(error) => Err(storage_failure_json(error)),
    }
}

/// `GET /api/me`.
pub fn me(user: &CurrentUser) -> Reply {
    json(StatusCode::OK, &serde_json::json!({"username": user.username.as_str(), "is_superuser": user.is_superuser}))
}

/// `GET /api/lobby`: the user's conversations, newest activity first.
pub async fn lobby(app: &Arc<App>, user: &CurrentUser) -> Reply {
    let name = user.username.as_str().to_owned();
    let summaries = match app.store.call(move |store| store.conversations_of(&name)).await {
        Ok(summaries) => summaries,
        Err(error) => return storage_failure_json(error),
    };
    let conversations: Vec<serde_json::Value> = summaries
        .iter()
        .map(|summary| {
            let latest = summary.latest.as_ref().map(|m| MessageFrame::of(m, None));
            match &summary.conversation {
                Conversation::Room(room) => serde_json::json!({
                    "kind": "room", "name": room.as_str(), "url": format!("/chat/{}", room.as_str()), "latest": latest,
                }),
                direct => {
                    let peer = direct.peer_of(&user.username).map(Username::as_str).unwrap_or_default();
                    serde_json::json!({"kind": "direct", "name": peer, "url": format!("/direct/{peer}"), "latest": latest})
                }
            }
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({"username": user.username.as_str(), "is_superuser": user.is_superuser, "conversations": conversations}),
    )
}

/// `GET /api/inbox`: the user socket's `inbox` frame, without `type`.
pub async fn inbox(app: &Arc<App>, user: &CurrentUser) -> Reply {
    let name = user.username.as_str().to_owned();
    let summaries = match app.store.call(move |store| store.conversations_of(&name)).await {
        Ok(summaries) => summaries,
        Err(error) => return storage_failure_json(error),
    };
    match app.chat.online_contacts(user.username.as_str()).await {
        Ok(online) => json(StatusCode::OK, &frames::inbox(&user.username, &summaries, &online)),
        Err(error) => storage_failure_json(error),
    }
}

/// `GET /api/rooms`: every group room, most recently active first.
pub async fn room_directory(app: &Arc<App>) -> Reply {
    match app.store.call(|store| store.room_directory()).await {
        Ok(rooms) => {
            let rooms: Vec<serde_json::Value> = rooms
                .iter()
                .map(|summary| {
                    serde_json::json!({
                        "room": summary.room.key(),
                        "members": summary.members,
                        "latest": summary.latest.as_ref().map(|m| MessageFrame::of(m, None)),
                    })
                })
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "rooms": rooms }))
        }
        Err(error) => storage_failure_json(error),
    }
}

/// Users `GET /api/users` answers at most.
const USER_SEARCH_LIMIT: usize = 20;

/// `GET /api/users?prefix=`: active users whose name starts with the prefix
/// ignoring ASCII case, the first 20 in byte order, with whether each is online.
pub async fn user_search(app: &Arc<App>, request: &Request<Incoming>) -> Reply {
    let prefix = query(request).get("prefix").cloned().unwrap_or_default();
    if prefix.len() > Username::MAX_LEN {
        return json(StatusCode::OK, &serde_json::json!({ "users": [] }));
    }
    match app.store.call(move |store| store.active_users_with_prefix(&prefix, USER_SEARCH_LIMIT)).await {
        Ok(names) => {
            let users: Vec<serde_json::Value> = names
                .iter()
                .map(|name| serde_json::json!({"username": name, "online": app.chat.is_online(name)}))
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "users": users }))
        }
        Err(error) => storage_failure_json(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn limits_default_cap_and_refuse_nonsense() {
        assert_eq!(parse_page(&params(&[])), Ok(Page::Before(None, 50)));
        assert_eq!(parse_page(&params(&[("limit", "9999")])), Ok(Page::Before(None, 500)));
        assert_eq!(parse_page(&params(&[("limit", "99999999999999999999999")])), Ok(Page::Before(None, 500)));
        assert_eq!(parse_page(&params(&[("after", "7"), ("limit", "3")])), Ok(Page::After(MessageId(7), 3)));
        for bad in ["0", "-1", "ten", ""] {
            assert!(parse_page(&params(&[("limit", bad)])).is_err(), "{bad}");
        }
        assert!(parse_page(&params(&[("before", "x")])).is_err());
        assert!(parse_page(&params(&[("before", "1"), ("after", "2")])).is_err());
    }
}
