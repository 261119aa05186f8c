//! The chat app of PROTOCOL.md ("The chat app (additions of December
//! 2026)") on one node, checked from outside: typed client frames, edit and
//! delete (their events, refusals, rate and every history), read markers,
//! the user socket and its inbox, membership, typing, presence at the
//! contract's times, the room directory and the user search. Two nodes:
//! chat_app_cluster.rs.

mod chat_support;
mod common;

use std::time::Duration;

use chat_support::*;
use common::*;
use hyper::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

/// A room conversation's socket path.
fn room(name: &str) -> String {
    format!("/ws/chat/{name}/")
}

/// The CSRF token of a signed-in client's pages.
async fn page_token(client: &chatctl::client::Client) -> String {
    let lobby = client.get("/").await.expect("GET / answers");
    input_value(&lobby.text(), "csrf_token").expect("a csrf_token on the lobby page")
}

/// Reads the next frame and asserts it is a message equal to `expected`
/// (as others see it: without `client_id`).
async fn expect_message(ws: &mut chatctl::client::ChatSocket, expected: &Value, what: &str) {
    let frame = next(ws, what).await;
    assert_eq!(frame, without_client_id(expected), "{what}");
}

// ---------------------------------------------------------------- frame types

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frames_type_decides_what_it_is() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let (mut ws, _) = join(&alice, &room("typed")).await;
    let first = say(&mut ws, "first").await;

    // The seed stored this as a message with the text "x": now it is an edit, and refused.
    send(&mut ws, json!({"type": "edit", "target": "<bad>", "message": "x"})).await;
    let refusal = next(&mut ws, "an edit with a bad target").await;
    assert_eq!(refusal["type"], "error", "an edit with a bad target is refused, not stored: {refusal}");
    send(&mut ws, json!({"type": "wave", "message": "hello"})).await;
    expect_error(&mut ws, "bad_frame", "an unknown type").await;
    send(&mut ws, json!({"type": 7, "message": "hello"})).await;
    expect_error(&mut ws, "bad_frame", "a type that is not a string").await;
    // Typing is answered by nothing: the next frame is the next message's echo.
    send_typing(&mut ws).await;
    ws.send_message("after", None).await.unwrap();
    let after = next(&mut ws, "the message after typing").await;
    assert_eq!((after["type"].as_str(), text_of(&after)), (Some("chat_handler"), "after"), "{after}");

    let stored = page(&alice, "/api/rooms/typed/messages").await;
    assert_eq!(stored, vec![first.clone(), after.clone()], "only the two messages are stored");
    let replay = page(&alice, &format!("/api/rooms/typed/messages?after={}", id(&first))).await;
    assert_eq!(replay, vec![after], "nothing but the message is stored after the first");
}

