//! Request limits of PROTOCOL.md: headers over 16 KiB get 431, bodies over
//! 1 MiB get 413, a client slow to send its request header or body is cut
//! off, one address may hold only so many connections, and one user only
//! so many sockets.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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

/// Sends a request header promising 1,000 bytes of body, then one byte a
/// second; returns the answer and how long until the server closed.
async fn trickle_body(addr: SocketAddr, path: &str, content_type: &str) -> (String, Duration) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n");
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(read.is_ok(), "the connection was still open after {WAIT:?}");
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_the_deadline_gets_408_and_its_connection_closed() {
    let app = spawn_app_with(&[], |config| config.body_deadline = Duration::from_secs(2)).await;
    let (api, api_took) = trickle_body(app.server.addr, "/api/login", "application/json").await;
    let (page, page_took) = trickle_body(app.server.addr, "/login", "application/x-www-form-urlencoded").await;
    for (answer, took, what) in [(&api, api_took, "/api/login"), (&page, page_took, "/login")] {
        assert_eq!(raw_status(answer), Some(408), "{what}: {answer}");
        assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(5), "{what} closed after {took:?}");
    }
    assert!(api.contains("application/json") && api.contains("\"error\""), "an /api/ route answers JSON: {api}");
    assert_eq!(app.anonymous().get("/healthz").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_a_byte_at_a_time_is_read_whole() {
    // Each byte is its own read on the server: the body is put together
    // from many one-byte chunks (copied out, not kept as slices of the
    // read buffer), and must come out as sent.
    let app = spawn_app(&[]).await;
    let body = br#"{"username": "nobody", "password": "not-the-password"}"#;
    let stream = TcpStream::connect(app.server.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.server.addr,
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    for byte in body {
        writer.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, reader.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    // 401, not 400: the JSON arrived intact and the credentials were checked.
    assert_eq!(raw_status(&answer), Some(401), "{answer}");
}

/// A connection from 127.0.0.1 (or `from`) that asked for `/healthz`, was
/// answered, and stays open (keep-alive).
async fn held_connection(addr: SocketAddr, from: Option<[u8; 4]>) -> TcpStream {
    let mut stream = match from {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from((ip, 0))).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed instead of answering: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
    assert_eq!(raw_status(&String::from_utf8_lossy(&received)), Some(200));
    stream
}

/// Connects and, sending nothing, reads what the server says before it
/// closes: a refused connection gets a 503 (or just the close) at once.
async fn refused_promptly(addr: SocketAddr) -> Result<String, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return Err("still open after 2 s: not refused".to_owned()),
        }
    }
    let answer = String::from_utf8_lossy(&received).into_owned();
    if !(answer.is_empty() || raw_status(&answer) == Some(503)) {
        return Err(format!("not a refusal: {answer}"));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "refused only after {:?}", started.elapsed());
    Ok(answer)
}

/// Retries `/healthz` on fresh connections for up to 5 s until one is served.
async fn served_again(addr: SocketAddr) -> bool {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    for _ in 0..50 {
        if raw_exchange(addr, request.as_bytes()).await.ok().and_then(|a| raw_status(&a)) == Some(200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn trusting(range: &str) -> chatctl::config::TrustedProxies {
    chatctl::config::TrustedProxies::new(vec![chatctl::config::TrustedProxies::parse_range(range).unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_past_its_connection_cap_is_refused_until_one_closes() {
    let app = spawn_app_with(&[], |config| {
        config.max_connections_per_address = 3;
        config.trusted_proxies = trusting("10.0.0.0/8");
    })
    .await;
    let addr = app.server.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(held_connection(addr, None).await);
    }
    let answer = refused_promptly(addr).await.unwrap();
    assert!(answer.is_empty() || answer.contains("too many open connections"), "{answer}");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(addr, request.as_bytes()).await.unwrap_or_default();
    assert!(raw_status(&answer) != Some(200), "a 4th connection was served: {answer}");
    // Another address has its own count (all of 127/8 is loopback on Linux).
    drop(held_connection(addr, Some([127, 0, 0, 2])).await);
    // The held connections are still served.
    for stream in &mut held {
        stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), Some(200));
    }
    drop(held.pop());
    assert!(served_again(addr).await, "closing a connection did not free its place");
    let refused = app.server.app().metrics.connections_refused.load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused >= 2, "refusals counted: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_capped() {
    let app = spawn_app_with(&[], |config| {
        config.max_connections_per_address = 3;
        config.trusted_proxies = trusting("127.0.0.1/32");
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(held_connection(app.server.addr, None).await);
    }
    assert!(served_again(app.server.addr).await, "a trusted proxy was capped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_keeps_its_connections_place_until_it_closes() {
    let app = spawn_app_with(&[UserSpec::new("alice")], |config| {
        config.max_connections_per_address = 2;
        config.trusted_proxies = trusting("10.0.0.0/8");
    })
    .await;
    let addr = app.server.addr;
    let (ws, _) = join(&app.client("alice"), "/ws/chat/lobby/").await;
    let _held = held_connection(addr, None).await;
    // Let the sign-in's connection and the upgrade's HTTP task finish: only
    // the socket and the held connection may count now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    refused_promptly(addr).await.expect("the socket still counts after its HTTP connection ended");
    leave(ws).await;
    assert!(served_again(addr).await, "closing the socket did not free its place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_past_their_socket_cap_is_refused_until_one_closes() {
    let app = spawn_app_with(&[UserSpec::new("alice"), UserSpec::new("bob")], |config| {
        config.max_sockets_per_user = 3;
    })
    .await;
    let alice = app.client("alice");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(join(&alice, "/ws/chat/lobby/").await.0);
    }
    // A fourth socket, from another session of hers, into a room she is not
    // in: refused before anything is written, so she does not join it.
    let mut second_session = app.anonymous();
    second_session.login("alice", &password_of("alice")).await.expect("POST /api/login answers");
    let refused = second_session.connect("/ws/chat/elsewhere/", None).await;
    assert_refused(refused, 429, "alice's fourth socket");
    let (_, lobby) = alice.get_json("/api/lobby").await.expect("GET /api/lobby answers");
    assert!(!lobby.to_string().contains("elsewhere"), "a refused upgrade joined its room: {lobby}");
    // Another user has places of their own.
    let (_bob, _) = join(&app.client("bob"), "/ws/chat/lobby/").await;
    leave(open.pop().unwrap()).await;
    // The server ends the socket's task just after its close echo.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match second_session.connect("/ws/chat/elsewhere/", None).await {
            Ok(_socket) => break,
            Err(error) if Instant::now() < deadline => {
                assert!(matches!(error, chatctl::client::ConnectError::Refused(429)), "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("closing a socket did not free its place: {error}"),
        }
    }
}
