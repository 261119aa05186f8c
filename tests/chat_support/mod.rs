//! What the chat-app tests (chat_app.rs, chat_app_cluster.rs) share: typed
//! client frames, the user socket and its `inbox`, reading until a frame
//! comes or a window passes, and the checks every `edit` and `delete`
//! event must pass (PROTOCOL.md, "The chat app"). Each test binary uses a
//! subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use chatctl::client::{ChatSocket, Client};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::WAIT;

/// Sends one JSON frame as text.
pub async fn send(ws: &mut ChatSocket, frame: Value) {
    ws.send_text(&frame.to_string()).await.unwrap_or_else(|e| panic!("sending {frame}: {e:#}"));
}

pub async fn send_edit(ws: &mut ChatSocket, target: &str, text: &str, client_id: Option<&str>) {
    let mut frame = json!({"type": "edit", "target": target, "message": text});
    if let Some(id) = client_id {
        frame["client_id"] = Value::from(id);
    }
    send(ws, frame).await;
}

pub async fn send_delete(ws: &mut ChatSocket, target: &str, client_id: Option<&str>) {
    let mut frame = json!({"type": "delete", "target": target});
    if let Some(id) = client_id {
        frame["client_id"] = Value::from(id);
    }
    send(ws, frame).await;
}

pub async fn send_read(ws: &mut ChatSocket, up_to: &str) {
    send(ws, json!({"type": "read", "up_to": up_to})).await;
}

/// The user-socket form of a read frame, naming its conversation.
pub async fn send_read_in(ws: &mut ChatSocket, room: &str, up_to: &str) {
    send(ws, json!({"type": "read", "room": room, "up_to": up_to})).await;
}

pub async fn send_typing(ws: &mut ChatSocket) {
    send(ws, json!({"type": "typing"})).await;
}

/// Opens `/ws/user/` and returns it with its first frame, which must be `inbox`.
pub async fn user_socket(client: &Client) -> (ChatSocket, Value) {
    let mut ws = client.connect("/ws/user/", None).await.unwrap_or_else(|e| panic!("opening /ws/user/: {e}"));
    let inbox =
        ws.next_json_with_awareness(WAIT).await.unwrap_or_else(|e| panic!("no first frame on /ws/user/: {e:#}"));
    assert_eq!(inbox["type"], "inbox", "the first frame on /ws/user/ was {inbox}");
    assert!(inbox["conversations"].is_array() && inbox["online"].is_array(), "a malformed inbox: {inbox}");
    (ws, inbox)
}

/// The next frame, or a panic naming `what`.
pub async fn next(ws: &mut ChatSocket, what: &str) -> Value {
    ws.next_json(WAIT).await.unwrap_or_else(|e| panic!("{what}: no frame: {e:#}"))
}

/// Reads until a frame of `kind` comes (skipping others), or panics.
pub async fn next_of(ws: &mut ChatSocket, kind: &str, what: &str) -> Value {
    ws.next_of_type(kind, WAIT).await.unwrap_or_else(|e| panic!("{what}: no {kind} frame: {e:#}"))
}

/// Reads frames until one satisfies `wanted`, within `within`; returns
/// every frame read before it, and it.
pub async fn read_until(
    ws: &mut ChatSocket,
    within: Duration,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> (Vec<Value>, Value) {
    let deadline = Instant::now() + within;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws
            .next_json(left)
            .await
            .unwrap_or_else(|e| panic!("{what}: the awaited frame never came ({e:#}); before it: {before:?}"));
        if wanted(&frame) {
            return (before, frame);
        }
        before.push(frame);
    }
}

/// Every frame that arrives within `window` (a check of what does not come).
pub async fn frames_within(ws: &mut ChatSocket, window: Duration) -> Vec<Value> {
    let deadline = Instant::now() + window;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return frames;
        }
        match ws.next_json(left).await {
            Ok(frame) => frames.push(frame),
            Err(_) => return frames,
        }
    }
}

/// Whether `frame` is a presence change of `user` to `online`.
pub fn is_presence_of(frame: &Value, user: &str, online: bool) -> bool {
    frame["type"] == "presence" && frame["user"] == user && frame["online"] == online
}

/// Whether `frame` is any presence change of `user`.
pub fn is_any_presence_of(frame: &Value, user: &str) -> bool {
    frame["type"] == "presence" && frame["user"] == user
}

/// Waits for the presence change of `user` to `online` on an awareness
/// socket; returns when it came, or `None` when `within` passed first.
pub async fn presence_change(ws: &mut ChatSocket, user: &str, online: bool, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_with_awareness(left).await.ok()?;
        if is_presence_of(&frame, user, online) {
            return Some(Instant::now());
        }
        assert!(!is_any_presence_of(&frame, user), "an unexpected presence change: {frame}");
    }
}