// ---------------------------------------------------------------- edit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reaches_every_socket_and_the_members_user_sockets_and_every_history_shows_the_current_text() {
    let app = spawn_app(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (app.client("alice"), app.client("bob"), app.client("carol"));
    let (mut a1, _) = join(&alice, &room("edits")).await;
    let (mut a2, _) = join(&alice, &room("edits")).await;
    let (mut b1, _) = join(&bob, &room("edits")).await;
    let (mut bob_user, _) = user_socket(&bob).await;
    let before = say(&mut a1, "before").await;
    let original = say(&mut a1, "original text").await;
    for (ws, what) in
        [(&mut a2, "alice's second socket"), (&mut b1, "bob's socket"), (&mut bob_user, "bob's user socket")]
    {
        expect_message(ws, &before, what).await;
        expect_message(ws, &original, what).await;
    }

    send_edit(&mut a1, &id(&original), "  edited text \n", Some("fix-1")).await;
    let mine = next(&mut a1, "the editor's socket").await;
    assert_edit_event(&mine, "edits", &id(&original), "alice", "edited text", Some("fix-1"));
    let event = without_client_id(&mine);
    for (ws, what) in
        [(&mut a2, "alice's second socket"), (&mut b1, "bob's socket"), (&mut bob_user, "bob's user socket")]
    {
        let copy = next(ws, what).await;
        assert_eq!(copy, event, "{what} gets the edit event without the client_id");
    }

    // Histories show the message as it now stands.
    let check_current = |messages: &[Value], what: &str| {
        let now = messages
            .iter()
            .find(|m| m["id"] == original["id"] && m["type"] == "chat_handler")
            .unwrap_or_else(|| panic!("{what}: the edited message is missing: {messages:?}"));
        assert_eq!(now["message"], "edited text", "{what}: {now}");
        assert!(now["edited"].as_str().is_some_and(|ts| ts.ends_with('Z')), "{what}: no \"edited\" time: {now}");
        for field in ["author", "room", "ts"] {
            assert_eq!(now[field], original[field], "{what}: the {field} changed: {now}");
        }
        assert!(!Value::Array(messages.to_vec()).to_string().contains("original text"), "{what}: the old text");
    };
    check_current(&page(&carol, "/api/rooms/edits/messages").await, "the history API");
    let (_, fresh) = join(&carol, &room("edits")).await;
    check_current(fresh["messages"].as_array().unwrap(), "a fresh socket's history");

    // since= and after= replay the event at its own id, after the message.
    let (_, since) = join(&carol, &format!("/ws/chat/edits/?since={}", id(&before))).await;
    let since = since["messages"].as_array().unwrap().clone();
    check_current(&since, "a since= history");
    assert_eq!(since.len(), 2, "the since= history holds the message and its edit: {since:?}");
    assert_eq!(since[1], event, "the since= history replays the edit event");
    let after = page(&carol, &format!("/api/rooms/edits/messages?after={}", id(&before))).await;
    assert_eq!(after, since, "an after= page holds what the since= history holds");
    // A client that already had the message gets the edit alone.
    let (_, since) = join(&carol, &format!("/ws/chat/edits/?since={}", id(&original))).await;
    assert_eq!(since["messages"], json!([event]), "since= the edited message's own id");
    let after = page(&carol, &format!("/api/rooms/edits/messages?after={}", id(&original))).await;
    assert_eq!(after, vec![event.clone()], "after= the edited message's own id");

    // The editor's other socket and bob's socket stay quiet otherwise: a later message is next.
    let last = say(&mut b1, "next").await;
    expect_message(&mut a2, &last, "alice's second socket after the edit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_refused_for_others_messages_unknown_ids_other_conversations_and_bad_text() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (alice, bob) = (app.client("alice"), app.client("bob"));
    let (mut a, _) = join(&alice, &room("refusals")).await;
    let (mut elsewhere, _) = join(&alice, &room("elsewhere")).await;
    let (mut b, _) = join(&bob, &room("refusals")).await;
    let target = say(&mut a, "alice's words").await;
    let foreign = say(&mut elsewhere, "in another room").await;
    expect_message(&mut b, &target, "bob's socket").await;

    send_edit(&mut b, &id(&target), "bob's words", Some("nope")).await;
    expect_error(&mut b, "forbidden", "bob edits alice's message").await;
    send_edit(&mut a, &unknown_id(&id(&target)), "x", None).await;
    expect_error(&mut a, "not_found", "an edit of an unknown id").await;
    send_edit(&mut a, &id(&foreign), "x", None).await;
    expect_error(&mut a, "not_found", "an edit of another conversation's message").await;
    // An edit event is not a message: it cannot be edited or deleted.
    send_edit(&mut a, &id(&target), "alice's words, fixed", None).await;
    let event = next_of(&mut a, "edit", "alice's edit").await;
    next_of(&mut b, "edit", "alice's edit on bob's socket").await;
    send_edit(&mut a, &id(&event), "x", None).await;
    expect_error(&mut a, "not_found", "an edit of an edit event").await;
    send_delete(&mut a, &id(&event), None).await;
    expect_error(&mut a, "not_found", "a deletion of an edit event").await;
    send_edit(&mut a, &id(&target), " \t ", None).await;
    expect_error(&mut a, "empty", "an edit to white space").await;
    send_edit(&mut a, &id(&target), &"e".repeat(4097), None).await;
    expect_error(&mut a, "too_long", "an edit to 4097 characters").await;
    send(&mut a, json!({"type": "edit", "target": id(&target)})).await;
    expect_error(&mut a, "bad_frame", "an edit without message").await;

    // Nothing changed, and nothing reached bob.
    let stored = page(&bob, "/api/rooms/refusals/messages").await;
    assert_eq!((stored.len(), &stored[0]["message"]), (1, &json!("alice's words, fixed")), "{stored:?}");
    assert_eq!(page(&bob, &format!("/api/rooms/elsewhere/messages?after={}", id(&foreign))).await, Vec::<Value>::new());
    let last = say(&mut a, "still here").await;
    expect_message(&mut b, &last, "bob's socket saw no change before the next message").await;
}

// ---------------------------------------------------------------- delete

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_by_the_author_or_a_superuser_is_delivered_replayed_and_its_text_never_served_again() {
    let app = spawn_app_with(&[UserSpec::new("root").superuser(), "alice".into(), "bob".into()], |_| {}).await;
    let (root, alice, bob) = (app.client("root"), app.client("alice"), app.client("bob"));
    let (mut a, _) = join(&alice, &room("dels")).await;
    let (mut b, _) = join(&bob, &room("dels")).await;
    let (mut r, _) = join(&root, &room("dels")).await;
    let (mut bob_user, _) = user_socket(&bob).await;
    let start = post(&mut a, "start").await;
    let secret = post(&mut a, "secret number one").await;
    let revised = post(&mut a, "secret number two").await;
    let bobs = post(&mut b, "bob's secret words").await;
    send_edit(&mut a, &id(&revised), "secret number two, revised", None).await;
    next_of(&mut a, "edit", "alice's edit").await;

    // Not yours, not an admin: forbidden.
    send_delete(&mut b, &id(&secret), None).await;
    let (_, refusal) = read_until(&mut b, WAIT, "bob deletes alice's message", |f| f["type"] == "error").await;
    assert_eq!(refusal["code"], "forbidden", "{refusal}");

    // A superuser may delete it, but only its author edit it.
    send_edit(&mut r, &id(&secret), "moderated", None).await;
    let (_, refusal) = read_until(&mut r, WAIT, "root edits alice's message", |f| f["type"] == "error").await;
    assert_eq!(refusal["code"], "forbidden", "{refusal}");

    // The author, with a client_id.
    send_delete(&mut a, &id(&secret), Some("del-1")).await;
    let (_, mine) = read_until(&mut a, WAIT, "alice's deletion", |f| f["type"] == "delete").await;
    assert_delete_event(&mine, "dels", &id(&secret), "alice", Some("del-1"));
    let deleted_one = without_client_id(&mine);
    for (ws, what) in [(&mut b, "bob's socket"), (&mut r, "root's socket"), (&mut bob_user, "bob's user socket")] {
        let (_, copy) = read_until(ws, WAIT, what, |f| f["type"] == "delete").await;
        assert_eq!(copy, deleted_one, "{what}");
    }
    // An edited message, deleted: its edits' text goes too.
    send_delete(&mut a, &id(&revised), None).await;
    let (_, second) = read_until(&mut a, WAIT, "alice's second deletion", |f| f["type"] == "delete").await;
    assert_delete_event(&second, "dels", &id(&revised), "alice", None);
    // A superuser deletes bob's message.
    send_delete(&mut r, &id(&bobs), Some("mod")).await;
    let (_, by_root) = read_until(&mut r, WAIT, "root's deletion", |f| f["client_id"] == "mod").await;
    assert_delete_event(&by_root, "dels", &id(&bobs), "root", Some("mod"));
    let (_, seen) = read_until(&mut b, WAIT, "bob sees root's deletion", |f| f["target"] == id(&bobs).as_str()).await;
    assert_eq!(seen, without_client_id(&by_root));

    // Deleted is gone: neither edit nor delete finds it.
    send_delete(&mut a, &id(&secret), None).await;
    let (_, gone) = read_until(&mut a, WAIT, "deleting twice", |f| f["type"] == "error").await;
    assert_eq!(gone["code"], "not_found", "{gone}");
    send_edit(&mut a, &id(&secret), "back again", None).await;
    expect_error(&mut a, "not_found", "editing a deleted message").await;

    // Every history, page and inbox: the deleted texts are never served again.
    let (_, fresh) = join(&bob, &room("dels")).await;
    let (_, since) = join(&bob, &format!("/ws/chat/dels/?since={}", id(&start))).await;
    let (_, bob_inbox) = user_socket(&bob).await;
    let mut bodies = vec![
        ("a fresh socket's history", fresh.to_string()),
        ("a since= history", since.to_string()),
        ("bob's inbox frame", bob_inbox.to_string()),
    ];
    for path in [
        "/api/rooms/dels/messages".to_owned(),
        format!("/api/rooms/dels/messages?after={}", id(&start)),
        format!("/api/rooms/dels/messages?before={}", unknown_id(&id(&start))),
        "/api/inbox".to_owned(),
        "/api/rooms".to_owned(),
        "/api/lobby".to_owned(),
    ] {
        bodies.push(("an API answer", format!("{path}: {}", get_ok(&alice, &path).await)));
    }
    for (what, body) in &bodies {
        for text in ["secret number one", "secret number two", "bob's secret words"] {
            assert_text_gone(body, text, what);
        }
    }
    let fresh = fresh["messages"].as_array().unwrap();
    assert_eq!(fresh, &vec![start.clone()], "the latest history holds only what was not deleted");

    // since= and after= replay the deletions at their own ids.
    let since = since["messages"].as_array().unwrap().clone();
    assert_ids_increase(&since, "the since= history");
    let replayed: Vec<&Value> = since.iter().filter(|f| f["type"] == "delete").collect();
    assert_eq!(
        replayed,
        vec![&deleted_one, &without_client_id(&second), &without_client_id(&by_root)],
        "the since= history replays the three deletions"
    );
    for target in [&secret, &revised, &bobs] {
        assert!(
            !since.iter().any(|f| f["type"] == "chat_handler" && f["id"] == target["id"]),
            "a deleted message is in the since= history: {since:?}"
        );
    }
    let after = page(&bob, &format!("/api/rooms/dels/messages?after={}", id(&start))).await;
    assert_eq!(after, since, "an after= page holds what the since= history holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_latest_frames_skip_deleted_messages() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let (mut ws, _) = join(&alice, &room("holes")).await;
    let mut sent = Vec::new();
    for text in ["m1", "m2", "m3", "m4"] {
        sent.push(say(&mut ws, text).await);
    }
    send_delete(&mut ws, &id(&sent[2]), None).await;
    next_of(&mut ws, "delete", "deleting m3").await;
    // The newest two messages still standing.
    assert_eq!(page(&alice, "/api/rooms/holes/messages?limit=2").await, vec![sent[1].clone(), sent[3].clone()]);
    let before = format!("/api/rooms/holes/messages?limit=2&before={}", id(&sent[3]));
    assert_eq!(page(&alice, &before).await, vec![sent[0].clone(), sent[1].clone()], "{before}");

    // The latest message deleted: latest is the one before it.
    send_delete(&mut ws, &id(&sent[3]), None).await;
    next_of(&mut ws, "delete", "deleting m4").await;
    let directory = get_ok(&alice, "/api/rooms").await;
    assert_eq!(directory["rooms"][0]["latest"], sent[1], "{directory}");
    let inbox = get_ok(&alice, "/api/inbox").await;
    assert_eq!(conversation(&inbox, "holes").unwrap()["latest"], sent[1], "{inbox}");
    let (_, history) = join(&alice, &room("holes")).await;
    assert_eq!(history["messages"], json!([sent[0], sent[1]]));
}

// ---------------------------------------------------------------- rate

/// Reads `count` answers on a socket where only this user writes: each is
/// the user's own event or message, or an error; returns the error codes.
async fn answers(ws: &mut chatctl::client::ChatSocket, count: usize, what: &str) -> Vec<String> {
    let mut codes = Vec::new();
    for i in 0..count {
        let frame = next(ws, &format!("{what}: answer {i} of {count}")).await;
        match frame["type"].as_str() {
            Some("error") => codes.push(frame["code"].as_str().unwrap_or_default().to_owned()),
            Some("chat_handler" | "edit" | "delete") => {}
            _ => panic!("{what}: an unexpected frame {frame}"),
        }
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletions_count_against_the_message_rate_and_typing_does_not() {
    // A bucket of 3 that refills one a second.
    let app = spawn_app_with(&["alice".into()], |config| {
        config.message_rate = 1;
        config.message_burst = 3;
    })
    .await;
    let alice = app.client("alice");
    let (mut ws, _) = join(&alice, &room("rated")).await;
    let target = say(&mut ws, "to be edited").await;
    // Waiting for the bucket to fill again is the point here.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    // 30 typing frames cost nothing: three messages right after them all pass.
    for _ in 0..30 {
        send_typing(&mut ws).await;
    }
    for i in 0..3 {
        ws.send_message(&format!("t{i}"), None).await.unwrap();
    }
    let mut texts = Vec::new();
    for i in 0..3 {
        let frame = next(&mut ws, "the messages after typing").await;
        assert_eq!(frame["type"], "chat_handler", "message {i} after 30 typing frames was refused: {frame}");
        texts.push(frame);
    }

    // The bucket is empty now: of six edits sent at once some are refused.
    for i in 0..6 {
        send_edit(&mut ws, &id(&target), &format!("edit {i}"), None).await;
    }
    let codes = answers(&mut ws, 6, "six edits").await;
    assert!(codes.iter().any(|c| c == "rate_limited"), "six edits at once with an empty bucket: {codes:?}");
    assert!(codes.iter().all(|c| c == "rate_limited"), "{codes:?}");

    // Deletions too: four at once, right away.
    for frame in texts.iter().chain([&target]) {
        send_delete(&mut ws, &id(frame), None).await;
    }
    let codes = answers(&mut ws, 4, "four deletions").await;
    assert!(codes.iter().any(|c| c == "rate_limited"), "four deletions at once with an empty bucket: {codes:?}");
    assert!(codes.iter().all(|c| c == "rate_limited"), "{codes:?}");
}

// ---------------------------------------------------------------- read markers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_markers_move_forward_only_reach_every_tab_and_survive_a_restart() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (alice, bob) = (app.client("alice"), app.client("bob"));
    let (mut alice_room, _) = join(&alice, &room("reads")).await;
    let (mut bob_room, _) = join(&bob, &room("reads")).await;
    let (mut other, _) = join(&bob, &room("elsewhere")).await;
    let foreign = say(&mut other, "in another room").await;
    let (mut tab1, _) = user_socket(&alice).await;
    let (mut tab2, _) = user_socket(&alice).await;
    let mut from_bob = Vec::new();
    for text in ["one", "two", "three"] {
        from_bob.push(say(&mut bob_room, text).await);
    }
    for tab in [&mut tab1, &mut tab2, &mut alice_room] {
        for message in &from_bob {
            expect_message(tab, message, "alice's sockets get bob's messages").await;
        }
    }
    let read_frame = |room: &str, up_to: &Value| json!({"type": "read", "room": room, "up_to": id(up_to)});
    let marker = |inbox: &Value, room: &str| {
        let entry = conversation(inbox, room).unwrap_or_else(|| panic!("no {room} in {inbox}"));
        (entry["read_up_to"].clone(), entry["unread"].clone())
    };

    send_read(&mut alice_room, &id(&from_bob[1])).await;
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(next(tab, "the read frame").await, read_frame("reads", &from_bob[1]));
    }
    let inbox = get_ok(&alice, "/api/inbox").await;
    assert_eq!(marker(&inbox, "reads"), (json!(id(&from_bob[1])), json!(1)), "{inbox}");

    // Lower: ignored. Not in the conversation, or no such id: bad_frame.
    send_read(&mut alice_room, &id(&from_bob[0])).await;
    send_read(&mut alice_room, &id(&foreign)).await;
    expect_error(&mut alice_room, "bad_frame", "a read of another conversation's id").await;
    send_read(&mut alice_room, &unknown_id(&id(&foreign))).await;
    expect_error(&mut alice_room, "bad_frame", "a read of an unknown id").await;
    let inbox = get_ok(&alice, "/api/inbox").await;
    assert_eq!(marker(&inbox, "reads"), (json!(id(&from_bob[1])), json!(1)), "a lower id moved the marker: {inbox}");
    send_read(&mut alice_room, &id(&from_bob[2])).await;
    for tab in [&mut tab1, &mut tab2] {
        // The lower read sent nothing: this is the next frame.
        assert_eq!(next(tab, "the read frame after a lower one").await, read_frame("reads", &from_bob[2]));
    }

    // On the user socket, naming the conversation.
    let four = say(&mut bob_room, "four").await;
    for tab in [&mut tab1, &mut tab2, &mut alice_room] {
        expect_message(tab, &four, "bob's fourth message").await;
    }
    send_read_in(&mut tab1, "reads", &id(&four)).await;
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(next(tab, "the user socket's read").await, read_frame("reads", &four));
    }
    send_read_in(&mut tab1, "reads", &id(&foreign)).await;
    expect_error(&mut tab1, "bad_frame", "a user-socket read of another conversation's id").await;

    // Posting moves the sender's own marker.
    let mine = say(&mut alice_room, "mine").await;
    for tab in [&mut tab1, &mut tab2] {
        let mut got = vec![next(tab, "alice's message or marker").await, next(tab, "alice's message or marker").await];
        got.sort_by_key(|f| f["type"].as_str().unwrap_or_default().to_owned());
        assert_eq!(got, vec![without_client_id(&mine), read_frame("reads", &mine)], "posting moves the marker");
    }
    let (_, inbox) = user_socket(&alice).await;
    assert_eq!(marker(&inbox, "reads"), (json!(id(&mine)), json!(0)), "{inbox}");

    // A direct conversation, read from the user socket.
    let (mut dm, _) = join(&bob, "/ws/direct/alice/").await;
    let private = say(&mut dm, "psst").await;
    for tab in [&mut tab1, &mut tab2] {
        expect_message(tab, &private, "a direct message on the user socket").await;
    }
    send_read_in(&mut tab2, "dm:alice:bob", &id(&private)).await;
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(next(tab, "the direct read").await, read_frame("dm:alice:bob", &private));
    }

    // Stored durably: the same markers after a restart.
    let before = get_ok(&alice, "/api/inbox").await;
    for ws in [alice_room, bob_room, other, tab1, tab2, dm] {
        leave(ws).await;
    }
    let TestApp { server, config, clients, dir } = app;
    drop(clients);
    server.shutdown().await;
    let server = chatctl::startup::start(config.clone()).await.expect("a restart on the same data dir");
    let alice = alice.at(&server.url()).unwrap();
    let after = get_ok(&alice, "/api/inbox").await;
    assert_eq!(marker(&after, "reads"), (json!(id(&mine)), json!(0)), "{after}");
    assert_eq!(marker(&after, "dm:alice:bob"), (json!(id(&private)), json!(0)), "{after}");
    assert_eq!(after["conversations"], before["conversations"], "the inbox after a restart");
    server.shutdown().await;
    drop(dir);
}

