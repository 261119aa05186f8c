//! Request limits of PROTOCOL.md: headers over 16 KiB get 431, bodies over
//! 1 MiB get 413, and a client slow to send its request header is cut off.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A GET of `/healthz` with one `X-Padding` header of `padding` bytes.
fn padded_request(addr: std::net::SocketAddr, padding: usize) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n", "a".repeat(padding))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_over_16_kib_get_431() {
    let app = spawn_app(&[]).await;
    for padding in [17 * 1024, 64 * 1024] {
        let request = padded_request(app.server.addr, padding);
        let answer = raw_exchange(app.server.addr, request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{padding} bytes of header: {e:#}"));
        assert_eq!(raw_status(&answer), Some(431), "{padding} bytes: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_under_16_kib_are_served() {
    let app = spawn_app(&[]).await;
    // Comfortably under the limit once the request line and Host are added.
    let request = padded_request(app.server.addr, 15 * 1024);
    assert!(request.len() < 16 * 1024);
    let answer = raw_exchange(app.server.addr, request.as_bytes()).await.unwrap();
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_1_mib_gets_413() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], |_| {}).await;
    let client = app.anonymous();
    // Valid JSON with the right credentials, padded past the limit: only
    // its size can be the reason for a refusal.
    let credentials = serde_json::json!({"username": "alice", "password": password_of("alice")}).to_string();
    let mut body = credentials.clone().into_bytes();
    body.truncate(body.len() - 1);
    body.extend_from_slice(b", \"padding\": \"");
    body.resize(1024 * 1024 + 1 - 2, b'p');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), 1024 * 1024 + 1);
    serde_json::from_slice::<serde_json::Value>(&body).expect("the padded body is JSON");
    let answer = client
        .send(Method::POST, "/api/login", &[("content-type", "application/json")], Bytes::from(body))
        .await
        .unwrap();
    assert_json_error(&answer, 413, "a 1 MiB + 1 byte body");
    assert!(set_cookie_for(&answer.headers, "chatctl_session").is_none());

    // One byte less is not refused for its size.
    let mut exact = credentials.into_bytes();
    exact.truncate(exact.len() - 1);
    exact.extend_from_slice(b", \"padding\": \"");
    exact.resize(1024 * 1024 - 2, b'p');
    exact.extend_from_slice(b"\"}");
    let answer = client
        .send(Method::POST, "/api/login", &[("content-type", "application/json")], Bytes::from(exact))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "a body of exactly 1 MiB: {}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_body_over_1_mib_gets_413() {
    let app = spawn_app(&[]).await;
    // No Content-Length: the limit must hold while the body streams in.
    let mut request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.server.addr
    )
    .into_bytes();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..17 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(app.server.addr, &request).await.unwrap();
    assert_eq!(raw_status(&answer), Some(413), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_over_1_mib_gets_413() {
    let app = spawn_app(&[]).await;
    let page = app.anonymous().get("/login").await.unwrap();
    let token = input_value(&page.text(), "csrf_token").unwrap();
    let padding = "p".repeat(1024 * 1024);
    let body = form_body(&[("csrf_token", &token), ("username", "x"), ("password", &padding)]);
    let answer = app
        .anonymous()
        .send(Method::POST, "/login", &[FORM, ("cookie", &format!("chatctl_csrf={token}"))], body)
        .await
        .unwrap();
    assert_eq!(answer.status, 413);
}

/// Connects, sends `first` (at most part of a request header; with `trickle`,
/// one more byte every half second), then waits up to 20 s for the server to
/// close. Returns whether it did.
async fn disconnected_within_20s(app: &TestApp, first: &'static [u8], trickle: bool) -> bool {
    let mut stream = TcpStream::connect(app.server.addr).await.unwrap();
    stream.write_all(first).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 1024];
    loop {
        // A slowloris sends a byte of header every half second, forever.
        let wait = if trickle { Duration::from_millis(500) } else { Duration::from_secs(20) };
        let until = (tokio::time::Instant::now() + wait).min(deadline);
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine.
            Ok(Ok(_)) => continue,
            Err(_) if tokio::time::Instant::now() >= deadline => return false,
            Err(_) => {
                if stream.write_all(b"X").await.is_err() {
                    return true;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_finish_their_request_header_are_disconnected() {
    let app = spawn_app(&[]).await;
    let (stalled, trickling, silent) = tokio::join!(
        disconnected_within_20s(&app, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", false),
        disconnected_within_20s(&app, b"GET /healthz HTTP/1.1\r\nX-Slow: ", true),
        disconnected_within_20s(&app, b"", false),
    );
    assert!(stalled, "a client that stalled mid-header was not disconnected");
    assert!(trickling, "a client trickling its header was not disconnected");
    assert!(silent, "a client that sent nothing was not disconnected");
    // The server is fine afterwards.
    assert_eq!(app.anonymous().get("/healthz").await.unwrap().status, 200);
}
