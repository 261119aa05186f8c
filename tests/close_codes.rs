//! The WebSocket close codes PROTOCOL.md's table promises, each pinned over
//! a real socket with its code and its reason text together. Rows pinned in
//! other files are not repeated here:
//! - 1001 `server shutting down`: persistence.rs (shutdown_closes_open_sockets_with_1001);
//! - 1001 `idle timeout`: websocket_rfc6455.rs (a_silent_socket_is_closed_with_1001_idle_timeout);
//! - 1002 `client frames must be masked`: websocket_rfc6455.rs; 1003 and 1009: websocket.rs;
//! - 1008 `signed out` after `chatctl changepassword`, and `account deactivated`
//!   after `chatctl users deactivate`: admin.rs (across nodes: admin_cluster.rs).

mod common;

use std::sync::atomic::Ordering;
use std::time::Instant;

use chatctl::client::Client;
use chatctl::storage::{SchemaCheck, Store};
use common::*;
use hyper::Method;

/// The `csrf_token` of the lobby page, which the sign-out and admin forms post.
async fn page_token(client: &Client) -> String {
    let lobby = client.get("/").await.expect("GET / answers");
    input_value(&lobby.text(), "csrf_token").expect("a csrf_token on the lobby page")
}

/// A second, separate session of `username` on `app`.
async fn second_session(app: &TestApp, username: &str) -> Client {
    let mut client = app.anonymous();
    let answer = client.login(username, &password_of(username)).await.expect("POST /api/login answers");
    assert_eq!(answer.status, 200, "{username} could not sign in again: {}", answer.text());
    client
}