// ---------------------------------------------------------------- inbox

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_lists_conversations_newest_first_with_unread_counts_and_new_conversations_arrive_live() {
    let app = spawn_unlimited_app(&["alice", "bob", "carol", "dave"]).await;
    let (alice, bob, carol, dave) = (app.client("alice"), app.client("bob"), app.client("carol"), app.client("dave"));
    assert_json_error(&app.anonymous().get("/api/inbox").await.unwrap(), 401, "an anonymous inbox");
    let (_, empty) = user_socket(&alice).await;
    assert_eq!(empty["conversations"], json!([]), "a new user's inbox: {empty}");

    // Opening a room's page makes a member, as opening its socket does.
    let answer = alice.get("/chat/quiet").await.unwrap();
    assert_eq!(answer.status, 200, "the room page");
    let (a_busy, _) = join(&alice, &room("busy")).await;
    let (mut a_recent, _) = join(&alice, &room("recent")).await;
    let (mut b_busy, _) = join(&bob, &room("busy")).await;
    let (mut b_recent, _) = join(&bob, &room("recent")).await;
    let busy = send_many(&mut b_busy, "busy", 120).await;
    let mine = post(&mut a_recent, "alice first").await;
    let mut recent = Vec::new();
    for text in ["r1", "r2", "r3"] {
        recent.push(post(&mut b_recent, text).await);
    }

    let (mut a_user, inbox) = user_socket(&alice).await;
    let rooms: Vec<&str> =
        inbox["conversations"].as_array().unwrap().iter().map(|c| c["room"].as_str().unwrap()).collect();
    assert_eq!(rooms.len(), 3, "alice is a member of quiet, busy and recent: {inbox}");
    assert_eq!(rooms[..2], ["recent", "busy"], "most recent activity first: {inbox}");
    let entry = |room: &str| conversation(&inbox, room).unwrap_or_else(|| panic!("no {room} in {inbox}")).clone();
    let recent_entry = entry("recent");
    assert_eq!(recent_entry["kind"], "room");
    assert_eq!(recent_entry["name"], "recent");
    assert_eq!(recent_entry["latest"], recent[2], "{recent_entry}");
    assert_eq!(recent_entry["read_up_to"], json!(id(&mine)), "posting moved alice's marker: {recent_entry}");
    assert_eq!(recent_entry["unread"], 3, "bob's three messages after alice's: {recent_entry}");
    let busy_entry = entry("busy");
    assert_eq!(busy_entry["latest"], busy[119], "{busy_entry}");
    assert_eq!(busy_entry["read_up_to"], Value::Null, "{busy_entry}");
    assert_eq!(busy_entry["unread"], 99, "120 unread count as 99: {busy_entry}");
    let quiet = entry("quiet");
    assert_eq!(
        (&quiet["kind"], &quiet["name"], &quiet["latest"], &quiet["read_up_to"], &quiet["unread"]),
        (&json!("room"), &json!("quiet"), &Value::Null, &Value::Null, &json!(0)),
        "{quiet}"
    );

    // Edits are not counted; deleted messages are not counted.
    send_edit(&mut b_recent, &id(&recent[0]), "r1, edited", None).await;
    next_of(&mut b_recent, "edit", "bob's edit").await;
    let (_, edit) = read_until(&mut a_user, WAIT, "the edit on alice's user socket", |f| f["type"] == "edit").await;
    assert_eq!(edit["target"], recent[0]["id"]);
    assert_eq!(conversation(&get_ok(&alice, "/api/inbox").await, "recent").unwrap()["unread"], 3, "an edit counted");
    send_delete(&mut b_recent, &id(&recent[1]), None).await;
    next_of(&mut b_recent, "delete", "bob's deletion").await;
    let (_, gone) =
        read_until(&mut a_user, WAIT, "the deletion on alice's user socket", |f| f["type"] == "delete").await;
    assert_eq!(gone["target"], recent[1]["id"]);
    assert_eq!(
        conversation(&get_ok(&alice, "/api/inbox").await, "recent").unwrap()["unread"],
        2,
        "a deleted one counted"
    );

    // The API answers the socket's frame without its type.
    let api = get_ok(&alice, "/api/inbox").await;
    let (_, mut frame) = user_socket(&alice).await;
    frame.as_object_mut().unwrap().remove("type");
    assert_eq!(api, frame, "GET /api/inbox and the inbox frame");

    // A direct message from someone alice never talked with arrives live.
    let (mut c_dm, _) = join(&carol, "/ws/direct/alice/").await;
    assert!(conversation(&get_ok(&alice, "/api/inbox").await, "dm:alice:carol").is_none(), "before its first message");
    let hello = post(&mut c_dm, "hello stranger").await;
    let (_, live) = read_until(&mut a_user, WAIT, "the direct message on alice's user socket", |f| {
        f["type"] == "chat_handler" && f["room"] == "dm:alice:carol"
    })
    .await;
    assert_eq!(live, hello);
    let (_, inbox) = user_socket(&alice).await;
    let first = &inbox["conversations"][0];
    assert_eq!(
        (&first["kind"], &first["name"], &first["room"], &first["latest"], &first["read_up_to"], &first["unread"]),
        (&json!("direct"), &json!("carol"), &json!("dm:alice:carol"), &hello, &Value::Null, &json!(1)),
        "the new conversation heads the inbox: {inbox}"
    );
    let carols = get_ok(&carol, "/api/inbox").await;
    let theirs = conversation(&carols, "dm:alice:carol").unwrap_or_else(|| panic!("not in carol's inbox: {carols}"));
    assert_eq!((&theirs["name"], &theirs["unread"]), (&json!("alice"), &json!(0)), "{carols}");

    // online: others who share a conversation with alice, not alice, not dave.
    let (_d, _) = join(&dave, &room("daves_own")).await;
    let expected = vec!["bob".to_owned(), "carol".to_owned()];
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        seen = online_of(&get_ok(&alice, "/api/inbox").await);
        seen.sort();
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, expected, "alice's inbox online");
    drop((a_busy, c_dm));
}

