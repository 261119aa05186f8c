//! The chat app of PROTOCOL.md across two nodes A and B of one stream,
//! users acting on different nodes: edits, deletions and read markers made
//! on A reach sockets on B in A's order and are in B's history; typing and
//! presence cross nodes at the contract's times; a user socket on B gets a
//! direct message posted on A. Without a broker (see
//! `cluster_support::broker`) each test says SKIPPED and returns; with
//! `CHATCTL_TEST_AMQP_URL` set it runs.

mod chat_support;
mod cluster_support;
mod common;

use std::time::Duration;

use chat_support::*;
use chatctl::client::ChatSocket;
use cluster_support::*;
use common::{join, leave, say};
use serde_json::{json, Value};
use tokio::time::Instant;

/// Two ready nodes of a fresh stream, with these users (created through A).
async fn two_nodes(test: &str, users: &[&str]) -> Option<(Broker, TestStream, Node, Node)> {
    let broker = broker(test).await?;
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    for user in users {
        a.create_user(user).await;
    }
    Some((broker, stream, a, b))
}

/// The frames of a conversation (messages and their events), in order.
fn entries(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| matches!(f["type"].as_str(), Some("chat_handler" | "edit" | "delete")))
        .map(without_client_id)
        .collect()
}

/// Reads `count` conversation entries (messages, edits, deletions) from
/// `ws`, skipping other frames.
async fn read_entries(ws: &mut ChatSocket, count: usize, what: &str) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < count {
        let frame = next(ws, &format!("{what}: after {} of {count}", got.len())).await;
        got.extend(entries(&[frame]));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_and_read_markers_made_on_a_reach_b_in_order_and_are_in_bs_history() {
    let test = "edits_deletions_and_read_markers_made_on_a_reach_b_in_order_and_are_in_bs_history";
    let Some((_broker, _stream, a, b)) = two_nodes(test, &["alice", "bob"]).await else { return };
    let (alice_a, bob_a) = (a.sign_in("alice").await, a.sign_in("bob").await);
    let (alice_b, bob_b) = (b.sign_in("alice").await, b.sign_in("bob").await);

    let (mut alice_ws, _) = join(&alice_a, "/ws/chat/clustered/").await;
    let (mut bob_ws, _) = join(&bob_b, "/ws/chat/clustered/").await;
    let (mut bob_on_a, _) = join(&bob_a, "/ws/chat/clustered/").await;
    let (mut bob_user, _) = user_socket(&bob_b).await;
    let (mut alice_user, _) = user_socket(&alice_b).await;

    let zero = say(&mut alice_ws, "zero").await;
    let one = say(&mut alice_ws, "one").await;
    let two = say(&mut alice_ws, "two").await;
    let three = say(&mut alice_ws, "three").await;
    send_edit(&mut alice_ws, &id(&one), "one, edited on A", Some("e1")).await;
    let edit = next(&mut alice_ws, "alice's edit").await;
    assert_edit_event(&edit, "clustered", &id(&one), "alice", "one, edited on A", Some("e1"));
    send_delete(&mut alice_ws, &id(&two), Some("d2")).await;
    let delete = next(&mut alice_ws, "alice's deletion").await;
    assert_delete_event(&delete, "clustered", &id(&two), "alice", Some("d2"));
    let on_a = entries(&[zero.clone(), one.clone(), two.clone(), three.clone(), edit.clone(), delete.clone()]);

    // The same frames, in the same order, on B: room sockets and user sockets.
    assert_eq!(read_entries(&mut bob_ws, 6, "bob's socket on B").await, on_a, "bob's socket on B");
    assert_eq!(read_entries(&mut bob_user, 6, "bob's user socket on B").await, on_a, "bob's user socket on B");
    assert_eq!(read_entries(&mut alice_user, 6, "alice's user socket on B").await, on_a, "alice's tab on B");
    assert_eq!(read_entries(&mut bob_on_a, 6, "bob's socket on A").await, on_a, "bob's socket on A");

    // A read marker moved on A reaches bob's tab on B.
    send_read(&mut bob_on_a, &id(&three)).await;
    let (_, read) = read_until(&mut bob_user, WAIT_LONG, "bob's read on B", |f| f["type"] == "read").await;
    assert_eq!(read, json!({"type": "read", "room": "clustered", "up_to": id(&three)}));
    let inbox = get_ok(&bob_b, "/api/inbox").await;
    let entry = conversation(&inbox, "clustered").unwrap_or_else(|| panic!("not in bob's inbox on B: {inbox}"));
    assert_eq!((&entry["read_up_to"], &entry["unread"]), (&json!(id(&three)), &json!(0)), "{inbox}");
    // alice's own posts moved her marker, on every node.
    let inbox = get_ok(&alice_b, "/api/inbox").await;
    assert_eq!(conversation(&inbox, "clustered").unwrap()["read_up_to"], json!(id(&three)), "{inbox}");

    // B's histories show the messages as they now stand, and replay the events.
    let latest = page(&bob_b, "/api/rooms/clustered/messages").await;
    let ids: Vec<String> = latest.iter().map(id).collect();
    assert_eq!(ids, [id(&zero), id(&one), id(&three)], "B's latest page: {latest:?}");
    assert_eq!(latest[1]["message"], "one, edited on A", "{latest:?}");
    assert!(latest[1]["edited"].as_str().is_some_and(|ts| ts.ends_with('Z')), "{latest:?}");
    assert_text_gone(&Value::Array(latest.clone()).to_string(), "two", "B's latest page");
    let after = page(&bob_b, &format!("/api/rooms/clustered/messages?after={}", id(&zero))).await;
    let kinds: Vec<(String, String)> =
        after.iter().map(|f| (f["type"].as_str().unwrap_or_default().to_owned(), id(f))).collect();
    assert_eq!(
        kinds,
        [
            ("chat_handler".to_owned(), id(&one)),
            ("chat_handler".to_owned(), id(&three)),
            ("edit".to_owned(), id(&edit)),
            ("delete".to_owned(), id(&delete)),
        ],
        "B's after= page: {after:?}"
    );
    assert_eq!(after[2], without_client_id(&edit));
    assert_eq!(after[3], without_client_id(&delete));
    let (_, since) = join(&bob_b, &format!("/ws/chat/clustered/?since={}", id(&zero))).await;
    assert_eq!(since["messages"], json!(after), "B's since= history and after= page");
    a.stop().await;
    b.stop().await;
}

/// How long a frame crossing nodes may take here (the broker relays it).
const WAIT_LONG: Duration = Duration::from_secs(30);

/// Types on `typist` (at most once per 2 s, so the gate drops none) until
/// `listener` hears it: the nodes' ephemeral relay connects in the
/// background. Returns when it was heard, or `None` after `SETTLE`.
async fn typing_relayed(typist: &mut ChatSocket, listener: &mut ChatSocket, room: &str, user: &str) -> Option<Instant> {
    let give_up = Instant::now() + SETTLE;
    while Instant::now() < give_up {
        send_typing(typist).await;
        let deadline = Instant::now() + Duration::from_millis(2100);
        while let Ok(frame) =
            listener.next_json_with_awareness(deadline.saturating_duration_since(Instant::now())).await
        {
            if frame["type"] == "typing" {
                assert_eq!(frame, json!({"type": "typing", "room": room, "user": user}));
                return Some(Instant::now());
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_presence_cross_nodes_at_the_contracts_times() {
    let test = "typing_and_presence_cross_nodes_at_the_contracts_times";
    let Some((_broker, _stream, a, b)) = two_nodes(test, &["alice", "bob", "carol"]).await else { return };
    let (bob_a, carol_a) = (a.sign_in("bob").await, a.sign_in("carol").await);
    let alice_b = b.sign_in("alice").await;
    // bob is a member through the page on A: no socket, so not online.
    assert_eq!(bob_a.get("/chat/near").await.unwrap().status, 200);
    let (alice_room, _) = join(&alice_b, "/ws/chat/near/").await;
    let (alice_user, _) = user_socket(&alice_b).await;
    let (carol_room, _) = join(&carol_a, "/ws/chat/near/").await;
    let (mut alice_room, mut alice_user, mut carol_room) =
        (alice_room.with_awareness(), alice_user.with_awareness(), carol_room.with_awareness());

    // The nodes' ephemeral relay connects in the background: carol types on A
    // (at most once per 2 s, so none is dropped by the gate) until B hears her.
    let relayed = typing_relayed(&mut carol_room, &mut alice_room, "near", "carol").await;
    assert!(relayed.is_some(), "carol's typing on A never reached alice's socket on B");
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // bob opens a socket on A: online on B within 2 s of the upgrade.
    let mut bob_room = bob_a.connect("/ws/chat/near/", None).await.unwrap();
    let answered = Instant::now();
    let within = Duration::from_secs(2);
    let (on_room, on_user) = tokio::join!(
        presence_change(&mut alice_room, "bob", true, within),
        presence_change(&mut alice_user, "bob", true, within)
    );
    assert!(on_room.is_some(), "alice's room socket on B did not hear bob come online on A within 2 s");
    assert!(on_user.is_some(), "alice's user socket on B did not hear bob come online on A within 2 s");
    println!("bob online on B {:?} after his upgrade on A", answered.elapsed());
    let users = get_ok(&alice_b, "/api/users?prefix=bob").await;
    assert_eq!(users, json!({"users": [{"username": "bob", "online": true}]}), "B's user search");
    let online = online_of(&get_ok(&alice_b, "/api/inbox").await);
    assert!(online.contains(&"bob".to_owned()) && !online.contains(&"alice".to_owned()), "{online:?}");
    assert_eq!(next(&mut bob_room, "bob's history").await["type"], "history");

    // bob types on A: alice's socket on B hears it within 2 s; her user socket does not.
    let sent = Instant::now();
    send_typing(&mut bob_room).await;
    let (_, typing) =
        read_until(&mut alice_room, Duration::from_secs(2), "bob's typing on B", |f| f["type"] == "typing").await;
    assert_eq!(typing, json!({"type": "typing", "room": "near", "user": "bob"}));
    println!("bob's typing on A reached B after {:?}", sent.elapsed());
    let frames = frames_within(&mut alice_user, QUIET_LONG).await;
    assert!(frames.iter().all(|f| f["type"] != "typing"), "typing on a user socket: {frames:?}");

    // bob's last socket closes on A: offline on B 5 to 15 s later.
    leave(bob_room).await;
    let closed = Instant::now();
    let (off_room, off_user) = tokio::join!(
        presence_change(&mut alice_room, "bob", false, Duration::from_secs(20)),
        presence_change(&mut alice_user, "bob", false, Duration::from_secs(20))
    );
    for (at, what) in [(off_room, "alice's room socket on B"), (off_user, "alice's user socket on B")] {
        let at = at.unwrap_or_else(|| panic!("{what} never heard bob go offline"));
        let after = at - closed;
        assert!(
            after >= Duration::from_secs(5) && after <= Duration::from_secs(15),
            "{what} heard bob go offline {after:?} after his last socket closed on A"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// How long to listen for what must not come across nodes.
const QUIET_LONG: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_socket_on_b_gets_a_direct_message_posted_on_a_by_a_new_contact() {
    let test = "a_user_socket_on_b_gets_a_direct_message_posted_on_a_by_a_new_contact";
    let Some((_broker, _stream, a, b)) = two_nodes(test, &["alice", "bob"]).await else { return };
    let alice_a = a.sign_in("alice").await;
    let bob_b = b.sign_in("bob").await;
    let (mut bob_user, inbox) = user_socket(&bob_b).await;
    assert_eq!(inbox["conversations"], json!([]), "bob has no conversation yet: {inbox}");

    let (mut dm, _) = join(&alice_a, "/ws/direct/bob/").await;
    let hello = say(&mut dm, "hello from A").await;
    assert_eq!(hello["room"], "dm:alice:bob");
    let (_, live) = read_until(&mut bob_user, WAIT_LONG, "the direct message on bob's user socket on B", |f| {
        f["type"] == "chat_handler"
    })
    .await;
    assert_eq!(live, hello);
    send_edit(&mut dm, &id(&hello), "hello from A, edited", None).await;
    let edit = next_of(&mut dm, "edit", "alice's edit on A").await;
    let (_, edited) = read_until(&mut bob_user, WAIT_LONG, "the edit on B", |f| f["type"] == "edit").await;
    assert_eq!(edited, edit);

    let inbox = get_ok(&bob_b, "/api/inbox").await;
    let entry = conversation(&inbox, "dm:alice:bob").unwrap_or_else(|| panic!("not in bob's inbox on B: {inbox}"));
    assert_eq!(
        (&entry["kind"], &entry["name"], &entry["read_up_to"], &entry["unread"]),
        (&json!("direct"), &json!("alice"), &Value::Null, &json!(1)),
        "{inbox}"
    );
    assert_eq!(entry["latest"]["message"], "hello from A, edited", "{inbox}");
    let (_, history) = join(&bob_b, "/ws/direct/alice/").await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history["messages"][0]["message"], "hello from A, edited", "{history}");

    // A room bob joins on A (by its page) while his user socket is open on B.
    let bob_a = a.sign_in("bob").await;
    assert_eq!(bob_a.get("/chat/later").await.unwrap().status, 200);
    let (mut room_a, _) = join(&alice_a, "/ws/chat/later/").await;
    let later = say(&mut room_a, "in a room bob joined on A").await;
    let (_, live) = read_until(&mut bob_user, WAIT_LONG, "the room message on bob's user socket on B", |f| {
        f["type"] == "chat_handler" && f["room"] == "later"
    })
    .await;
    assert_eq!(live, later);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typing_gate_holds_for_one_user_typing_on_two_nodes() {
    let test = "the_typing_gate_holds_for_one_user_typing_on_two_nodes";
    let Some((_broker, _stream, a, b)) = two_nodes(test, &["alice", "bob"]).await else { return };
    let (alice_a, bob_a, bob_b) = (a.sign_in("alice").await, a.sign_in("bob").await, b.sign_in("bob").await);
    let (mut alice_room, _) = join(&alice_a, "/ws/chat/gate/").await;
    let (mut bob_on_a, _) = join(&bob_a, "/ws/chat/gate/").await;
    let (mut bob_on_b, _) = join(&bob_b, "/ws/chat/gate/").await;
    let heard = typing_relayed(&mut bob_on_b, &mut alice_room, "gate", "bob").await;
    let heard = heard.expect("bob's typing on B never reached alice's socket on A");
    tokio::time::sleep_until(heard + Duration::from_millis(2100)).await;

    // One user and conversation: one typing frame per 2 s, whichever node it comes from.
    let sent = Instant::now();
    send_typing(&mut bob_on_a).await;
    send_typing(&mut bob_on_b).await;
    let window = (sent + Duration::from_millis(1500)).saturating_duration_since(Instant::now());
    let frames = frames_within(&mut alice_room.with_awareness(), window).await;
    let typing: Vec<&Value> = frames.iter().filter(|f| f["type"] == "typing").collect();
    assert_eq!(typing.len(), 1, "bob typed on A and on B at once; alice got {typing:?}");
    a.stop().await;
    b.stop().await;
}
