//! What outlives a restart (messages, sessions, accounts), how shutdown
//! treats open sockets, and the first-run setup page.

mod common;

use bytes::Bytes;
use chatctl::client::{Client, Event};
use chatctl::config::ServerConfig;
use chatctl::storage::{SchemaCheck, Store};
use common::*;
use hyper::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sessions_and_accounts_survive_a_restart() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let TestApp { server, config, clients, dir } = app;
    let alice = clients[0].1.clone();
    let bob = clients[1].1.clone();
    let (mut ws, _) = join(&alice, "/ws/chat/kept/").await;
    let sent = send_many(&mut ws, "kept", 5).await;
    let (mut dm, _) = join(&alice, "/ws/direct/bob/").await;
    let private = say(&mut dm, "private and kept").await;
    let before_room = alice.get_json("/api/rooms/kept/messages").await.unwrap().1;
    leave(ws).await;
    leave(dm).await;
    server.shutdown().await;

    let server = chatctl::startup::start(config.clone()).await.expect("a restart on the same data dir");
    assert!(server.setup_url.is_none(), "setup reopened although accounts exist");
    let url = server.url();
    // Sessions: the old cookies still work.
    let alice = alice.at(&url).unwrap();
    let bob = bob.at(&url).unwrap();
    let (status, me) = alice.get_json("/api/me").await.unwrap();
    assert_eq!(status, 200, "alice's session was lost: {me}");
    assert_eq!(me["username"], "alice");
    // Messages: the same frames, in the same order, from the API and a socket.
    let after_room = bob.get_json("/api/rooms/kept/messages").await.unwrap().1;
    assert_eq!(after_room, before_room);
    assert_eq!(after_room["messages"].as_array().unwrap(), &sent);
    let (_, history) = join(&bob, "/ws/chat/kept/").await;
    assert_eq!(history["messages"].as_array().unwrap(), &sent);
    let (_, dm_history) = join(&bob, "/ws/direct/alice/").await;
    assert_eq!(dm_history["messages"].as_array().unwrap(), &vec![private.clone()]);
    // Accounts: signing in again works, with the same password.
    let mut fresh = Client::new(&url).unwrap();
    assert_eq!(fresh.login("bob", &password_of("bob")).await.unwrap().status, 200);
    // New messages continue the order after the old ones.
    let (mut ws, _) = join(&alice, "/ws/chat/kept/").await;
    let next = say(&mut ws, "after the restart").await;
    let last_before = sent.last().unwrap()["id"].as_str().unwrap();
    assert!(next["id"].as_str().unwrap() > last_before, "a new id {} does not sort after {last_before}", next["id"]);
    assert!(next["id"].as_str().unwrap() > private["id"].as_str().unwrap());
    leave(ws).await;
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_logout_stays_ended_after_a_restart() {
    let app = spawn_app(&["alice"]).await;
    let TestApp { server, config, clients, dir } = app;
    let alice = clients[0].1.clone();
    let token = input_value(&alice.get("/").await.unwrap().text(), "csrf_token").unwrap();
    let answer = alice.send(Method::POST, "/logout", &[FORM], form_body(&[("csrf_token", &token)])).await.unwrap();
    assert_eq!(answer.status, 303);
    server.shutdown().await;
    let server = chatctl::startup::start(config).await.unwrap();
    let alice = alice.at(&server.url()).unwrap();
    assert_json_error(&alice.get("/api/me").await.unwrap(), 401, "a logged-out session after restart");
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_sockets_with_1001() {
    let app = spawn_app(&["alice", "bob"]).await;
    let TestApp { server, clients, dir, .. } = app;
    let (mut room, _) = join(&clients[0].1, "/ws/chat/lobby/").await;
    let (mut direct, _) = join(&clients[1].1, "/ws/direct/alice/").await;
    let stopping = tokio::spawn(server.shutdown());
    for ws in [&mut room, &mut direct] {
        match ws.next_event(WAIT).await.expect("a close frame before the connection ends") {
            Event::Closed { code, reason } => assert_eq!((code, reason.as_str()), (1001, "server shutting down")),
            other => panic!("expected a close, got {other:?}"),
        }
    }
    stopping.await.unwrap();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_open_sockets_releases_the_data_dir_for_a_restart() {
    let app = spawn_unlimited_app(&["alice", "bob"]).await;
    let TestApp { server, config, clients, dir } = app;
    let alice = clients[0].1.clone();
    let (mut room, _) = join(&alice, "/ws/chat/lobby/").await;
    let (_direct, _) = join(&clients[1].1, "/ws/direct/alice/").await;
    let sent = send_many(&mut room, "open at shutdown", 3).await;
    // The sockets stay open on the client side while the server stops.
    server.shutdown().await;
    let server = chatctl::startup::start(config)
        .await
        .unwrap_or_else(|e| panic!("restarting after a shutdown with open sockets: {e}"));
    let (_, page) = alice.at(&server.url()).unwrap().get_json("/api/rooms/lobby/messages").await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap(), &sent);
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_echoed_before_shutdown_are_stored() {
    let app = spawn_unlimited_app(&["alice"]).await;
    let TestApp { server, config, clients, dir } = app;
    let alice = clients[0].1.clone();
    let (mut ws, _) = join(&alice, "/ws/chat/lobby/").await;
    let sent = send_many(&mut ws, "before stop", 50).await;
    leave(ws).await;
    server.shutdown().await;
    let server = chatctl::startup::start(config).await.unwrap();
    let (_, page) = alice.at(&server.url()).unwrap().get_json("/api/rooms/lobby/messages").await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap(), &sent, "an echoed (durable) message was lost");
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_waits_for_a_lock_released_by_a_process_that_is_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::ephemeral(dir.path());
    // Stands in for a killed server whose lock the kernel has not dropped yet.
    let held = Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        drop(held);
    });
    let server = chatctl::startup::start(config)
        .await
        .unwrap_or_else(|e| panic!("start gave up on a lock released after a second: {e}"));
    releaser.join().unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_an_empty_database_file_instead_of_starting_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(chatctl::storage::DB_FILE);
    std::fs::write(&db, b"").unwrap();
    let error = match chatctl::startup::start(ServerConfig::ephemeral(dir.path())).await {
        Ok(server) => {
            let setup = server.setup_url.clone();
            server.shutdown().await;
            panic!("started on an empty database file (setup URL {setup:?})");
        }
        Err(error) => error.to_string(),
    };
    assert!(error.contains(&db.display().to_string()), "the error names the file: {error}");
    assert!(error.contains("chatctl restore --data-dir") && error.contains("--force"), "{error}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "the empty file was written to");
}