// ---------------------------------------------------------------- typing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_other_users_conversation_sockets_at_most_once_per_2_s() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (alice, bob) = (app.client("alice"), app.client("bob"));
    let (a_room, _) = join(&alice, &room("typing")).await;
    let (a_room2, _) = join(&alice, &room("typing")).await;
    let (b_room, _) = join(&bob, &room("typing")).await;
    let (a_user, _) = user_socket(&alice).await;
    let (b_user, _) = user_socket(&bob).await;
    let (mut a_room, mut a_room2, mut b_room, mut a_user, mut b_user) = (
        a_room.with_awareness(),
        a_room2.with_awareness(),
        b_room.with_awareness(),
        a_user.with_awareness(),
        b_user.with_awareness(),
    );

    let sent = Instant::now();
    send_typing(&mut a_room).await;
    send_typing(&mut a_room).await;
    let (_, typing) = read_until(&mut b_room, WAIT, "bob's room socket", |f| f["type"] == "typing").await;
    let forwarded = Instant::now();
    assert_eq!(typing, json!({"type": "typing", "room": "typing", "user": "alice"}));
    // The second, within 2 s of the first, is dropped.
    let rest =
        frames_within(&mut b_room, (sent + Duration::from_millis(1500)).saturating_duration_since(Instant::now()))
            .await;
    assert!(rest.iter().all(|f| f["type"] != "typing"), "a second typing within 2 s was forwarded: {rest:?}");
    // Not to the typist's own sockets, not to user sockets.
    for (ws, what) in [
        (&mut a_room, "the typist's socket"),
        (&mut a_room2, "the typist's other socket"),
        (&mut a_user, "the typist's user socket"),
        (&mut b_user, "bob's user socket"),
    ] {
        let frames = frames_within(ws, QUIET).await;
        assert!(frames.iter().all(|f| f["type"] != "typing"), "{what} got typing: {frames:?}");
    }

    // 2 s after the one forwarded, the next is forwarded again.
    tokio::time::sleep_until(forwarded + Duration::from_millis(2100)).await;
    send_typing(&mut a_room).await;
    let (_, again) = read_until(&mut b_room, WAIT, "typing after 2 s", |f| f["type"] == "typing").await;
    assert_eq!(again, typing);
    // The gate is the user's in the conversation, not the socket's.
    let forwarded = Instant::now();
    send_typing(&mut a_room2).await;
    let rest =
        frames_within(&mut b_room, (forwarded + Duration::from_millis(1500)).saturating_duration_since(Instant::now()))
            .await;
    assert!(rest.iter().all(|f| f["type"] != "typing"), "typing from alice's other socket within 2 s: {rest:?}");

    // In a direct conversation too.
    let (a_dm, _) = join(&alice, "/ws/direct/bob/").await;
    let (mut b_dm, _) = join(&bob, "/ws/direct/alice/").await;
    let mut a_dm = a_dm.with_awareness();
    send_typing(&mut b_dm).await;
    let (_, direct) = read_until(&mut a_dm, WAIT, "alice's direct socket", |f| f["type"] == "typing").await;
    assert_eq!(direct, json!({"type": "typing", "room": "dm:alice:bob", "user": "bob"}));
}