/// The server's close of `ws` (past messages and error frames): code and reason.
async fn close_of(ws: &mut chatctl::client::ChatSocket, what: &str) -> (u16, String) {
    expect_close_with_reason(ws).await.unwrap_or_else(|e| panic!("{what}: no close frame: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_that_sessions_sockets_with_1008_signed_out_and_no_other() {
    let app = spawn_app(&["alice"]).await;
    let leaving = app.client("alice");
    let staying = second_session(&app, "alice").await;
    let (mut leaving_ws, _) = join(&leaving, "/ws/chat/lobby/").await;
    let (mut staying_ws, _) = join(&staying, "/ws/chat/lobby/").await;

    let token = page_token(&leaving).await;
    let answer = leaving.send(Method::POST, "/logout", &[FORM], form_body(&[("csrf_token", &token)])).await.unwrap();
    assert_eq!(answer.status, 303, "{}", answer.text());

    assert_eq!(close_of(&mut leaving_ws, "the signed-out session's socket").await, (1008, "signed out".to_owned()));
    // The same user's other session keeps its socket.
    say(&mut staying_ws, "still signed in elsewhere").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_on_the_admin_page_closes_every_socket_of_the_user_with_1008_account_deactivated() {
    let app = spawn_app_with(&[UserSpec::new("root").superuser(), UserSpec::new("alice")], |_| {}).await;
    let (mut first, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let (mut second, _) = join(&second_session(&app, "alice").await, "/ws/direct/root/").await;
    let (mut roots, _) = join(&app.client("root"), "/ws/chat/lobby/").await;

    let root = app.client("root");
    let token = page_token(&root).await;
    let answer = root
        .send(Method::POST, "/admin/users/alice/deactivate", &[FORM], form_body(&[("csrf_token", &token)]))
        .await
        .unwrap();
    assert_eq!(answer.status, 303, "deactivating alice: {}", answer.text());

    for (ws, what) in [(&mut first, "alice's room socket"), (&mut second, "alice's other session's direct socket")] {
        assert_eq!(close_of(ws, what).await, (1008, "account deactivated".to_owned()), "{what}");
    }
    say(&mut roots, "the admin's own socket stays open").await;
}

/// Bob's socket reads nothing while alice fills the room: once the
/// kernel's buffers toward bob are full, his outbound queue (1,024 frames)
/// fills and the server closes his socket.
///
/// The overflow must come soon after the buffers fill, since a write stalled
/// for 10 s ends the socket without a close frame. So each round is a few
/// large messages (12 KiB each), which fill the buffers fast, then more
/// small ones than the queue holds, which are quick to store: the round in
/// which the buffers fill overflows the queue too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_closed_with_1008_slow_consumer() {
    let app = spawn_app_with(&["alice".into(), "bob".into()], |config| config.message_rate = 0).await;
    let (mut alice_ws, _) = join(&app.client("alice"), "/ws/chat/flood/").await;
    let (mut bob_ws, _) = join(&app.client("bob"), "/ws/chat/flood/").await;
    let metrics = app.server.app().metrics.clone();
    let started = Instant::now();
    let mut rounds = 0;
    while metrics.slow_consumer_drops.load(Ordering::Relaxed) == 0 {
        // 100 rounds are 60 MB toward bob: far more than any socket buffer.
        assert!(rounds < 100, "{rounds} rounds and bob's socket was never found slow");
        send_large(&mut alice_ws, 50).await;
        send_many(&mut alice_ws, "small", 1_100).await;
        rounds += 1;
    }
    eprintln!("bob's queue overflowed in round {rounds}, after {:?}", started.elapsed());

    assert_eq!(close_of(&mut bob_ws, "bob's socket").await, (1008, "slow consumer".to_owned()));
    // Alice, who read everything, was not touched.
    say(&mut alice_ws, "alice reads on").await;
}

/// Text that is not UTF-8: "\xff" is never valid, in one frame or in a
/// message reassembled from fragments (each fragment alone may be cut
/// mid-character, so only the whole message is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_closes_the_socket_with_1007() {
    use fastwebsockets::{Frame, OpCode, Payload};
    let app = spawn_app(&["alice"]).await;
    let text = |fin: bool, opcode: OpCode, bytes: &[u8]| Frame::new(fin, opcode, None, Payload::Owned(bytes.to_vec()));

    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    ws.send_frame(text(true, OpCode::Text, b"{\"message\": \"\xff\"}")).await.unwrap();
    assert_eq!(close_of(&mut ws, "one frame").await, (1007, "text frame is not UTF-8".to_owned()));

    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    // "\u{20ac}" is e2 82 ac: split across the fragments, then one bad byte.
    ws.send_frame(text(false, OpCode::Text, b"{\"message\": \"\xe2\x82")).await.unwrap();
    ws.send_frame(text(true, OpCode::Continuation, b"\xac\xff\"}")).await.unwrap();
    assert_eq!(close_of(&mut ws, "fragments").await, (1007, "text message is not UTF-8".to_owned()));
}

/// A continuation frame with no message begun breaks RFC 6455's framing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_with_no_message_begun_closes_the_socket_with_1002() {
    use fastwebsockets::{Frame, OpCode, Payload};
    let app = spawn_app(&["alice"]).await;
    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let stray = Frame::new(true, OpCode::Continuation, None, Payload::Owned(br#"{"message": "stray"}"#.to_vec()));
    ws.send_frame(stray).await.unwrap();
    assert_eq!(close_of(&mut ws, "a stray continuation").await, (1002, "unexpected continuation frame".to_owned()));
}

/// PROTOCOL.md: 1011 `storage unavailable` when the history cannot be read
/// at connect time. A stored message that is not the JSON chatctl writes
/// (a damaged record, written into the database file from outside) makes
/// the room's history unreadable while sign-in and the upgrade still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_history_cannot_be_read_closes_the_socket_with_1011_storage_unavailable() {
    let dir = tempfile::tempdir().expect("creating a temporary data dir");
    create_users(dir.path(), &[UserSpec::new("alice")]);
    damage_one_message(dir.path(), "damaged");
    let config = chatctl::config::ServerConfig::ephemeral(dir.path());
    let server = chatctl::startup::start(config).await.expect("the server starts on a database with a bad record");
    let mut alice = Client::new(&server.url()).unwrap();
    assert_eq!(alice.login("alice", &password_of("alice")).await.unwrap().status, 200);

    let mut ws = alice.connect("/ws/chat/damaged/", None).await.expect("the upgrade itself succeeds");
    assert_eq!(close_of(&mut ws, "the damaged room's socket").await, (1011, "storage unavailable".to_owned()));
    // Other rooms are unaffected.
    let (mut lobby, _) = join(&alice, "/ws/chat/lobby/").await;
    say(&mut lobby, "the lobby still works").await;
    server.shutdown().await;
}

/// Writes a message record that is not JSON into `room`, as a damaged disk
/// or a foreign tool could leave it; redb's own checksums stay valid.
fn damage_one_message(data_dir: &std::path::Path, room: &str) {
    const MESSAGES: redb::TableDefinition<(&str, u64), &[u8]> = redb::TableDefinition::new("messages");
    let store = Store::open(data_dir, SchemaCheck::RequireCurrent).expect("opening the test database");
    let db = store.db().expect("the database is open");
    let txn = db.begin_write().expect("a write transaction");
    txn.open_table(MESSAGES).expect("the messages table").insert((room, 1), b"\x00 not a message".as_slice()).unwrap();
    txn.commit().expect("committing the damaged record");
    drop(db);
    drop(store);
}
