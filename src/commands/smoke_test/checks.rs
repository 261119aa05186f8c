//! The checks that work against any deployment, as two users: health,
//! sign-in, a room both join, messages both ways in one order, history,
//! `since=` recovery, refused frames and refused upgrades; and the direct
//! conversation the in-process runs add. One function per check.

use std::time::Duration;

use anyhow::{anyhow, bail, ensure};
use serde_json::Value;

use super::{Account, Report, WAIT};
use crate::client::{ChatSocket, Client, ConnectError};

/// What the shared checks leave for the local-only ones.
pub(super) struct Signed {
    /// The first user, signed in on `nodes[0]`.
    pub(super) alice: Client,
    /// The second user, signed in on `nodes[1]`.
    pub(super) bob: Client,
    /// The room the checks chatted in, with a random name so runs do not mix.
    pub(super) room: String,
}

/// The checks that work against any deployment, as two users.
/// `a` uses `nodes[0]` and `b` uses `nodes[1]` (the same server, or two
/// nodes of one cluster). None when a check the rest build on failed.
pub(super) async fn shared_checks(
    report: &mut Report,
    nodes: [&Client; 2],
    a: &Account,
    b: &Account,
) -> Option<Signed> {
    report.check("/healthz and /readyz answer", health_and_readiness(nodes)).await;
    let (alice, bob) = report.check("both users sign in through /api/login", sign_in_both(nodes, a, b)).await?;
    let room = format!("smoke_{}", crate::auth::session::random_hex::<4>());
    let path = room_path(&room);
    let (mut alice_ws, mut bob_ws) =
        report.check(&format!("both join room {room} and get a history frame"), join_both(&alice, &bob, &path)).await?;
    let ids = report
        .check(
            "messages both ways arrive once, in one order, with authors and ids",
            messages_both_ways(&mut alice_ws, &mut bob_ws, [a, b], &room),
        )
        .await?;
    report
        .check(
            "the history API and a new socket's history frame return them in order",
            history_in_order(&alice, &bob, &room, &ids),
        )
        .await;
    report
        .check(
            "a reconnect with since= returns exactly the missed messages",
            reconnect_since(&mut alice_ws, bob_ws, &bob, &room, &ids),
        )
        .await;
    report.check("refused frames get error frames and the socket stays open", refused_frames(&mut alice_ws)).await;
    report.check("an upgrade without a session is refused with 401", upgrade_without_session(nodes[0], &path)).await;
    report
        .check("an upgrade from a foreign Origin is refused with 403", upgrade_from_foreign_origin(&alice, &path))
        .await;
    report.check("the API refuses anonymous callers with 401 JSON", anonymous_api(nodes[0], &room)).await;
    alice_ws.close().await;
    Some(Signed { alice, bob, room })
}

/// The WebSocket path of a chat room.
pub(super) fn room_path(room: &str) -> String {
    format!("/ws/chat/{room}/")
}

/// Every node answers /healthz with `ok` and /readyz with `ready`.
async fn health_and_readiness(nodes: [&Client; 2]) -> anyhow::Result<()> {
    for node in nodes {
        let health = node.get("/healthz").await?;
        ensure!(health.status == 200 && health.text() == "ok", "/healthz: {} {:?}", health.status, health.text());
        let (status, ready) = node.get_json("/readyz").await?;
        ensure!(status == 200 && ready["status"] == "ready", "/readyz: {status} {ready}");
    }
    Ok(())
}

/// Signs `a` in on `nodes[0]` and `b` on `nodes[1]`; gives their clients.
async fn sign_in_both(nodes: [&Client; 2], a: &Account, b: &Account) -> anyhow::Result<(Client, Client)> {
    let mut alice = nodes[0].anonymous();
    let mut bob = nodes[1].anonymous();
    for (who, account) in [(&mut alice, a), (&mut bob, b)] {
        let answer = who.login(&account.name, &account.password).await?;
        ensure!(answer.status == 200, "{} got {} {}", account.name, answer.status, answer.text());
        ensure!(answer.json()?["username"] == account.name.as_str(), "login answered {}", answer.text());
    }
    Ok((alice, bob))
}

/// Opens both users' sockets on the room; each first gets a history frame.
async fn join_both(alice: &Client, bob: &Client, path: &str) -> anyhow::Result<(ChatSocket, ChatSocket)> {
    let mut alice_ws = alice.connect(path, None).await?;
    let mut bob_ws = bob.connect(path, None).await?;
    for ws in [&mut alice_ws, &mut bob_ws] {
        let first = ws.next_json(WAIT).await?;
        ensure!(first["type"] == "history" && first["messages"].is_array(), "first frame was {first}");
    }
    Ok((alice_ws, bob_ws))
}

/// What the message check sends: whether alice sends it, and the text.
const SCRIPT: [(bool, &str); 4] = [
    (true, "hello from alice"),
    (false, "hi alice, bob here"),
    (true, "<script>alert(1)</script>"),
    (false, "  trimmed  "),
];