// ---------------------------------------------------------------- presence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_online_members_after_history_and_announces_changes_at_the_contracts_times() {
    let app = spawn_app(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (app.client("alice"), app.client("bob"), app.client("carol"));
    // bob becomes a member through the page: no socket, so not online.
    assert_eq!(bob.get("/chat/pres").await.unwrap().status, 200);

    let mut a_room = alice.connect(&room("pres"), None).await.unwrap().with_awareness();
    assert_eq!(next(&mut a_room, "alice's first frame").await["type"], "history");
    let listed = next(&mut a_room, "alice's presence list").await;
    assert_eq!(listed, json!({"type": "presence", "online": ["alice"]}), "only alice is online");
    let (a_user, _) = user_socket(&alice).await;
    let (c_user, _) = user_socket(&carol).await;
    let (mut a_user, mut c_user) = (a_user.with_awareness(), c_user.with_awareness());

    // bob comes online: announced within 2 s to those who share a conversation.
    let mut b_room = bob.connect(&room("pres"), None).await.unwrap().with_awareness();
    let answered = Instant::now();
    assert_eq!(next(&mut b_room, "bob's first frame").await["type"], "history");
    let listed = next(&mut b_room, "bob's presence list").await;
    assert_eq!(listed["type"], "presence", "{listed}");
    let mut names: Vec<&str> = listed["online"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob"], "{listed}");
    let within = (answered + Duration::from_secs(2)).saturating_duration_since(Instant::now());
    let (on_room, on_user) = tokio::join!(
        presence_change(&mut a_room, "bob", true, within),
        presence_change(&mut a_user, "bob", true, within)
    );
    assert!(on_room.is_some(), "alice's room socket did not hear bob come online within 2 s");
    assert!(on_user.is_some(), "alice's user socket did not hear bob come online within 2 s");
    let online = online_of(&get_ok(&alice, "/api/inbox").await);
    assert_eq!(online, ["bob"], "alice's inbox online lists bob, not alice");
    let frames = frames_within(&mut c_user, Duration::from_secs(1)).await;
    assert!(frames.iter().all(|f| !is_any_presence_of(f, "bob")), "carol shares nothing with bob: {frames:?}");

    // bob's last socket closes: offline no sooner than 5 s, no later than 15 s.
    leave(b_room).await;
    let closed = Instant::now();
    let (off_room, off_user) = tokio::join!(
        presence_change(&mut a_room, "bob", false, Duration::from_secs(20)),
        presence_change(&mut a_user, "bob", false, Duration::from_secs(20))
    );
    for (at, what) in [(off_room, "alice's room socket"), (off_user, "alice's user socket")] {
        let at = at.unwrap_or_else(|| panic!("{what} never heard bob go offline"));
        let after = at - closed;
        assert!(
            after >= Duration::from_secs(5) && after <= Duration::from_secs(15),
            "{what} heard bob go offline {after:?} after his last socket closed"
        );
    }

    // A reconnect within 5 s announces nothing.
    let b_room = bob.connect(&room("pres"), None).await.unwrap();
    let came = presence_change(&mut a_room, "bob", true, Duration::from_secs(2)).await;
    assert!(came.is_some(), "bob online again");
    presence_change(&mut a_user, "bob", true, Duration::from_secs(2)).await.expect("bob online again (user socket)");
    leave(b_room).await;
    let closed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_b_again, _) = join(&bob, "/ws/direct/alice/").await;
    let window = (closed + Duration::from_secs(16)).saturating_duration_since(Instant::now());
    let (on_room, on_user) = tokio::join!(frames_within(&mut a_room, window), frames_within(&mut a_user, window));
    for (frames, what) in [(on_room, "alice's room socket"), (on_user, "alice's user socket")] {
        assert!(
            frames.iter().all(|f| !is_any_presence_of(f, "bob")),
            "{what}: a reconnect within 5 s was announced: {frames:?}"
        );
    }
}

