//! chatctl behind a real nginx with TLS, as docs/DEPLOY.md sets it up: the
//! server block is contrib/nginx/chatctl.conf itself, with only its names,
//! ports and certificate paths filled in. Through it, 200 users sign in from
//! one address, 50 of them chat over wss:// with the public Origin, and
//! `/metrics` is refused.
//!
//! Needs Debian's nginx. Without it the test says SKIPPED, unless
//! `CHATCTL_REQUIRE_NGINX` is set (as `.ci/run` does), when it fails.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chatctl::client::Client;
use chatctl::config::{ServerConfig, TrustedProxies};
use common::certs::Ca;
use common::*;

/// The address nginx connects to chatctl from (`proxy_bind`): the only
/// trusted proxy, so the test's own client (127.0.0.1) is an outside client.
const PROXY_SOURCE: &str = "127.0.0.3";

fn nginx_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|path| path.exists());
    if found.is_none() {
        if std::env::var_os("CHATCTL_REQUIRE_NGINX").is_some() {
            panic!("nginx is required (CHATCTL_REQUIRE_NGINX is set) but not installed: apt-get install nginx");
        }
        eprintln!("SKIPPED deploy_nginx: nginx is not installed (apt-get install nginx); set CHATCTL_REQUIRE_NGINX to make this a failure");
    }
    found
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running nginx, stopped when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx on `port` with contrib/nginx/chatctl.conf in front of
    /// `upstream`, using the given certificate pair.
    fn start(binary: &Path, dir: &Path, port: u16, upstream: SocketAddr, cert: &Path, key: &Path) -> Nginx {
        let site = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/nginx/chatctl.conf"))
            .expect("reading contrib/nginx/chatctl.conf");
        let replace = |text: String, from: &str, to: &str| {
            assert!(text.contains(from), "contrib/nginx/chatctl.conf no longer has {from:?}; update this test");
            text.replace(from, to)
        };
        let site = replace(site, "listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"));
        let site = replace(site, "listen [::]:443 ssl;", "");
        let site = replace(site, "/etc/ssl/certs/chat.example.com.pem", &cert.display().to_string());
        let site = replace(site, "/etc/ssl/private/chat.example.com.key", &key.display().to_string());
        let site = replace(
            site,
            "proxy_pass http://127.0.0.1:8000;",
            &format!("proxy_pass http://{upstream};\n        proxy_bind {PROXY_SOURCE};"),
        );
        let d = dir.display();
        // One process (no master, no user switch): the test's files are the
        // test's own, and nothing outside the temporary dir is touched.
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let nginx = Nginx { child, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen within 10 s: {}", nginx.error_log());
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_with_tls_a_crowd_signs_in_and_chats_and_metrics_stay_private() {
    let Some(binary) = nginx_binary() else { return };
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("chatctl test CA");
    let (cert, key) = ca.write_server_pair(files.path());
    let port = free_port();
    let public_url = format!("https://127.0.0.1:{port}");

    let users: Vec<UserSpec> = (0..200).map(|i| UserSpec::new(&format!("crowd{i:03}")).signed_out()).collect();
    let public = public_url.clone();
    let app = spawn_app_with(&users, move |config: &mut ServerConfig| {
        config.trusted_proxies = TrustedProxies::new(vec![TrustedProxies::parse_range(PROXY_SOURCE).unwrap()]);
        config.public_url = Some(public.parse().unwrap());
    })
    .await;
    let nginx = Nginx::start(&binary, files.path(), port, app.server.addr, &cert, &key);
    let through_nginx = Client::with_roots(&public_url, vec![ca.der()]).unwrap();

    // 200 people sign in from one address, twenty at a time: none is refused.
    let mut signed_in = Vec::new();
    let mut refused = Vec::new();
    for batch in 0..10 {
        let logins: Vec<_> = (0..20)
            .map(|i| {
                let mut client = through_nginx.anonymous();
                tokio::spawn(async move {
                    let name = format!("crowd{:03}", batch * 20 + i);
                    let answer = client.login(&name, &password_of(&name)).await.unwrap();
                    (name, answer, client)
                })
            })
            .collect();
        for login in logins {
            let (name, answer, client) = login.await.unwrap();
            if answer.status == 200 {
                let cookie = set_cookie_for(&answer.headers, "chatctl_session").unwrap();
                assert!(cookie_attributes(&cookie).iter().any(|a| a == "secure"), "{cookie}");
                signed_in.push(client);
            } else {
                refused.push((name, answer.status));
            }
        }
    }
    assert!(refused.is_empty(), "sign-ins refused through nginx: {refused:?}\n{}", nginx.error_log());

    // 50 of them open wss:// sockets with the public Origin and all get a message.
    let mut sockets = Vec::new();
    for client in signed_in.iter().take(50) {
        let (socket, _history) = match client.connect("/ws/chat/lobby/", Some(&public_url)).await {
            Ok(mut socket) => {
                let history = socket.next_of_type("history", WAIT).await.unwrap();
                (socket, history)
            }
            Err(error) => panic!("wss through nginx refused: {error}\n{}", nginx.error_log()),
        };
        sockets.push(socket);
    }
    sockets[0].send_message("hello through nginx", None).await.unwrap();
    for socket in &mut sockets {
        let frame = socket.next_of_type("chat_handler", WAIT).await.unwrap();
        assert_eq!(frame["message"], "hello through nginx");
    }
    assert_refused(
        signed_in[0].connect("/ws/chat/lobby/", Some("https://evil.example")).await,
        403,
        "a foreign Origin through nginx",
    );

    // /metrics: refused through the proxy, served on the machine itself.
    assert_eq!(through_nginx.get("/metrics").await.unwrap().status, 403);
    assert_eq!(app.anonymous().get("/metrics").await.unwrap().status, 200);

    // A client naming another address in X-Forwarded-For is still itself:
    // its failures throttle it, and a spoofed header buys no new allowance.
    let mut statuses = Vec::new();
    for i in 0..21 {
        let spoofed = format!("192.0.2.{i}");
        let body = serde_json::json!({"username": format!("ghost{i}"), "password": "wrong-password-1"});
        let answer = through_nginx
            .send(
                hyper::Method::POST,
                "/api/login",
                &[("content-type", "application/json"), ("x-forwarded-for", &spoofed)],
                bytes::Bytes::from(body.to_string()),
            )
            .await
            .unwrap();
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    drop(nginx);
}
