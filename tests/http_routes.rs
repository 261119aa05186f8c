//! The plain HTTP routes of PROTOCOL.md: health, readiness, metrics, the
//! pages' sign-in redirects and 404s, and the JSON API's error shape.

mod common;

use bytes::Bytes;
use common::*;
use hyper::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_200_ok() {
    let app = spawn_app(&[]).await;
    let answer = app.anonymous().get("/healthz").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_200_json_ready() {
    let app = spawn_app(&[]).await;
    let answer = app.anonymous().get("/readyz").await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json().unwrap(), serde_json::json!({"status": "ready"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_from_loopback_is_prometheus_text_that_counts_stored_messages() {
    let app = spawn_app(&["alice"]).await;
    let counter = |body: &str| -> u64 {
        body.lines()
            .find_map(|line| line.strip_prefix("chatctl_messages_stored_total "))
            .unwrap_or_else(|| panic!("no chatctl_messages_stored_total sample in:\n{body}"))
            .trim()
            .parse()
            .expect("the sample value is a number")
    };
    let first = app.anonymous().get("/metrics").await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    let content_type = first.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "content-type {content_type:?}");
    let body = first.text();
    assert!(body.contains("# TYPE chatctl_messages_stored_total counter"), "{body}");
    let before = counter(&body);

    let (mut ws, _) = join(&app.client("alice"), "/ws/chat/metered/").await;
    say(&mut ws, "count me").await;
    let after = counter(&app.anonymous().get("/metrics").await.unwrap().text());
    assert_eq!(after, before + 1, "one stored message must add one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_signed_out_redirects_303_to_login_with_next() {
    let app = spawn_app(&[]).await;
    let answer = app.anonymous().get("/").await.unwrap();
    assert_eq!(answer.status, 303);
    let target = location(&answer.headers).expect("a Location header");
    let (path, query) = target.split_once('?').expect("a query string");
    assert_eq!(path, "/login");
    let next = query.strip_prefix("next=").expect("next= in the query");
    assert_eq!(url_decode(next), "/");
    // PROTOCOL.md writes it out: `/login?next=/`.
    assert_eq!(target, "/login?next=/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_room_name_is_404_before_sign_in_is_checked() {
    let app = spawn_app(&[]).await;
    let page = app.anonymous().get("/chat/no-such!room").await.unwrap();
    assert_eq!(page.status, 404);
    let api = app.anonymous().get("/api/rooms/bad-name/messages").await.unwrap();
    assert_json_error(&api, 404, "a bad room name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_page_signed_out_redirects_303_to_login_with_its_path_as_next() {
    let app = spawn_app(&[]).await;
    for path in ["/chat/lobby", "/chat/lobby/"] {
        let answer = app.anonymous().get(path).await.unwrap();
        assert_eq!(answer.status, 303, "{path}");
        let target = location(&answer.headers).expect("a Location header");
        let (login, query) = target.split_once('?').expect("a query string");
        assert_eq!(login, "/login", "{path}");
        let next = query.strip_prefix("next=").expect("next= in the query");
        assert_eq!(url_decode(next), path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_page_signed_in_is_200_html_with_and_without_trailing_slash() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    for path in ["/chat/lobby", "/chat/lobby/", "/chat/A_b_9"] {
        let answer = alice.get(path).await.unwrap();
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let content_type = answer.headers["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
        assert!(answer.text().to_ascii_lowercase().contains("<html"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_signed_in_is_200_html() {
    let app = spawn_app(&["alice"]).await;
    let answer = app.client("alice").get("/").await.unwrap();
    assert_eq!(answer.status, 200);
    let content_type = answer.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_page_with_a_bad_room_name_is_404() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let too_long = format!("/chat/{}", "a".repeat(65));
    for path in ["/chat/bad-name!", "/chat/bad-name!/", "/chat/caf%C3%A9", "/chat/dm:alice:bob", too_long.as_str()] {
        let answer = alice.get(path).await.unwrap();
        assert_eq!(answer.status, 404, "{path}");
    }
    // The longest valid name is a room.
    let longest = format!("/chat/{}", "a".repeat(64));
    assert_eq!(alice.get(&longest).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_page_is_200_for_an_existing_user_and_404_for_an_unknown_one() {
    let app = spawn_app(&["alice", "bob"]).await;
    let alice = app.client("alice");
    let known = alice.get("/direct/bob").await.unwrap();
    assert_eq!(known.status, 200);
    assert!(known.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    for path in ["/direct/nobody", "/direct/Bob", "/direct/bad%20name"] {
        assert_eq!(alice.get(path).await.unwrap().status, 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_page_signed_out_redirects_to_login() {
    let app = spawn_app(&["bob"]).await;
    let answer = app.anonymous().get("/direct/bob").await.unwrap();
    assert_eq!(answer.status, 303);
    let target = location(&answer.headers).unwrap();
    assert!(target.starts_with("/login?next="), "{target}");
    assert_eq!(url_decode(target.split_once("next=").unwrap().1), "/direct/bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_route_is_404_json_signed_in_or_not() {
    let app = spawn_app(&["alice"]).await;
    for client in [app.anonymous(), app.client("alice")] {
        for path in ["/api/nope", "/api/roomz", "/api/rooms/lobby", "/api/"] {
            let answer = client.get(path).await.unwrap();
            assert_json_error(&answer, 404, path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_api_calls_get_401_json() {
    let app = spawn_app(&["alice"]).await;
    let bogus = app.anonymous();
    for path in [
        "/api/me",
        "/api/lobby",
        "/api/inbox",
        "/api/rooms",
        "/api/users?prefix=a",
        "/api/rooms/lobby/messages",
        "/api/direct/alice/messages",
    ] {
        let answer = bogus.get(path).await.unwrap();
        assert_json_error(&answer, 401, &format!("no cookie: {path}"));
        let forged = bogus
            .send(Method::GET, path, &[("cookie", &format!("chatctl_session={}", "f".repeat(64)))], Bytes::new())
            .await
            .unwrap();
        assert_json_error(&forged, 401, &format!("unknown session: {path}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_is_json_with_an_error_string() {
    let app = spawn_app(&["alice"]).await;
    let alice = app.client("alice");
    let cases: Vec<(Method, &str, Bytes, u16)> = vec![
        (Method::GET, "/api/rooms/lobby/messages?limit=0", Bytes::new(), 400),
        (Method::GET, "/api/rooms/lobby/messages?limit=x", Bytes::new(), 400),
        (Method::GET, "/api/rooms/bad-name!/messages", Bytes::new(), 404),
        (Method::GET, "/api/direct/nobody/messages", Bytes::new(), 404),
        (Method::GET, "/api/nothing/here", Bytes::new(), 404),
        (Method::POST, "/api/me", Bytes::new(), 405),
        (Method::GET, "/api/login", Bytes::new(), 405),
        (Method::POST, "/api/login", Bytes::from_static(b"{not json"), 400),
        (Method::POST, "/api/login", Bytes::from_static(br#"{"username": "alice"}"#), 400),
    ];
    for (method, path, body, status) in cases {
        let answer = alice.send(method.clone(), path, &[("content-type", "application/json")], body).await.unwrap();
        assert_json_error(&answer, status, &format!("{method} {path}"));
    }
    // Besides the status codes above: a non-id page cursor is refused as JSON too.
    let answer = alice.get("/api/rooms/lobby/messages?before=abc").await.unwrap();
    assert!(answer.status.is_client_error(), "{}", answer.status);
    assert_json_error(&answer, answer.status.as_u16(), "before=abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_page_is_404() {
    let app = spawn_app(&["alice"]).await;
    for client in [app.anonymous(), app.client("alice")] {
        let answer = client.get("/no/such/page").await.unwrap();
        assert_eq!(answer.status, 404);
    }
}