/// Sends `SCRIPT` from both sides; both see every message once, in one
/// order of increasing ids. Gives those ids.
async fn messages_both_ways(
    alice_ws: &mut ChatSocket,
    bob_ws: &mut ChatSocket,
    authors: [&Account; 2],
    room: &str,
) -> anyhow::Result<Vec<String>> {
    for (i, (from_alice, text)) in SCRIPT.iter().enumerate() {
        let ws = if *from_alice { &mut *alice_ws } else { &mut *bob_ws };
        ws.send_message(text, Some(&format!("c{i}"))).await?;
    }
    let seen_by_alice = collect_messages(alice_ws, SCRIPT.len()).await?;
    let seen_by_bob = collect_messages(bob_ws, SCRIPT.len()).await?;
    let ids: Vec<String> = seen_by_alice.iter().map(|m| m["id"].as_str().unwrap_or_default().to_owned()).collect();
    let bob_ids: Vec<String> = seen_by_bob.iter().map(|m| m["id"].as_str().unwrap_or_default().to_owned()).collect();
    ensure!(ids == bob_ids, "alice and bob saw different orders: {ids:?} vs {bob_ids:?}");
    ensure!(ids.windows(2).all(|w| w[0] < w[1]), "ids do not increase: {ids:?}");
    for (frame, own) in seen_by_alice.iter().map(|f| (f, true)).chain(seen_by_bob.iter().map(|f| (f, false))) {
        check_message_frame(frame, own, authors, room)?;
    }
    ensure!(alice_ws.receives_nothing(Duration::from_millis(300)).await, "alice got an extra frame");
    ensure!(bob_ws.receives_nothing(Duration::from_millis(300)).await, "bob got an extra frame");
    Ok(ids)
}

/// One delivered `SCRIPT` message has its author, room and time, and its
/// client_id only for its sender (`own`: the frame reached alice).
fn check_message_frame(frame: &Value, own: bool, [a, b]: [&Account; 2], room: &str) -> anyhow::Result<()> {
    let text = frame["message"].as_str().unwrap_or_default();
    let (i, (from_alice, _)) = SCRIPT
        .iter()
        .enumerate()
        .find(|(_, (_, sent))| sent.trim() == text)
        .ok_or_else(|| anyhow!("unexpected message {frame}"))?;
    let author = if *from_alice { &a.name } else { &b.name };
    ensure!(frame["author"] == author.as_str(), "wrong author in {frame}");
    ensure!(frame["room"] == room && frame["ts"].is_string(), "missing fields in {frame}");
    let is_own = *from_alice == own;
    let expected_client_id = if is_own { Value::from(format!("c{i}")) } else { Value::Null };
    ensure!(
        frame["client_id"] == expected_client_id,
        "client_id wrong for {} in {frame}",
        if own { "alice" } else { "bob" }
    );
    Ok(())
}

/// The history API and a new socket's history frame hold `ids`, in order.
async fn history_in_order(alice: &Client, bob: &Client, room: &str, ids: &[String]) -> anyhow::Result<()> {
    let (status, page) = bob.get_json(&format!("/api/rooms/{room}/messages?limit=10")).await?;
    ensure!(status == 200, "history API answered {status} {page}");
    ensure!(ids_of(&page["messages"]) == ids, "history API ids {:?} != {ids:?}", ids_of(&page["messages"]));
    let mut again = alice.connect(&room_path(room), None).await?;
    let history = again.next_json(WAIT).await?;
    ensure!(history["type"] == "history", "first frame was {history}");
    ensure!(ids_of(&history["messages"]) == ids, "history frame ids {:?} != {ids:?}", ids_of(&history["messages"]));
    again.close().await;
    Ok(())
}