// ---------------------------------------------------------------- directory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_directory_lists_group_rooms_newest_first_with_member_counts_and_empty_rooms_last() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (alice, bob) = (app.client("alice"), app.client("bob"));
    assert_json_error(&app.anonymous().get("/api/rooms").await.unwrap(), 401, "an anonymous directory");
    assert_eq!(get_ok(&alice, "/api/rooms").await, json!({"rooms": []}));

    assert_eq!(bob.get("/chat/silent/").await.unwrap().status, 200);
    let (mut a_zeta, _) = join(&alice, &room("zeta")).await;
    let (_b_zeta, _) = join(&bob, &room("zeta")).await;
    let (mut a_alpha, _) = join(&alice, &room("alpha")).await;
    let (mut dm, _) = join(&alice, "/ws/direct/bob/").await;
    say(&mut a_zeta, "z1").await;
    let a1 = say(&mut a_alpha, "a1").await;
    let z2 = say(&mut a_zeta, "z2").await;
    say(&mut dm, "not a room").await;

    let directory = get_ok(&bob, "/api/rooms").await;
    let listed: Vec<(Value, Value, Value)> = directory["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms in {directory}"))
        .iter()
        .map(|r| (r["room"].clone(), r["members"].clone(), r["latest"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (json!("zeta"), json!(2), z2.clone()),
            (json!("alpha"), json!(1), a1.clone()),
            (json!("silent"), json!(1), Value::Null),
        ],
        "newest first, empty rooms last, no direct conversation: {directory}"
    );

    // A message moves its room to the top.
    let a2 = say(&mut a_alpha, "a2").await;
    let directory = get_ok(&alice, "/api/rooms").await;
    let order: Vec<&str> = directory["rooms"].as_array().unwrap().iter().filter_map(|r| r["room"].as_str()).collect();
    assert_eq!(order, ["alpha", "zeta", "silent"], "{directory}");
    assert_eq!(directory["rooms"][0]["latest"], a2);

    // latest shows the message as it now stands.
    send_edit(&mut a_alpha, &id(&a2), "a2, edited", None).await;
    next_of(&mut a_alpha, "edit", "alice's edit").await;
    let directory = get_ok(&alice, "/api/rooms").await;
    let latest = &directory["rooms"][0]["latest"];
    assert_eq!((&latest["id"], &latest["message"]), (&a2["id"], &json!("a2, edited")), "{directory}");
    assert!(latest["edited"].is_string(), "{directory}");
}

