//! Behind a reverse proxy: `--trusted-proxy` decides whose forwarding
//! headers are believed (client address for throttling and `/metrics`,
//! public scheme and host for the Origin check), and `--public-url` is an
//! allowed Origin, the base of printed URLs and, with https, makes cookies
//! Secure.

mod common;

use bytes::Bytes;
use chatctl::client::{Answer, Client};
use chatctl::config::{PublicUrl, TrustedProxies};
use common::*;
use hyper::Method;

fn loopback_is_a_proxy(config: &mut chatctl::config::ServerConfig) {
    config.trusted_proxies = TrustedProxies::new(vec![TrustedProxies::parse_range("127.0.0.1/32").unwrap()]);
}

/// `POST /api/login` as a proxy forwards it for `client_address`.
async fn login_via_proxy(client: &Client, username: &str, password: &str, client_address: &str) -> Answer {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    client
        .send(
            Method::POST,
            "/api/login",
            &[("content-type", "application/json"), ("x-forwarded-for", client_address)],
            Bytes::from(body),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client_so_one_guesser_does_not_lock_out_everyone() {
    let app = spawn_app_with(&[UserSpec::new("alice").signed_out()], loopback_is_a_proxy).await;
    let client = app.anonymous();
    let mut statuses = Vec::new();
    for i in 0..25 {
        let name = format!("nobody{i}");
        statuses.push(login_via_proxy(&client, &name, "wrong-password", "203.0.113.66").await.status.as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "the guessing address was never throttled: {statuses:?}");
    let answer = login_via_proxy(&client, "alice", &password_of("alice"), "198.51.100.20").await;
    assert_eq!(answer.status, 200, "another client behind the same proxy was locked out: {}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // No --trusted-proxy: a client cannot escape its throttle by naming
    // another address in X-Forwarded-For.
    let app = spawn_app_with(&[], |_| {}).await;
    let client = app.anonymous();
    let mut last = 0;
    for i in 0..25 {
        let answer = login_via_proxy(&client, &format!("nobody{i}"), "wrong-password", &format!("192.0.2.{i}")).await;
        last = answer.status.as_u16();
    }
    assert_eq!(last, 429, "spoofed X-Forwarded-For values gave a fresh allowance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_refused_through_a_proxy_and_served_to_local_clients() {
    let app = spawn_app_with(&[], loopback_is_a_proxy).await;
    let client = app.anonymous();
    assert_eq!(client.get("/metrics").await.unwrap().status, 200, "a local client");
    let forwarded =
        client.send(Method::GET, "/metrics", &[("x-forwarded-for", "203.0.113.9")], Bytes::new()).await.unwrap();
    assert_eq!(forwarded.status, 403, "a client through the trusted proxy");
    // A proxy nobody declared trusted still marks the request as forwarded.
    let untrusted = spawn_app_with(&[], |_| {}).await;
    let through = untrusted
        .anonymous()
        .send(Method::GET, "/metrics", &[("x-forwarded-for", "127.0.0.1")], Bytes::new())
        .await
        .unwrap();
    assert_eq!(through.status, 403, "a forwarded request through an undeclared loopback proxy");
    let rfc7239 = untrusted
        .anonymous()
        .send(Method::GET, "/metrics", &[("forwarded", "for=203.0.113.9")], Bytes::new())
        .await
        .unwrap();
    assert_eq!(rfc7239.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_open_with_the_public_origin_behind_a_proxy_that_drops_the_port() {
    let app = spawn_app_with(&[UserSpec::new("alice")], |config| {
        loopback_is_a_proxy(config);
        config.public_url = Some("https://chat.example.com:8443".parse::<PublicUrl>().unwrap());
    })
    .await;
    let alice = app.client("alice");
    let ws = alice.connect("/ws/chat/lobby/", Some("https://chat.example.com:8443")).await;
    assert!(ws.is_ok(), "the public URL's origin was refused: {:?}", ws.err());
    assert_refused(alice.connect("/ws/chat/lobby/", Some("https://evil.example")).await, 403, "a foreign origin");
    assert_refused(
        alice.connect("/ws/chat/lobby/", Some("http://chat.example.com:8443")).await,
        403,
        "the public host with the wrong scheme",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_gives_the_scheme_and_host_the_browser_used() {
    let app = spawn_app_with(&[UserSpec::new("alice")], loopback_is_a_proxy).await;
    let alice = app.client("alice");
    let refused = alice.connect("/ws/chat/lobby/", Some("https://chat.internal")).await;
    assert_refused(refused, 403, "an https origin on a plain-HTTP request with no forwarding headers");
    // The same origin, forwarded with X-Forwarded-Proto/Host by the proxy.
    let login = login_with_headers(
        &alice,
        &[("origin", "https://chat.internal"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "chat.internal")],
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let cookie = set_cookie_for(&login.headers, "chatctl_session").unwrap();
    assert!(cookie_attributes(&cookie).iter().any(|a| a == "secure"), "https at the proxy: {cookie}");
}

async fn login_with_headers(client: &Client, headers: &[(&str, &str)]) -> Answer {
    let body = serde_json::json!({"username": "alice", "password": password_of("alice")}).to_string();
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    client.anonymous().send(Method::POST, "/api/login", &all, Bytes::from(body)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_public_url_makes_cookies_secure_and_is_the_setup_urls_base() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatctl::config::ServerConfig::ephemeral(dir.path());
    config.public_url = Some("https://chat.example.com".parse().unwrap());
    let server = chatctl::startup::start(config).await.unwrap();
    let setup = server.setup_url.clone().expect("an empty data dir prints a setup URL");
    assert!(setup.starts_with("https://chat.example.com/setup?token="), "{setup}");
    let page = Client::new(&server.url()).unwrap().get("/login").await.unwrap();
    let csrf = set_cookie_for(&page.headers, "chatctl_csrf").unwrap();
    assert!(cookie_attributes(&csrf).iter().any(|a| a == "secure"), "{csrf}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_behind_a_plain_proxy_expect_https_origins() {
    // The set-up before --public-url existed: a TLS proxy forwarding Host,
    // chatctl told only --secure-cookies. It must keep working.
    let app = spawn_app_with(&[UserSpec::new("alice")], |config| config.secure_cookies = true).await;
    let own = app.server.addr.to_string();
    let login = login_with_headers(&app.client("alice"), &[("origin", &format!("https://{own}"))]).await;
    assert_eq!(login.status, 200, "an https origin with --secure-cookies: {}", login.text());
    let alice = app.client("alice");
    assert!(alice.connect("/ws/chat/lobby/", Some(&format!("https://{own}"))).await.is_ok());
    assert_refused(
        alice.connect("/ws/chat/lobby/", Some(&format!("http://{own}"))).await,
        403,
        "a plain-http origin when every page is served over https",
    );
}