/// The `id` of a frame.
pub fn id(frame: &Value) -> String {
    frame["id"].as_str().unwrap_or_else(|| panic!("a frame without a string id: {frame}")).to_owned()
}

/// The keys of a JSON object.
pub fn keys(frame: &Value) -> BTreeSet<String> {
    frame.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

pub fn key_set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|k| (*k).to_owned()).collect()
}

/// The frame without `client_id` (what every other socket gets).
pub fn without_client_id(frame: &Value) -> Value {
    let mut plain = frame.clone();
    if let Some(fields) = plain.as_object_mut() {
        fields.remove("client_id");
    }
    plain
}

/// An id of the same width as `near` that no conversation holds yet
/// (far above anything a test writes).
pub fn unknown_id(near: &str) -> String {
    let n: u64 = near.parse().unwrap_or_else(|_| panic!("an id that is not a number: {near}"));
    format!("{:0width$}", n + 1_000_000_000, width = near.len())
}

/// Asserts `frame` is the `edit` event PROTOCOL.md describes.
pub fn assert_edit_event(frame: &Value, room: &str, target: &str, author: &str, text: &str, client_id: Option<&str>) {
    let mut expected = key_set(&["type", "id", "room", "target", "author", "message", "ts"]);
    if client_id.is_some() {
        expected.insert("client_id".to_owned());
    }
    assert_eq!(keys(frame), expected, "the fields of the edit event {frame}");
    assert_eq!(frame["type"], "edit", "{frame}");
    assert_eq!(frame["room"], room, "{frame}");
    assert_eq!(frame["target"], target, "{frame}");
    assert_eq!(frame["author"], author, "{frame}");
    assert_eq!(frame["message"], text, "{frame}");
    assert!(frame["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')), "the ts of {frame}");
    assert!(id(frame).as_str() > target, "the edit's id is not above its target's: {frame}");
    assert_eq!(frame["client_id"].as_str(), client_id, "the client_id of {frame}");
}

/// Asserts `frame` is the `delete` event PROTOCOL.md describes.
pub fn assert_delete_event(frame: &Value, room: &str, target: &str, author: &str, client_id: Option<&str>) {
    let mut expected = key_set(&["type", "id", "room", "target", "author", "ts"]);
    if client_id.is_some() {
        expected.insert("client_id".to_owned());
    }
    assert_eq!(keys(frame), expected, "the fields of the delete event {frame}");
    assert_eq!(frame["type"], "delete", "{frame}");
    assert_eq!(frame["room"], room, "{frame}");
    assert_eq!(frame["target"], target, "{frame}");
    assert_eq!(frame["author"], author, "{frame}");
    assert!(frame["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')), "the ts of {frame}");
    assert!(id(frame).as_str() > target, "the deletion's id is not above its target's: {frame}");
    assert_eq!(frame["client_id"].as_str(), client_id, "the client_id of {frame}");
}

/// `GET path` as JSON, expecting 200.
pub async fn get_ok(client: &Client, path: &str) -> Value {
    let (status, body) = client.get_json(path).await.unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The `messages` of a history API page.
pub async fn page(client: &Client, path: &str) -> Vec<Value> {
    let body = get_ok(client, path).await;
    body["messages"].as_array().unwrap_or_else(|| panic!("GET {path}: no messages in {body}")).clone()
}

/// The inbox entry of conversation `room` (the `room` key), if any.
pub fn conversation<'a>(inbox: &'a Value, room: &str) -> Option<&'a Value> {
    inbox["conversations"].as_array()?.iter().find(|c| c["room"] == room)
}

/// The names in an inbox's `online`.
pub fn online_of(inbox: &Value) -> Vec<String> {
    inbox["online"]
        .as_array()
        .map(|l| l.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Asserts a history (frames oldest first) shows `text` nowhere.
pub fn assert_text_gone(body: &str, text: &str, what: &str) {
    assert!(!body.contains(text), "{what} still serves the deleted text {text:?}: {body}");
}

/// Asserts ids increase strictly, as strings.
pub fn assert_ids_increase(frames: &[Value], what: &str) {
    for pair in frames.windows(2) {
        assert!(id(&pair[0]) < id(&pair[1]), "{what}: ids out of order: {} then {}", pair[0], pair[1]);
    }
}

/// Sends a message with a fresh `client_id` and returns its echo (without
/// the `client_id`, as others see it), skipping whatever else comes first.
pub async fn post(ws: &mut ChatSocket, text: &str) -> Value {
    let tag = format!("post-{}", NEXT_TAG.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    ws.send_message(text, Some(&tag)).await.unwrap_or_else(|e| panic!("sending {text:?}: {e:#}"));
    let (_, echo) = read_until(ws, WAIT, &format!("the echo of {text:?}"), |f| f["client_id"] == tag.as_str()).await;
    assert_eq!(echo["type"], "chat_handler", "{text:?} was refused: {echo}");
    without_client_id(&echo)
}

static NEXT_TAG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