// ---------------------------------------------------------------- user search

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_search_finds_active_users_by_prefix_ignoring_case_at_most_20_in_byte_order() {
    let mut specs: Vec<UserSpec> = vec![
        UserSpec::new("root").superuser(),
        "ann".into(),
        "Anna".into(),
        UserSpec::new("anne.b").signed_out(),
        UserSpec::new("annie").signed_out(),
        UserSpec::new("dan").inactive(),
        "bob".into(),
    ];
    specs.extend((0..25).map(|i| UserSpec::new(&format!("user{i:02}")).signed_out()));
    let app = spawn_app_with(&specs, |_| {}).await;
    let (root, ann) = (app.client("root"), app.client("ann"));
    assert_json_error(&app.anonymous().get("/api/users?prefix=a").await.unwrap(), 401, "an anonymous search");

    let (_ann_ws, _) = join(&ann, &room("anywhere")).await;
    let entry = |name: &str, online: bool| json!({"username": name, "online": online});
    let expected = vec![entry("Anna", false), entry("ann", true), entry("anne.b", false), entry("annie", false)];
    let mut users = Value::Null;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        users = get_ok(&root, "/api/users?prefix=AN").await["users"].clone();
        if users == json!(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(users, json!(expected), "prefix AN: case-insensitive, byte order, with online");

    // Deactivated users are not found.
    assert_eq!(get_ok(&root, "/api/users?prefix=d").await, json!({"users": []}), "dan is inactive");
    let token = page_token(&root).await;
    let answer = root
        .send(Method::POST, "/admin/users/annie/deactivate", &[FORM], form_body(&[("csrf_token", &token)]))
        .await
        .unwrap();
    assert_eq!(answer.status, 303, "deactivating annie: {}", answer.text());
    let users = get_ok(&ann, "/api/users?prefix=anN").await;
    let names: Vec<&str> = users["users"].as_array().unwrap().iter().filter_map(|u| u["username"].as_str()).collect();
    assert_eq!(names, ["Anna", "ann", "anne.b"], "after annie's deactivation: {users}");
    let users = get_ok(&ann, "/api/users?prefix=anne.").await;
    assert_eq!(users, json!({"users": [entry("anne.b", false)]}));

    // At most 20, the first in byte order.
    let users = get_ok(&ann, "/api/users?prefix=USER").await;
    let names: Vec<String> =
        users["users"].as_array().unwrap().iter().filter_map(|u| u["username"].as_str().map(str::to_owned)).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("user{i:02}")).collect();
    assert_eq!(names, expected, "the first 20 of 25 matches");
    assert_eq!(get_ok(&ann, "/api/users?prefix=nobody").await, json!({"users": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_route_makes_a_user_online_and_only_the_last_close_takes_them_offline() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (alice, bob) = (app.client("alice"), app.client("bob"));
    assert_eq!(bob.get("/chat/shared").await.unwrap().status, 200);
    let (a_room, _) = join(&alice, &room("shared")).await;
    let mut a_room = a_room.with_awareness();

    // A user socket is a WebSocket like any other.
    let (b_user, inbox) = user_socket(&bob).await;
    assert!(presence_change(&mut a_room, "bob", true, Duration::from_secs(2)).await.is_some(), "bob's user socket");
    assert_eq!(online_of(&inbox), ["alice"], "bob's inbox lists alice online: {inbox}");
    // A second socket announces nothing; closing one of two neither.
    let (b_room, _) = join(&bob, &room("shared")).await;
    leave(b_room).await;
    let frames = frames_within(&mut a_room, Duration::from_secs(16)).await;
    assert!(frames.iter().all(|f| !is_any_presence_of(f, "bob")), "bob still has a socket: {frames:?}");
    // The last one closing does.
    leave(b_user).await;
    let closed = Instant::now();
    let at = presence_change(&mut a_room, "bob", false, Duration::from_secs(20)).await.expect("bob goes offline");
    let after = at - closed;
    assert!(after >= Duration::from_secs(5) && after <= Duration::from_secs(15), "offline {after:?} after the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_socket_shows_the_other_users_presence_before_the_first_message() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (alice, bob) = (app.client("alice"), app.client("bob"));
    // bob is online (his user socket) and has never talked with alice.
    let (b_user, _) = user_socket(&bob).await;
    let mut dm = alice.connect("/ws/direct/bob/", None).await.unwrap().with_awareness();
    assert_eq!(next(&mut dm, "alice's first frame").await["type"], "history");
    let listed = next(&mut dm, "alice's presence list").await;
    let mut names: Vec<&str> = listed["online"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob"], "the other user of a direct conversation counts: {listed}");

    // bob is not a member until the first message, yet his changes reach the socket that shows him.
    drop(b_user);
    let gone = presence_change(&mut dm, "bob", false, Duration::from_secs(20)).await;
    assert!(gone.is_some(), "bob's going offline reached alice's direct socket");
    let (_b_user, _) = user_socket(&bob).await;
    let back = presence_change(&mut dm, "bob", true, Duration::from_secs(2)).await;
    assert!(back.is_some(), "bob's coming back reached alice's direct socket");
}