/// Bob leaves, alice sends two messages, bob comes back with `since=` the
/// last id he saw and gets exactly those two.
async fn reconnect_since(
    alice_ws: &mut ChatSocket,
    bob_ws: ChatSocket,
    bob: &Client,
    room: &str,
    ids: &[String],
) -> anyhow::Result<()> {
    let last_seen = ids.last().cloned().unwrap_or_default();
    bob_ws.close().await;
    let mut missed = Vec::new();
    for text in ["while bob was away 1", "while bob was away 2"] {
        alice_ws.send_message(text, None).await?;
        missed.push(collect_messages(alice_ws, 1).await?.remove(0)["id"].as_str().unwrap_or_default().to_owned());
    }
    // On a cluster, bob's node may apply the stream a moment after
    // alice's: wait until it holds what bob missed.
    let after = format!("/api/rooms/{room}/messages?after={last_seen}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while ids_of(&bob.get_json(&after).await?.1["messages"]).len() < missed.len() {
        ensure!(tokio::time::Instant::now() < deadline, "bob's node never received the missed messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut back = bob.connect(&format!("{}?since={last_seen}", room_path(room)), None).await?;
    let history = back.next_json(WAIT).await?;
    ensure!(history["type"] == "history", "first frame was {history}");
    ensure!(
        ids_of(&history["messages"]) == missed,
        "since= returned {:?}, missed were {missed:?}",
        ids_of(&history["messages"])
    );
    ensure!(history.get("more").is_none_or(|m| m == false), "more was set with only two missed");
    back.close().await;
    Ok(())
}

/// Bad JSON, a non-object and an empty message each get their error
/// frame, and a message after them still goes through.
async fn refused_frames(alice_ws: &mut ChatSocket) -> anyhow::Result<()> {
    for (raw, code) in [("not json", "bad_json"), ("[1,2]", "bad_frame"), (r#"{"message": " \n "}"#, "empty")] {
        alice_ws.send_text(raw).await?;
        let error = alice_ws.next_of_type("error", WAIT).await?;
        ensure!(error["code"] == code, "{raw:?} gave {error}, expected {code}");
    }
    alice_ws.send_message("still here", Some("after-errors")).await?;
    let echo = alice_ws.next_of_type("chat_handler", WAIT).await?;
    ensure!(echo["client_id"] == "after-errors", "echo was {echo}");
    Ok(())
}

/// A socket upgrade with no session cookie gets 401.
async fn upgrade_without_session(client: &Client, path: &str) -> anyhow::Result<()> {
    match client.anonymous().connect(path, None).await {
        Err(ConnectError::Refused(401)) => Ok(()),
        Err(other) => bail!("expected 401, got {other}"),
        Ok(_) => bail!("the upgrade was accepted"),
    }
}

/// A signed-in upgrade from another site's Origin gets 403.
async fn upgrade_from_foreign_origin(alice: &Client, path: &str) -> anyhow::Result<()> {
    match alice.connect(path, Some("http://evil.example")).await {
        Err(ConnectError::Refused(403)) => Ok(()),
        Err(other) => bail!("expected 403, got {other}"),
        Ok(_) => bail!("the upgrade was accepted"),
    }
}

/// The JSON API answers a caller with no session 401 with an `error` field.
async fn anonymous_api(client: &Client, room: &str) -> anyhow::Result<()> {
    let answer = client.anonymous().get(&format!("/api/rooms/{room}/messages")).await?;
    ensure!(answer.status == 401 && answer.json()?["error"].is_string(), "got {} {}", answer.status, answer.text());
    Ok(())
}

/// Alice and bob talk directly; carol, who opened her own conversation
/// with alice, sees none of it.
pub(super) async fn direct_conversation(state: &Signed, carol: &Account) -> anyhow::Result<()> {
    let mut carol_client = state.alice.anonymous();
    let login = carol_client.login(&carol.name, &carol.password).await?;
    ensure!(login.status == 200, "carol could not sign in: {}", login.status);
    let me = state.alice.get_json("/api/me").await?.1;
    let alice_name = me["username"].as_str().unwrap_or_default().to_owned();
    let bob_name = state.bob.get_json("/api/me").await?.1["username"].as_str().unwrap_or_default().to_owned();
    let mut alice_dm = state.alice.connect(&format!("/ws/direct/{bob_name}/"), None).await?;
    let mut bob_dm = state.bob.connect(&format!("/ws/direct/{alice_name}/"), None).await?;
    let mut carol_dm = carol_client.connect(&format!("/ws/direct/{alice_name}/"), None).await?;
    for ws in [&mut alice_dm, &mut bob_dm, &mut carol_dm] {
        ws.next_of_type("history", WAIT).await?;
    }
    alice_dm.send_message("just between us", None).await?;
    let mut pair = [alice_name.as_str(), bob_name.as_str()];
    pair.sort_unstable();
    let expected_room = format!("dm:{}:{}", pair[0], pair[1]);
    for ws in [&mut alice_dm, &mut bob_dm] {
        let got = ws.next_of_type("chat_handler", WAIT).await?;
        ensure!(got["room"] == expected_room.as_str() && got["message"] == "just between us", "got {got}");
    }
    ensure!(
        carol_dm.receives_nothing(Duration::from_millis(500)).await,
        "carol received a frame of someone else's conversation"
    );
    let (status, carol_view) = carol_client.get_json(&format!("/api/direct/{bob_name}/messages")).await?;
    ensure!(
        status == 200 && carol_view["messages"].as_array().is_some_and(|m| m.is_empty()),
        "carol's view of her chat with bob: {carol_view}"
    );
    Ok(())
}

/// Reads until `count` chat messages arrived; errors on anything else.
async fn collect_messages(ws: &mut ChatSocket, count: usize) -> anyhow::Result<Vec<Value>> {
    let mut out: Vec<Value> = Vec::with_capacity(count);
    while out.len() < count {
        let frame = ws.next_json(WAIT).await?;
        ensure!(frame["type"] == "chat_handler", "expected a message, got {frame}");
        ensure!(!out.iter().any(|seen| seen["id"] == frame["id"]), "message {} arrived twice", frame["id"]);
        out.push(frame);
    }
    Ok(out)
}

/// The ids of a list of messages, in order.
fn ids_of(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .map(|list| list.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
