//! The WebSocket routes of PROTOCOL.md: the checks before the upgrade, the
//! `history` frame and `since=` recovery, message frames, every refused
//! frame, size limits, the rate limit, one order for all, direct chats.

mod common;

use std::collections::HashSet;

use chatctl::client::{ChatSocket, Event};
use common::*;
use fastwebsockets::{Frame, OpCode, Payload};
use serde_json::Value;

fn text_frame(fin: bool, opcode: OpCode, bytes: Vec<u8>) -> Frame<'static> {
    Frame::new(fin, opcode, None, Payload::Owned(bytes))
}

/// Proves the socket is still open and usable: a message round-trips.
async fn assert_still_open(ws: &mut ChatSocket, what: &str) {
    let marker = format!("still open after {what}");
    ws.send_message(&marker, Some("probe")).await.unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let echo = ws.next_json(WAIT).await.unwrap_or_else(|e| panic!("{what}: the socket did not stay open: {e:#}"));
    assert_eq!(echo["type"], "chat_handler", "{what}: got {echo}");
    assert_eq!(text_of(&echo), marker, "{what}");
    assert_eq!(echo["client_id"], "probe", "{what}");
}

/// Checks `ts` is RFC 3339 in UTC (`YYYY-MM-DDTHH:MM:SS[.fff]Z`) and recent.
fn assert_rfc3339_utc(ts: &str) {
    let b = ts.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[b.len() - 1] == b'Z'
        && (b.len() == 20 || (b[19] == b'.' && b.len() > 21 && digits(20..b.len() - 1)));
    assert!(shape, "ts {ts:?} is not RFC 3339 UTC");
    let at = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("ts {ts:?}: {e}"));
    let now = std::time::SystemTime::now();
    let off = now.duration_since(at).unwrap_or_else(|e| e.duration());
    assert!(off < std::time::Duration::from_secs(3600), "ts {ts} is not the time the message was sent");
}

