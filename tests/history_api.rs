//! `GET /api/rooms/<room>/messages` and `GET /api/direct/<user>/messages`:
//! order, default and capped limits, paging both ways, refused parameters.

mod common;

use chatctl::client::Client;
use common::*;
use serde_json::Value;

/// Stores `count` messages in `room` as `client`; returns their ids in order.
async fn seed(client: &Client, room: &str, count: usize) -> Vec<String> {
    let (mut ws, _) = join(client, &format!("/ws/chat/{room}/")).await;
    let frames = send_many(&mut ws, "m", count).await;
    ws.close().await;
    frame_ids(&frames)
}

async fn page(client: &Client, path: &str) -> Vec<Value> {
    let (status, body) = client.get_json(path).await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body["messages"].as_array().unwrap_or_else(|| panic!("{path}: no messages array in {body}")).clone()
}

async fn page_ids(client: &Client, path: &str) -> Vec<String> {
    frame_ids(&page(client, path).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_oldest_first_with_full_message_frames() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let sent = vec![say(&mut ws, "first").await, say(&mut ws, "second").await, say(&mut ws, "third").await];
    ws.send_message("with id", Some("c-1")).await.unwrap();
    let mut with_id = ws.next_of_type("chat_handler", WAIT).await.unwrap();
    assert_eq!(with_id["client_id"], "c-1");
    with_id.as_object_mut().unwrap().remove("client_id");

    let got = page(&app.client("bob"), "/api/rooms/lobby/messages").await;
    let mut expected = sent;
    expected.push(with_id);
    assert_eq!(got, expected, "the API frames differ from the live ones");
    for frame in &got {
        assert!(frame.get("client_id").is_none(), "client_id leaked into history: {frame}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_defaults_to_the_newest_50() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let ids = seed(&alice, "busy", 60).await;
    let got = page_ids(&alice, "/api/rooms/busy/messages").await;
    assert_eq!(got, ids[10..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_picks_the_newest_n() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let ids = seed(&alice, "busy", 12).await;
    assert_eq!(page_ids(&alice, "/api/rooms/busy/messages?limit=5").await, ids[7..].to_vec());
    assert_eq!(page_ids(&alice, "/api/rooms/busy/messages?limit=1").await, ids[11..].to_vec());
    assert_eq!(page_ids(&alice, "/api/rooms/busy/messages?limit=100").await, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_before_pages_backwards() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let ids = seed(&alice, "paged", 25).await;
    let newest = page_ids(&alice, "/api/rooms/paged/messages?limit=10").await;
    assert_eq!(newest, ids[15..].to_vec());
    let older = page_ids(&alice, &format!("/api/rooms/paged/messages?limit=10&before={}", newest[0])).await;
    assert_eq!(older, ids[5..15].to_vec());
    let oldest = page_ids(&alice, &format!("/api/rooms/paged/messages?limit=10&before={}", older[0])).await;
    assert_eq!(oldest, ids[..5].to_vec());
    let nothing = page_ids(&alice, &format!("/api/rooms/paged/messages?before={}", ids[0])).await;
    assert!(nothing.is_empty(), "{nothing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_after_pages_forwards_from_the_oldest_newer_message() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let ids = seed(&alice, "paged", 25).await;
    let first = page_ids(&alice, &format!("/api/rooms/paged/messages?limit=10&after={}", ids[2])).await;
    assert_eq!(first, ids[3..13].to_vec(), "after must give the oldest newer ones");
    let next = page_ids(&alice, &format!("/api/rooms/paged/messages?limit=10&after={}", first[9])).await;
    assert_eq!(next, ids[13..23].to_vec());
    let last = page_ids(&alice, &format!("/api/rooms/paged/messages?limit=10&after={}", next[9])).await;
    assert_eq!(last, ids[23..].to_vec());
    let nothing = page_ids(&alice, &format!("/api/rooms/paged/messages?after={}", ids[24])).await;
    assert!(nothing.is_empty(), "{nothing:?}");
    // after=0 starts at the very beginning, with the default limit.
    let everything = page_ids(&alice, "/api/rooms/paged/messages?after=0").await;
    assert_eq!(everything, ids);
}

/// A page and its raw size, asserting it is within the 1 MiB cap.
async fn capped_page(client: &Client, path: &str) -> (Vec<String>, bool) {
    let answer = client.get(path).await.unwrap();
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    assert!(answer.body.len() <= 1024 * 1024, "{path}: {} bytes", answer.body.len());
    let body = answer.json().unwrap();
    (ids_of(&body["messages"]), body["more"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_pages_stop_at_1_mib_and_continue_to_everything_once() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let (mut ws, _) = join(&alice, "/ws/chat/big/").await;
    let ids = frame_ids(&send_large(&mut ws, 300).await);

    let (first, more) = capped_page(&alice, "/api/rooms/big/messages?after=0&limit=500").await;
    assert!(more, "a page cut at 1 MiB does not say more");
    assert!(first.len() > 40 && first.len() < 300, "{} messages in the first page", first.len());
    let mut got = first;
    loop {
        let path = format!("/api/rooms/big/messages?limit=500&after={}", got.last().unwrap());
        let (next, more) = capped_page(&alice, &path).await;
        assert!(!next.is_empty(), "{path}: an empty page said more before it");
        got.extend(next);
        if !more {
            break;
        }
    }
    assert_eq!(got, ids, "paging forwards with after does not give every message once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_pages_stop_at_1_mib_keeping_the_newest_and_page_back_with_before() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let (mut ws, _) = join(&alice, "/ws/chat/big/").await;
    let ids = frame_ids(&send_large(&mut ws, 300).await);

    let (newest, more) = capped_page(&alice, "/api/rooms/big/messages?limit=500").await;
    assert!(more, "a page cut at 1 MiB does not say more");
    assert_eq!(newest, ids[ids.len() - newest.len()..].to_vec(), "the cut did not keep the newest");
    let mut got = newest;
    while got[0] != ids[0] {
        let (older, _) = capped_page(&alice, &format!("/api/rooms/big/messages?limit=500&before={}", got[0])).await;
        assert!(!older.is_empty());
        got.splice(0..0, older);
    }
    assert_eq!(got, ids, "paging back with before does not give every message once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_within_the_cap_say_more_only_when_newer_messages_are_left() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let ids = seed(&alice, "small", 5).await;
    for path in ["/api/rooms/small/messages", "/api/rooms/small/messages?limit=2", "/api/rooms/small/messages?after=0"]
    {
        let (_, body) = alice.get_json(path).await.unwrap();
        assert!(body.get("more").is_none(), "{path}: {body}");
    }
    let (_, body) = alice.get_json(&format!("/api/rooms/small/messages?limit=2&after={}", ids[0])).await.unwrap();
    assert_eq!(ids_of(&body["messages"]), ids[1..3].to_vec());
    assert_eq!(body["more"], true, "an after page that left newer messages does not say more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_above_500_is_taken_as_500() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let ids = seed(&alice, "huge", 520).await;
    for limit in ["501", "1000", "99999999999"] {
        let got = page_ids(&alice, &format!("/api/rooms/huge/messages?limit={limit}")).await;
        assert_eq!(got.len(), 500, "limit={limit}");
        assert_eq!(got, ids[20..].to_vec(), "limit={limit}");
    }
    let got = page_ids(&alice, "/api/rooms/huge/messages?limit=500").await;
    assert_eq!(got, ids[20..].to_vec());
    let forwards = page_ids(&alice, &format!("/api/rooms/huge/messages?limit=600&after={}", ids[0])).await;
    assert_eq!(forwards, ids[1..501].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_too_large_for_64_bits_is_still_taken_as_500() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let ids = seed(&alice, "huge", 3).await;
    for limit in ["9223372036854775808", "99999999999999999999999"] {
        let path = format!("/api/rooms/huge/messages?limit={limit}");
        let (status, body) = alice.get_json(&path).await.unwrap();
        assert_eq!(status, 200, "{path}: a number above 500 is refused: {body}");
        assert_eq!(ids_of(&body["messages"]), ids, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_zero_negative_or_not_a_number_is_400_json() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    for limit in ["0", "-1", "-500", "abc", "", "1.5", "1e3", "0x10"] {
        for base in ["/api/rooms/lobby/messages", "/api/direct/alice/messages"] {
            let path = format!("{base}?limit={limit}");
            assert_json_error(&alice.get(&path).await.unwrap(), 400, &path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_a_bad_room_name_is_404_json() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let too_long = format!("/api/rooms/{}/messages", "r".repeat(65));
    for path in [
        "/api/rooms/bad-name!/messages",
        "/api/rooms/caf%C3%A9/messages",
        "/api/rooms/dm:alice:bob/messages",
        too_long.as_str(),
    ] {
        assert_json_error(&alice.get(path).await.unwrap(), 404, path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_history_is_the_conversation_seen_from_either_side() {
    let app = spawn_unlimited_app(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (app.client("alice"), app.client("bob"), app.client("carol"));
    let (mut alice_ws, _) = join(&alice, "/ws/direct/bob/").await;
    let (mut bob_ws, _) = join(&bob, "/ws/direct/alice/").await;
    let one = say(&mut alice_ws, "hi bob").await;
    bob_ws.next_of_type("chat_handler", WAIT).await.unwrap();
    let two = say(&mut bob_ws, "hi alice").await;
    let expected = vec![one, two];

    assert_eq!(page(&alice, "/api/direct/bob/messages").await, expected);
    assert_eq!(page(&bob, "/api/direct/alice/messages").await, expected);
    assert_eq!(expected[0]["room"], "dm:alice:bob");
    // The same parameters work here.
    assert_eq!(page_ids(&alice, "/api/direct/bob/messages?limit=1").await, frame_ids(&expected[1..]));
    assert_eq!(
        page_ids(&alice, &format!("/api/direct/bob/messages?after={}", expected[0]["id"].as_str().unwrap())).await,
        frame_ids(&expected[1..])
    );
    // A third user sees only her own (empty) conversations.
    assert!(page(&carol, "/api/direct/alice/messages").await.is_empty());
    assert!(page(&carol, "/api/direct/bob/messages").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_history_with_an_unknown_user_is_404_json() {
    let app = spawn_app(&["alice", "bob"]).await;
    let alice = app.client("alice");
    for path in ["/api/direct/nobody/messages", "/api/direct/Bob/messages", "/api/direct/bad%20name/messages"] {
        assert_json_error(&alice.get(path).await.unwrap(), 404, path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_a_room_nobody_wrote_in_is_empty() {
    let app = spawn_app(&["alice"]).await;
    assert!(page(&app.client("alice"), "/api/rooms/quiet/messages").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_do_not_share_history() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let alice = app.client("alice");
    let a = seed(&alice, "room_a", 3).await;
    let b = seed(&alice, "room_b", 2).await;
    assert_eq!(page_ids(&alice, "/api/rooms/room_a/messages").await, a);
    assert_eq!(page_ids(&alice, "/api/rooms/room_b/messages").await, b);
}