// ------------------------------------------------------------------ first-run setup

/// A server on an empty data dir.
async fn fresh_server() -> (tempfile::TempDir, chatctl::startup::RunningServer, ServerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::ephemeral(dir.path());
    let server = chatctl::startup::start(config.clone()).await.unwrap();
    (dir, server, config)
}

/// The path and token of the setup URL.
fn setup_parts(setup_url: &str) -> (String, String) {
    let path = setup_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .expect("the setup URL has a path");
    let token = path
        .split_once("token=")
        .map(|(_, t)| url_decode(t.split('&').next().unwrap()))
        .expect("the setup URL carries a token");
    (path, token)
}

async fn post_setup(client: &Client, fields: &[(&str, &str)]) -> chatctl::client::Answer {
    client.send(Method::POST, "/setup", &[FORM], form_body(fields)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_setup_creates_a_superuser_signs_them_in_and_closes() {
    let (dir, server, _) = fresh_server().await;
    let setup_url = server.setup_url.clone().expect("a fresh data dir offers a setup URL");
    assert!(setup_url.starts_with(&server.url()), "{setup_url}");
    let (path, token) = setup_parts(&setup_url);
    let client = Client::new(&server.url()).unwrap();

    let page = client.get(&path).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    for field in ["username", "password", "password2"] {
        assert!(html.contains(&format!("name=\"{field}\"")), "the form lacks {field}");
    }

    let password = "Violet-Lantern-42";
    let answer = post_setup(
        &client,
        &[("token", &token), ("username", "admin"), ("password", password), ("password2", password)],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    let session = cookie_value(&answer.headers, "chatctl_session").expect("a session cookie");
    let me = client
        .send(Method::GET, "/api/me", &[("cookie", &format!("chatctl_session={session}"))], Bytes::new())
        .await
        .unwrap();
    assert_eq!(me.status, 200);
    assert_eq!(me.json().unwrap(), serde_json::json!({"username": "admin", "is_superuser": true}));

    // Closed now, with the same token or without.
    assert_eq!(client.get(&path).await.unwrap().status, 404);
    let again = post_setup(
        &client,
        &[("token", &token), ("username", "second"), ("password", password), ("password2", password)],
    )
    .await;
    assert_eq!(again.status, 404);
    assert!(cookie_value(&again.headers, "chatctl_session").is_none());
    let mut second = Client::new(&server.url()).unwrap();
    assert_eq!(second.login("second", password).await.unwrap().status, 401, "a second account was created");
    let mut admin = Client::new(&server.url()).unwrap();
    assert_eq!(admin.login("admin", password).await.unwrap().status, 200);
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_stays_closed_after_a_restart() {
    let (dir, server, config) = fresh_server().await;
    let (path, token) = setup_parts(server.setup_url.as_deref().unwrap());
    let client = Client::new(&server.url()).unwrap();
    let password = "Violet-Lantern-42";
    let answer = post_setup(
        &client,
        &[("token", &token), ("username", "admin"), ("password", password), ("password2", password)],
    )
    .await;
    assert_eq!(answer.status, 303);
    server.shutdown().await;
    let server = chatctl::startup::start(config).await.unwrap();
    assert!(server.setup_url.is_none());
    assert_eq!(client.at(&server.url()).unwrap().get(&path).await.unwrap().status, 404);
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_with_a_wrong_token_is_403() {
    let (dir, server, _) = fresh_server().await;
    let (_, token) = setup_parts(server.setup_url.as_deref().unwrap());
    let client = Client::new(&server.url()).unwrap();
    let wrong = format!("{}0", &token[..token.len() - 1]);
    let wrong = if wrong == token { format!("{}1", &token[..token.len() - 1]) } else { wrong };
    for path in [format!("/setup?token={wrong}"), "/setup?token=".to_owned(), "/setup".to_owned()] {
        assert_eq!(client.get(&path).await.unwrap().status, 403, "GET {path}");
    }
    let password = "Violet-Lantern-42";
    for bad in [wrong.as_str(), ""] {
        let answer = post_setup(
            &client,
            &[("token", bad), ("username", "admin"), ("password", password), ("password2", password)],
        )
        .await;
        assert_eq!(answer.status, 403, "POST with token {bad:?}");
        assert!(cookie_value(&answer.headers, "chatctl_session").is_none());
    }
    // Nothing was created: the real token still works.
    let answer = post_setup(
        &client,
        &[("token", &token), ("username", "admin"), ("password", password), ("password2", password)],
    )
    .await;
    assert_eq!(answer.status, 303);
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_weak_or_mismatched_passwords_with_the_form_again() {
    let (dir, server, _) = fresh_server().await;
    let (path, token) = setup_parts(server.setup_url.as_deref().unwrap());
    let client = Client::new(&server.url()).unwrap();
    for (what, password, confirmation) in [
        ("a common password", "password123", "password123"),
        ("a short password", "Xq7!a", "Xq7!a"),
        ("an all-digit password", "8302750183", "8302750183"),
        ("a password like the username", "administrator1", "administrator1"),
        ("mismatched passwords", "Violet-Lantern-42", "Violet-Lantern-43"),
    ] {
        let answer = post_setup(
            &client,
            &[("token", &token), ("username", "administrator"), ("password", password), ("password2", confirmation)],
        )
        .await;
        assert!(answer.status == 200 || answer.status == 400, "{what}: {} instead of the form", answer.status);
        let html = answer.text();
        assert!(html.contains("name=\"password2\""), "{what}: the form is not shown again");
        assert!(cookie_value(&answer.headers, "chatctl_session").is_none(), "{what}: signed in");
    }
    // Setup is still open and nobody can sign in with the refused passwords.
    assert_eq!(client.get(&path).await.unwrap().status, 200);
    let mut probe = Client::new(&server.url()).unwrap();
    assert_eq!(probe.login("administrator", "password123").await.unwrap().status, 401);
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_an_invalid_username_with_the_form_again() {
    let (dir, server, _) = fresh_server().await;
    let (path, token) = setup_parts(server.setup_url.as_deref().unwrap());
    let client = Client::new(&server.url()).unwrap();
    let password = "Violet-Lantern-42";
    let too_long = "u".repeat(151);
    for username in ["", "with space", "colon:name", too_long.as_str(), ".", ".."] {
        let answer = post_setup(
            &client,
            &[("token", &token), ("username", username), ("password", password), ("password2", password)],
        )
        .await;
        assert_ne!(answer.status, 303, "username {username:?} was accepted");
        assert!(cookie_value(&answer.headers, "chatctl_session").is_none());
        if username.starts_with('.') {
            assert!(answer.text().contains("cannot be made only of dots"), "{username:?}: {}", answer.text());
        }
    }
    assert_eq!(client.get(&path).await.unwrap().status, 200);
    server.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_with_users_offers_no_setup() {
    let app = spawn_app(&["alice"]).await;
    assert!(app.server.setup_url.is_none());
    assert_eq!(app.anonymous().get("/setup?token=anything").await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_panic_fails_its_call_and_marks_the_node_unready_while_it_keeps_serving() {
    let app = spawn_app(&["alice"]).await;
    assert_eq!(app.anonymous().get("/readyz").await.unwrap().status, 200);
    // What a damaged file does to redb: a panic inside a storage call.
    let failed = app
        .server
        .app()
        .store
        .call(|_| -> chatctl::storage::Result<()> { panic!("simulated damage in the database file") })
        .await;
    match failed {
        Err(chatctl::storage::StorageError::Panicked(what)) => assert!(what.contains("simulated damage"), "{what}"),
        other => panic!("expected a Panicked error, got {other:?}"),
    }
    let (status, me) = app.client("alice").get_json("/api/me").await.unwrap();
    assert_eq!(status, 200, "the node keeps serving what it can: {me}");
    let ready = app.anonymous().get("/readyz").await.unwrap();
    assert_eq!(ready.status, 503);
    let body = ready.json().unwrap();
    assert_eq!(body["status"], "unavailable");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("simulated damage") && reason.contains("chatctl restore"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_damaged_pages_is_refused_at_start_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), SchemaCheck::RequireCurrent).unwrap();
        for i in 0..3000 {
            let record = chatctl::storage::UserRecord {
                username: chatctl::domain::Username::parse(&format!("user{i:05}_{}", "x".repeat(100))).unwrap(),
                email: String::new(),
                password_hash: "$argon2id$x".into(),
                is_superuser: false,
                is_active: true,
                created_at_ms: 1,
            };
            store.create_user(&record).unwrap();
        }
    }
    // 64 KiB of noise in the middle of the file, as a failing disk leaves it.
    let path = dir.path().join("chatctl.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 256 * 1024, "the test database is too small: {}", bytes.len());
    let middle = bytes.len() / 2;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for byte in &mut bytes[middle..middle + 65536] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let refused = chatctl::startup::start(ServerConfig::ephemeral(dir.path())).await.err().expect("refused");
    let message = refused.to_string();
    assert!(message.contains("is damaged") && message.contains("chatctl restore"), "{message}");
}