// ------------------------------------------------------ checks before the upgrade

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_without_a_valid_session_is_refused_with_401() {
    let app = spawn_app(&["alice", "bob"]).await;
    for path in ["/ws/chat/lobby/", "/ws/direct/bob/"] {
        assert_refused(app.anonymous().connect(path, None).await, 401, path);
        assert_refused(app.anonymous().connect(path, Some(&app.own_origin())).await, 401, path);
    }
    // A forged cookie is no session either.
    let forged = format!(
        "GET /ws/chat/lobby/ HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: chatctl_session={}\r\n\r\n",
        app.server.addr,
        "0".repeat(64)
    );
    let answer = raw_exchange(app.server.addr, forged.as_bytes()).await.unwrap();
    assert_eq!(raw_status(&answer), Some(401), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_upgrade_is_refused_with_403() {
    let app = spawn_app(&["alice", "bob"]).await;
    let alice = app.client("alice");
    let port = app.server.addr.port();
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let https_same = format!("https://127.0.0.1:{port}");
    let no_port = "http://127.0.0.1".to_owned();
    let lookalike = format!("http://127.0.0.1:{port}.evil.example");
    for origin in
        ["http://evil.example", "null", other_port.as_str(), https_same.as_str(), no_port.as_str(), lookalike.as_str()]
    {
        for path in ["/ws/chat/lobby/", "/ws/direct/bob/"] {
            assert_refused(alice.connect(path, Some(origin)).await, 403, &format!("Origin {origin} on {path}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_origin_upgrade_is_accepted() {
    let app = spawn_app(&["alice"]).await;
    let origin = app.own_origin();
    let mut ws = app
        .client("alice")
        .connect("/ws/chat/lobby/", Some(&origin))
        .await
        .unwrap_or_else(|e| panic!("Origin {origin}: {e}"));
    assert_eq!(ws.next_json(WAIT).await.unwrap()["type"], "history");
}

/// A raw upgrade request with chosen `Host` and `Origin` headers; the status.
async fn raw_upgrade_status(app: &TestApp, host: &str, origin: &str) -> Option<u16> {
    let session = app.client("alice").session_cookie().unwrap().to_owned();
    let request = format!(
        "GET /ws/chat/lobby/ HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: chatctl_session={session}\r\n\r\n"
    );
    let answer = raw_exchange_head(app.server.addr, request.as_bytes()).await;
    raw_status(&answer)
}

/// Sends `request` and returns the answer's status line and headers (an
/// accepted upgrade never ends, so read only up to the blank line).
async fn raw_exchange_head(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_is_compared_with_the_requests_own_host_header() {
    let app = spawn_app(&["alice"]).await;
    // Behind a proxy the Host is the public name: its own origin is accepted...
    assert_eq!(raw_upgrade_status(&app, "chat.example", "http://chat.example").await, Some(101));
    assert_eq!(raw_upgrade_status(&app, "chat.example:8080", "http://chat.example:8080").await, Some(101));
    // ...and the listening address is then just another origin.
    let listening = app.own_origin();
    assert_eq!(raw_upgrade_status(&app, "chat.example", &listening).await, Some(403));
    assert_eq!(raw_upgrade_status(&app, "chat.example:8080", "http://chat.example:8081").await, Some(403));
    assert_eq!(raw_upgrade_status(&app, "chat.example", "http://chat.example.evil.example").await, Some(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_allowed_origin_upgrade_is_accepted() {
    let app = spawn_app_with(&[UserSpec::new("alice")], |config| {
        config.allowed_origins = vec!["https://chat.example".to_owned()];
    })
    .await;
    let alice = app.client("alice");
    let mut ws =
        alice.connect("/ws/chat/lobby/", Some("https://chat.example")).await.expect("a configured origin is accepted");
    assert_eq!(ws.next_json(WAIT).await.unwrap()["type"], "history");
    assert_refused(
        alice.connect("/ws/chat/lobby/", Some("https://other.example")).await,
        403,
        "an origin that is not configured",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_room_name_upgrade_is_404() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let too_long = format!("/ws/chat/{}/", "r".repeat(65));
    for path in ["/ws/chat/bad-name!/", "/ws/chat/caf%C3%A9/", "/ws/chat/dm:alice:bob/", too_long.as_str()] {
        assert_refused(alice.connect(path, None).await, 404, path);
    }
    let longest = format!("/ws/chat/{}/", "r".repeat(64));
    join(&alice, &longest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_upgrade_to_an_unknown_user_is_404() {
    let app = spawn_app(&["alice", "bob"]).await;
    let alice = app.client("alice");
    for path in ["/ws/direct/nobody/", "/ws/direct/Bob/", "/ws/direct/bad%20name/"] {
        assert_refused(alice.connect(path, None).await, 404, path);
    }
}

// ------------------------------------------------------------- history and since

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_frame_comes_first_and_holds_the_last_50() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let (mut ws, first) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    assert_eq!(first["messages"], serde_json::json!([]), "a new room has history");
    assert!(first.get("more").is_none_or(|m| m == false), "{first}");
    let sent = send_many(&mut ws, "m", 60).await;

    let (_, history) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    let expected: Vec<Value> = sent[10..].to_vec();
    assert_eq!(
        history["messages"].as_array().unwrap(),
        &expected,
        "the history frame is not the last 50 messages, oldest first"
    );
    assert!(history.get("more").is_none_or(|m| m == false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_returns_exactly_the_messages_after_it() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let seen = send_many(&mut alice_ws, "seen", 5).await;
    let missed = send_many(&mut alice_ws, "missed", 7).await;
    let last_seen = seen[4]["id"].as_str().unwrap();
    let (_, history) = join(&app.client("bob"), &format!("/ws/chat/lobby/?since={last_seen}")).await;
    assert_eq!(history["messages"].as_array().unwrap(), &missed);
    assert!(history.get("more").is_none_or(|m| m == false), "{history}");

    let newest = missed[6]["id"].as_str().unwrap();
    let (_, nothing) = join(&app.client("bob"), &format!("/ws/chat/lobby/?since={newest}")).await;
    assert_eq!(nothing["messages"], serde_json::json!([]));
    // since works on the routes without a trailing slash as well.
    let (_, all) = join(&app.client("bob"), "/ws/chat/lobby?since=0").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_with_more_than_1000_missed_returns_the_oldest_1000_and_more_true() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/flood/").await;
    let sent = send_many(&mut ws, "f", 1002).await;
    let ids = frame_ids(&sent);

    // 1,001 missed: the oldest 1,000 of them, and more.
    let (_, history) = join(&app.client("bob"), &format!("/ws/chat/flood/?since={}", ids[0])).await;
    assert_eq!(ids_of(&history["messages"]), ids[1..1001].to_vec());
    assert_eq!(history["more"], true, "more is missing with 1,001 missed");
    // The rest comes from the history API's `after`.
    let (status, rest) =
        app.client("bob").get_json(&format!("/api/rooms/flood/messages?after={}", ids[1000])).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(ids_of(&rest["messages"]), ids[1001..].to_vec());

    // Exactly 1,000 missed: all of them, and no more.
    let (_, exact) = join(&app.client("bob"), &format!("/ws/chat/flood/?since={}", ids[1])).await;
    assert_eq!(ids_of(&exact["messages"]), ids[2..].to_vec());
    assert!(exact.get("more").is_none_or(|m| m == false), "more with exactly 1,000 missed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_frame_past_1_mib_holds_the_oldest_missed_and_more_true() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/big/").await;
    // 300 messages of 12 KiB: about 3.6 MiB, far past one frame.
    let ids = frame_ids(&send_large(&mut ws, 300).await);
    // The newest 50 (600 KiB) still fit whole, and say nothing of more.
    let (_, recent) = join(&app.client("bob"), "/ws/chat/big/").await;
    assert_eq!(ids_of(&recent["messages"]), ids[250..].to_vec());
    assert!(recent.get("more").is_none_or(|m| m == false), "more on an uncut frame");

    for (since, missed) in [("0", &ids[..]), (ids[9].as_str(), &ids[10..])] {
        let (mut bob_ws, history) = join(&app.client("bob"), &format!("/ws/chat/big/?since={since}")).await;
        assert!(json_len(&history) <= 1024 * 1024, "since={since}: {} bytes", json_len(&history));
        assert_eq!(history["more"], true, "since={since}: the cut frame does not say more");
        let got = ids_of(&history["messages"]);
        assert!(got.len() > 40, "since={since}: only {} messages in 1 MiB", got.len());
        assert_eq!(got, missed[..got.len()].to_vec(), "since={since}: not the oldest missed, in order");
        // The socket then carries on live, past what the frame covered.
        say(&mut bob_ws, "after the cut").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_sees_live_messages_after_its_history_once_each() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let before = send_many(&mut alice_ws, "before", 3).await;
    let (mut bob_ws, history) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    assert_eq!(history["messages"].as_array().unwrap(), &before);
    let after = send_many(&mut alice_ws, "after", 3).await;
    let live = collect_messages(&mut bob_ws, 3).await.unwrap();
    assert_eq!(live, after);
    assert!(bob_ws.receives_nothing(QUIET).await, "a message arrived twice");
}

// ------------------------------------------------------------------ message frames

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_frames_carry_every_field_and_client_id_only_for_the_sender() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let (mut bob_ws, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    alice_ws.send_message("hello <b>bob</b> & \"all\"", Some("c-42")).await.unwrap();
    let own = alice_ws.next_json(WAIT).await.unwrap();
    let other = bob_ws.next_json(WAIT).await.unwrap();

    let fields: HashSet<&str> = own.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: HashSet<&str> = ["type", "id", "room", "author", "message", "ts", "client_id"].into();
    assert!(expected.is_subset(&fields), "missing fields in {own}");
    assert_eq!(own["type"], "chat_handler");
    assert_eq!(own["room"], "lobby");
    assert_eq!(own["author"], "alice");
    assert_eq!(own["message"], "hello <b>bob</b> & \"all\"");
    assert_eq!(own["client_id"], "c-42");
    assert!(own["id"].as_str().is_some_and(|id| !id.is_empty()), "{own}");
    assert_rfc3339_utc(own["ts"].as_str().expect("ts is a string"));

    assert!(other.get("client_id").is_none(), "bob got alice's client_id: {other}");
    let mut own_without = own.clone();
    own_without.as_object_mut().unwrap().remove("client_id");
    assert_eq!(other, own_without, "the two copies differ beyond client_id");

    // Without a client_id, even the sender's copy has none.
    let plain = say(&mut alice_ws, "no id").await;
    assert!(plain.get("client_id").is_none(), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_stored_before_any_socket_sees_it() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let (mut bob_ws, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    for i in 0..10 {
        alice_ws.send_message(&format!("durable {i}"), None).await.unwrap();
        let frame = bob_ws.next_of_type("chat_handler", WAIT).await.unwrap();
        let (_, page) = app.client("bob").get_json("/api/rooms/lobby/messages?limit=1").await.unwrap();
        assert_eq!(page["messages"][0]["id"], frame["id"], "a delivered message was not yet in storage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_sort_as_strings_in_the_rooms_order() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    // Enough messages that a naive decimal id would cross a digit boundary.
    let ids = frame_ids(&send_many(&mut ws, "n", 120).await);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids do not increase as strings: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_is_trimmed_from_both_ends_including_unicode() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let cases = [
        ("  plain  ", "plain"),
        ("\n\t\r tabs \x0b\x0c", "tabs"),
        ("\u{3000}ideographic\u{3000}", "ideographic"),
        ("\u{a0}nbsp\u{a0}", "nbsp"),
        ("\u{2003}\u{2028}\u{2029}\u{202f}\u{205f}\u{1680}\u{85}mixed\u{2009}\u{200a}", "mixed"),
        ("  inner  space\u{3000}kept ", "inner  space\u{3000}kept"),
        // Not White_Space: kept as they are.
        ("\u{200b}zero-width\u{200b}", "\u{200b}zero-width\u{200b}"),
    ];
    for (raw, stored) in cases {
        ws.send_message(raw, None).await.unwrap();
        let echo = ws.next_json(WAIT).await.unwrap();
        assert_eq!(echo["type"], "chat_handler", "{raw:?}: {echo}");
        assert_eq!(text_of(&echo), stored, "{raw:?}");
    }
    let (_, page) = app.client("alice").get_json("/api/rooms/lobby/messages").await.unwrap();
    let texts: Vec<&str> = page["messages"].as_array().unwrap().iter().map(text_of).collect();
    let expected: Vec<&str> = cases.iter().map(|(_, stored)| *stored).collect();
    assert_eq!(texts, expected, "the stored text is not the trimmed text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_4096_characters_pass_and_4097_are_too_long() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    for unit in ["x", "\u{e9}", "\u{6f22}", "\u{1f600}"] {
        let ok = unit.repeat(4096);
        let echo = say(&mut ws, &ok).await;
        assert_eq!(text_of(&echo).chars().count(), 4096, "{unit:?}");

        ws.send_message(&unit.repeat(4097), None).await.unwrap();
        expect_error(&mut ws, "too_long", &format!("4097 × {unit:?}")).await;
    }
    // The limit applies to the trimmed text.
    let padded = format!("   {}\u{3000}\n", "y".repeat(4096));
    say(&mut ws, &padded).await;
    assert_still_open(&mut ws, "too_long").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_messages_are_refused_with_empty() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    for raw in ["", " ", "\n\t  \r", "\u{3000}\u{a0}\u{2003}"] {
        ws.send_message(raw, None).await.unwrap();
        expect_error(&mut ws, "empty", &format!("{raw:?}")).await;
    }
    assert_still_open(&mut ws, "empty").await;
    let (_, page) = app.client("alice").get_json("/api/rooms/lobby/messages").await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "a refused frame was stored: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_are_not_json_are_refused_with_bad_json() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    for raw in ["not json", "{", "", "{\"message\": \"unterminated}", "message=hi"] {
        ws.send_text(raw).await.unwrap();
        expect_error(&mut ws, "bad_json", raw).await;
        assert_still_open(&mut ws, &format!("bad_json {raw:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_the_wrong_shape_are_refused_with_bad_frame() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let long_id = "c".repeat(65);
    let long_multibyte_id = "\u{e9}".repeat(65);
    let cases: Vec<(&str, String)> = vec![
        ("an array", r#"["hi"]"#.to_owned()),
        ("a number", "42".to_owned()),
        ("a string", r#""hi""#.to_owned()),
        ("null", "null".to_owned()),
        ("no message", r#"{"text": "hi"}"#.to_owned()),
        ("an empty object", "{}".to_owned()),
        ("a numeric message", r#"{"message": 5}"#.to_owned()),
        ("a null message", r#"{"message": null}"#.to_owned()),
        ("an array message", r#"{"message": ["hi"]}"#.to_owned()),
        ("an object message", r#"{"message": {"text": "hi"}}"#.to_owned()),
        ("a numeric client_id", r#"{"message": "hi", "client_id": 7}"#.to_owned()),
        ("a null client_id", r#"{"message": "hi", "client_id": null}"#.to_owned()),
        ("an object client_id", r#"{"message": "hi", "client_id": {}}"#.to_owned()),
        ("a client_id of 65 characters", serde_json::json!({"message": "hi", "client_id": long_id}).to_string()),
        (
            "a client_id of 65 two-byte characters",
            serde_json::json!({"message": "hi", "client_id": long_multibyte_id}).to_string(),
        ),
    ];
    for (what, raw) in &cases {
        ws.send_text(raw).await.unwrap();
        expect_error(&mut ws, "bad_frame", what).await;
        assert_still_open(&mut ws, what).await;
    }
    let (_, page) = app.client("alice").get_json("/api/rooms/lobby/messages?limit=500").await.unwrap();
    assert!(
        page["messages"].as_array().unwrap().iter().all(|m| text_of(m).starts_with("still open after")),
        "a refused frame was stored: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_of_64_characters_is_echoed_to_the_sender() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    for id in ["c".repeat(64), "\u{e9}".repeat(64), String::new()] {
        ws.send_message("with an id", Some(&id)).await.unwrap();
        let echo = ws.next_json(WAIT).await.unwrap();
        assert_eq!(echo["type"], "chat_handler", "client_id {id:?}: {echo}");
        assert_eq!(echo["client_id"], id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_cannot_choose_its_author_room_or_id() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    ws.send_text(r#"{"message": "hi", "author": "mallory", "room": "other", "type": "x", "id": "1"}"#).await.unwrap();
    let answer = ws.next_json(WAIT).await.unwrap();
    if answer["type"] == "error" {
        assert_eq!(answer["code"], "bad_frame", "{answer}");
    } else {
        assert_eq!(answer["type"], "chat_handler", "{answer}");
        assert_eq!(answer["author"], "alice");
        assert_eq!(answer["room"], "lobby");
        assert_ne!(answer["id"], "1");
    }
    assert_still_open(&mut ws, "a frame with extra fields").await;
}

// ----------------------------------------------------------------- frame limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_closes_the_socket_with_1003() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let json = br#"{"message": "binary"}"#.to_vec();
    ws.send_frame(text_frame(true, OpCode::Binary, json)).await.unwrap();
    let closed = expect_close_with_reason(&mut ws).await.unwrap();
    assert_eq!(closed, (1003, "binary messages are not accepted".to_owned()));
    let (_, page) = app.client("alice").get_json("/api/rooms/lobby/messages").await.unwrap();
    assert_eq!(page["messages"], serde_json::json!([]), "the binary frame was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_over_64_kib_closes_the_socket_with_1009() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let big = format!("{{\"message\": \"{}\"}}", " ".repeat(64 * 1024));
    assert!(big.len() > 64 * 1024);
    ws.send_text(&big).await.unwrap();
    let closed =
        expect_close_with_reason(&mut ws).await.unwrap_or_else(|e| panic!("no close frame with 1009 arrived: {e:#}"));
    assert_eq!(closed, (1009, "message over 64 KiB".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_over_64_kib_closes_the_socket_with_1009() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let fragment = vec![b' '; 30 * 1024];
    let mut first = b"{\"message\": \"x".to_vec();
    first.extend_from_slice(&fragment);
    ws.send_frame(text_frame(false, OpCode::Text, first)).await.unwrap();
    ws.send_frame(text_frame(false, OpCode::Continuation, fragment.clone())).await.unwrap();
    let mut last = fragment;
    last.extend_from_slice(b"\"}");
    // The server may close before it reads this one; that is fine.
    let _ = ws.send_frame(text_frame(true, OpCode::Continuation, last)).await;
    assert_eq!(expect_close_with_reason(&mut ws).await.unwrap(), (1009, "message over 64 KiB".to_owned()));
    let (_, page) = app.client("alice").get_json("/api/rooms/lobby/messages").await.unwrap();
    assert_eq!(page["messages"], serde_json::json!([]), "the oversized message was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_under_the_limit_is_accepted() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let raw = serde_json::json!({"message": "héllo in three parts", "client_id": "frag"}).to_string();
    let bytes = raw.into_bytes();
    // Split inside the two-byte "é" too: fragments need not be valid UTF-8 alone.
    let split_a = 14;
    let split_b = bytes.len() - 5;
    ws.send_frame(text_frame(false, OpCode::Text, bytes[..split_a].to_vec())).await.unwrap();
    ws.send_frame(text_frame(false, OpCode::Continuation, bytes[split_a..split_b].to_vec())).await.unwrap();
    ws.send_frame(text_frame(true, OpCode::Continuation, bytes[split_b..].to_vec())).await.unwrap();
    let echo = ws.next_json(WAIT).await.unwrap();
    assert_eq!(echo["type"], "chat_handler", "{echo}");
    assert_eq!(text_of(&echo), "héllo in three parts");
    assert_eq!(echo["client_id"], "frag");
    assert_still_open(&mut ws, "a fragmented message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_exactly_64_kib_is_not_closed() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let frame = |len: usize| {
        let head = "{\"message\": \"edge";
        let tail = "\"}";
        format!("{head}{}{tail}", " ".repeat(len - head.len() - tail.len()))
    };
    let whole = frame(64 * 1024);
    assert_eq!(whole.len(), 64 * 1024);
    ws.send_text(&whole).await.unwrap();
    let echo = ws.next_json(WAIT).await.unwrap();
    assert_eq!(echo["type"], "chat_handler", "{echo}");
    assert_eq!(text_of(&echo), "edge");

    // The same size in two fragments.
    let bytes = frame(64 * 1024).into_bytes();
    ws.send_frame(text_frame(false, OpCode::Text, bytes[..40_000].to_vec())).await.unwrap();
    ws.send_frame(text_frame(true, OpCode::Continuation, bytes[40_000..].to_vec())).await.unwrap();
    let echo = ws.next_json(WAIT).await.unwrap();
    assert_eq!(echo["type"], "chat_handler", "{echo}");
    assert_still_open(&mut ws, "a 64 KiB message").await;
}

// ------------------------------------------------------------------- rate limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_faster_than_the_default_rate_gets_rate_limited_errors() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    for i in 0..60 {
        ws.send_message(&format!("burst {i}"), None).await.unwrap();
    }
    let (mut stored, mut limited) = (0, 0);
    for _ in 0..60 {
        let frame = ws.next_json(WAIT).await.unwrap();
        match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("chat_handler"), _) => stored += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert!(limited >= 1, "60 messages at once were never rate limited");
    assert!(stored >= 40, "the burst of 40 was not allowed: only {stored}");
    let (_, page) = app.client("alice").get_json("/api/rooms/lobby/messages?limit=500").await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), stored, "a rate-limited message was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_user_does_not_slow_another_user() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let (mut bob_ws, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    for i in 0..60 {
        alice_ws.send_message(&format!("a {i}"), None).await.unwrap();
    }
    let mut limited = 0;
    for _ in 0..60 {
        let frame = alice_ws.next_json(WAIT).await.unwrap();
        if frame["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited >= 1);
    // Bob's own bucket is full: his message goes through.
    bob_ws.send_message("bob is fine", Some("b")).await.unwrap();
    let echo = loop {
        let frame = bob_ws.next_json(WAIT).await.unwrap();
        assert_ne!(frame["type"], "error", "bob was refused: {frame}");
        if frame["author"] == "bob" {
            break frame;
        }
    };
    assert_eq!(echo["client_id"], "b");
}

// ---------------------------------------------------------------------- ordering

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_of_a_room_sees_one_order_with_each_message_once() {
    let app = spawn_unlimited_app(&["alice", "bob", "carol"]).await;
    let (alice_ws, _) = join(&app.client("alice"), "/ws/chat/order/").await;
    let (bob_ws, _) = join(&app.client("bob"), "/ws/chat/order/").await;
    let (mut carol_ws, _) = join(&app.client("carol"), "/ws/chat/order/").await;
    const EACH: usize = 150;
    let sender = |mut ws: ChatSocket, who: &'static str| {
        tokio::spawn(async move {
            for i in 0..EACH {
                ws.send_message(&format!("{who} {i}"), None).await.unwrap();
            }
            ws
        })
    };
    let (alice_ws, bob_ws) = (sender(alice_ws, "alice"), sender(bob_ws, "bob"));
    let mut alice_ws = alice_ws.await.unwrap();
    let mut bob_ws = bob_ws.await.unwrap();

    let mut sequences = Vec::new();
    for ws in [&mut alice_ws, &mut bob_ws, &mut carol_ws] {
        sequences.push(collect_messages(ws, 2 * EACH).await.unwrap());
    }
    let ids: Vec<Vec<String>> = sequences.iter().map(|s| frame_ids(s)).collect();
    assert_eq!(ids[0], ids[1], "alice and bob saw different orders");
    assert_eq!(ids[0], ids[2], "alice and carol saw different orders");
    let unique: HashSet<&String> = ids[0].iter().collect();
    assert_eq!(unique.len(), 2 * EACH, "a message arrived twice");
    assert!(ids[0].windows(2).all(|w| w[0] < w[1]), "ids do not follow the order");
    // Each sender's own messages keep the order they were sent in.
    for who in ["alice", "bob"] {
        let own: Vec<String> =
            sequences[2].iter().filter(|f| f["author"] == who).map(|f| text_of(f).to_owned()).collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{who} {i}")).collect();
        assert_eq!(own, expected, "{who}'s messages are out of order or missing");
    }
    for ws in [&mut alice_ws, &mut bob_ws, &mut carol_ws] {
        assert!(ws.receives_nothing(QUIET).await, "an extra frame arrived");
    }
    let (_, page) = app.client("carol").get_json("/api/rooms/order/messages?limit=500").await.unwrap();
    assert_eq!(ids_of(&page["messages"]), ids[0], "storage order differs from delivery order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_messages_do_not_reach_another_rooms_sockets() {
    let app = spawn_app(&["alice", "bob"]).await;
    let (mut here, _) = join(&app.client("alice"), "/ws/chat/here/").await;
    let (mut there, _) = join(&app.client("bob"), "/ws/chat/there/").await;
    let (mut there_too, _) = join(&app.client("alice"), "/ws/chat/here_2/").await;
    say(&mut here, "only for here").await;
    assert!(there.receives_nothing(QUIET).await, "another room got the message");
    assert!(there_too.receives_nothing(QUIET).await, "another room got the message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_of_the_same_user_gets_the_message() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let (mut tab_one, _) = join(&alice, "/ws/chat/lobby/").await;
    let (mut tab_two, _) = join(&alice, "/ws/chat/lobby/").await;
    tab_one.send_message("from tab one", Some("t1")).await.unwrap();
    let own = tab_one.next_json(WAIT).await.unwrap();
    let other = tab_two.next_json(WAIT).await.unwrap();
    assert_eq!(own["client_id"], "t1");
    assert_eq!(other["id"], own["id"]);
    assert!(other.get("client_id").is_none(), "client_id went to another socket: {other}");
}

// ----------------------------------------------------------------------- direct

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_conversation_is_shared_by_its_two_users_and_nobody_else() {
    let app = spawn_app(&["alice", "bob", "carol"]).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/direct/bob/").await;
    let (mut bob_ws, _) = join(&app.client("bob"), "/ws/direct/alice/").await;
    let (mut carol_alice, _) = join(&app.client("carol"), "/ws/direct/alice/").await;
    let (mut carol_bob, _) = join(&app.client("carol"), "/ws/direct/bob/").await;
    let (mut carol_room, _) = join(&app.client("carol"), "/ws/chat/dm_alice_bob/").await;

    alice_ws.send_message("psst", Some("a1")).await.unwrap();
    let alice_copy = alice_ws.next_json(WAIT).await.unwrap();
    let bob_copy = bob_ws.next_json(WAIT).await.unwrap();
    assert_eq!(alice_copy["room"], "dm:alice:bob", "{alice_copy}");
    assert_eq!(alice_copy["client_id"], "a1");
    assert_eq!(bob_copy["room"], "dm:alice:bob");
    assert_eq!(bob_copy["id"], alice_copy["id"]);
    assert_eq!(bob_copy["author"], "alice");

    bob_ws.send_message("back at you", None).await.unwrap();
    let reply = alice_ws.next_json(WAIT).await.unwrap();
    assert_eq!(reply["room"], "dm:alice:bob");
    assert_eq!(reply["author"], "bob");
    bob_ws.next_json(WAIT).await.unwrap();

    for (what, ws) in [
        ("carol's chat with alice", &mut carol_alice),
        ("carol's chat with bob", &mut carol_bob),
        ("a room named like it", &mut carol_room),
    ] {
        assert!(ws.receives_nothing(QUIET).await, "{what} received alice and bob's messages");
    }
    // Reconnecting shows the conversation from either side.
    let (_, history) = join(&app.client("bob"), "/ws/direct/alice/").await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    let (_, carols) = join(&app.client("carol"), "/ws/direct/bob/").await;
    assert_eq!(carols["messages"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_room_names_order_the_two_users_by_bytes() {
    let app = spawn_app(&["Zed", "amy"]).await;
    let (mut zed_ws, _) = join(&app.client("Zed"), "/ws/direct/amy/").await;
    let (mut amy_ws, _) = join(&app.client("amy"), "/ws/direct/Zed/").await;
    zed_ws.send_message("upper first", None).await.unwrap();
    amy_ws.send_message("lower second", None).await.unwrap();
    for ws in [&mut zed_ws, &mut amy_ws] {
        for frame in collect_messages(ws, 2).await.unwrap() {
            // 'Z' (0x5A) sorts before 'a' (0x61): byte order, not alphabetical.
            assert_eq!(frame["room"], "dm:Zed:amy", "{frame}");
        }
    }
    let (status, page) = app.client("amy").get_json("/api/direct/Zed/messages").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_gets_a_clean_close_echo() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    ws.send_frame(Frame::close(1000, b"done")).await.unwrap();
    match ws.next_event(WAIT).await.unwrap() {
        Event::Closed { code, .. } => assert_eq!(code, 1000),
        other => panic!("expected the close echo, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_usernames_reach_their_direct_conversation() {
    // Browsers encode `@` and `+` in paths: `/ws/direct/bob%40example.com/`.
    let app = spawn_app(&["alice", "bob+1@example.com"]).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/direct/bob%2B1%40example.com/").await;
    let (mut bob_ws, _) = join(&app.client("bob+1@example.com"), "/ws/direct/alice/").await;
    alice_ws.send_message("hello bob", None).await.unwrap();
    let got = bob_ws.next_of_type("chat_handler", WAIT).await.unwrap();
    assert_eq!(got["room"], "dm:alice:bob+1@example.com");
    let page = app.client("alice").get("/direct/bob%2B1%40example.com").await.unwrap();
    assert_eq!(page.status, 200);
    let (status, history) = app.client("alice").get_json("/api/direct/bob%2B1%40example.com/messages").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(history["messages"][0]["message"], "hello bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_frames_name_the_client_id_of_the_frame_they_refuse() {
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    ws.send_text(r#"{"message": "   ", "client_id": "c-empty"}"#).await.unwrap();
    let error = expect_error(&mut ws, "empty", "a blank message").await;
    assert_eq!(error["client_id"], "c-empty", "{error}");
    ws.send_text("not json").await.unwrap();
    let error = expect_error(&mut ws, "bad_json", "not JSON").await;
    assert!(error.get("client_id").is_none(), "{error}");
}
