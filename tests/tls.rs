//! TLS built in: `serve --tls-cert/--tls-key` speaks HTTPS and WSS, swaps its
//! certificate on reload (SIGHUP), refuses bad pairs, and `smoke-test`
//! checks an https:// deployment. Certificates are made here with rcgen.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chatctl::client::Client;
use chatctl::config::{ServerConfig, TlsFiles};
use chatctl::startup::RunningServer;
use common::certs::Ca;
use common::{create_users, password_of, raw_exchange, raw_status, UserSpec, WAIT};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A data dir with users, and `cert.pem` / `key.pem` beside it.
struct Setup {
    dir: TempDir,
    files: TlsFiles,
}

impl Setup {
    fn new(users: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<UserSpec> = users.iter().map(|name| UserSpec::new(name)).collect();
        create_users(&dir.path().join("data"), &specs);
        let files = TlsFiles { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
        Setup { dir, files }
    }

    fn write_pair(&self, (cert, key): &(String, String)) {
        std::fs::write(&self.files.cert, cert).unwrap();
        std::fs::write(&self.files.key, key).unwrap();
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::ephemeral(self.dir.path().join("data"));
        config.tls = Some(self.files.clone());
        config
    }

    async fn start(&self) -> RunningServer {
        chatctl::startup::start(self.config()).await.expect("the TLS server starts")
    }
}

/// A client of `server` that trusts `ca` (and the system's roots).
fn trusting(server: &RunningServer, ca: &Ca) -> Client {
    Client::with_roots(&server.url(), vec![ca.der()]).unwrap()
}

async fn signed_in(server: &RunningServer, ca: &Ca, name: &str) -> Client {
    let mut client = trusting(server, ca);
    let answer = client.login(name, &password_of(name)).await.expect("POST /api/login over https");
    assert_eq!(answer.status, 200, "{name} could not sign in: {}", answer.text());
    client
}

async fn assert_healthy(client: &Client) {
    let health = client.get("/healthz").await.expect("GET /healthz over https");
    assert_eq!((health.status.as_u16(), health.text().as_str()), (200, "ok"));
}

/// Whether a fresh client trusting only `ca` gets through the handshake.
async fn handshake_trusting(server: &RunningServer, ca: &Ca) -> anyhow::Result<()> {
    trusting(server, ca).get("/healthz").await.map(drop)
}

#[tokio::test]
async fn https_serves_pages_with_secure_cookies_and_https_urls() {
    let ca = Ca::new("chatctl test CA");
    let setup = Setup::new(&["alice"]);
    setup.write_pair(&ca.server_pair());
    let server = setup.start().await;
    assert!(server.url().starts_with("https://127.0.0.1:"), "url {}", server.url());
    assert_healthy(&trusting(&server, &ca)).await;

    let mut alice = trusting(&server, &ca);
    let login = alice.login("alice", &password_of("alice")).await.unwrap();
    assert_eq!(login.status, 200, "{}", login.text());
    let cookie = common::set_cookie_for(&login.headers, "chatctl_session").expect("a session cookie");
    assert!(common::cookie_attributes(&cookie).contains(&"secure".to_owned()), "cookie without Secure: {cookie}");
    let me = alice.get_json("/api/me").await.unwrap();
    assert_eq!((me.0.as_u16(), me.1["username"].as_str()), (200, Some("alice")));
    server.shutdown().await;

    // With no account yet, the printed setup URL is https too.
    let empty = Setup::new(&[]);
    empty.write_pair(&ca.server_pair());
    let server = empty.start().await;
    let setup_url = server.setup_url.clone().expect("a setup URL while no account exists");
    assert!(setup_url.starts_with(&format!("{}/setup?token=", server.url())), "{setup_url}");
    assert!(setup_url.starts_with("https://"), "{setup_url}");
    server.shutdown().await;
}

#[tokio::test]
async fn signed_in_users_chat_over_wss_and_the_origin_is_https() {
    let ca = Ca::new("chatctl test CA");
    let setup = Setup::new(&["alice", "bob"]);
    setup.write_pair(&ca.server_pair());
    let server = setup.start().await;
    let alice = signed_in(&server, &ca, "alice").await;
    let bob = signed_in(&server, &ca, "bob").await;

    // A page of this server has the origin https://host:port; http:// is foreign.
    let own_origin = format!("https://{}", server.addr);
    let mut alice_ws = alice.connect("/ws/chat/lobby/", Some(&own_origin)).await.expect("alice's wss socket");
    let (mut bob_ws, _) = common::join(&bob, "/ws/chat/lobby/").await;
    assert_eq!(alice_ws.next_json(WAIT).await.unwrap()["type"], "history");
    common::assert_refused(
        alice.connect("/ws/chat/lobby/", Some(&format!("http://{}", server.addr))).await,
        403,
        "an http:// origin on an https server",
    );

    alice_ws.send_message("over TLS", Some("t1")).await.unwrap();
    let got = bob_ws.next_of_type("chat_handler", WAIT).await.unwrap();
    assert_eq!((got["message"].as_str(), got["author"].as_str()), (Some("over TLS"), Some("alice")));
    let echo = alice_ws.next_of_type("chat_handler", WAIT).await.unwrap();
    assert_eq!(echo["client_id"], "t1");
    common::leave(alice_ws).await;
    common::leave(bob_ws).await;
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_told_to_use_https_and_serving_goes_on() {
    let ca = Ca::new("chatctl test CA");
    let setup = Setup::new(&[]);
    setup.write_pair(&ca.server_pair());
    let server = setup.start().await;

    let answer = raw_exchange(server.addr, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    assert_eq!(raw_status(&answer), Some(400), "{answer}");
    assert!(answer.contains("use https://"), "{answer}");
    let plain = Client::new(&format!("http://{}", server.addr)).unwrap().get("/healthz").await;
    assert!(plain.as_ref().map_or(true, |a| a.status == 400), "plain HTTP was served: {plain:?}");
    // Neither TLS nor HTTP: at most a TLS alert, then the connection ends.
    let garbage = raw_exchange(server.addr, b"\x00\x01\x02\x03 garbage\r\n\r\n").await;
    assert!(garbage.as_ref().map_or(true, |a| !a.contains("HTTP/")), "{garbage:?}");

    assert_healthy(&trusting(&server, &ca)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_at_the_deadline() {
    let ca = Ca::new("chatctl test CA");
    let setup = Setup::new(&[]);
    setup.write_pair(&ca.server_pair());
    let server = setup.start().await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Others are served while it stalls.
    assert_healthy(&trusting(&server, &ca)).await;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the stalled connection was kept open: {closed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_the_next_handshake() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let setup = Setup::new(&[]);
    setup.write_pair(&old_ca.server_pair());
    let server = setup.start().await;
    handshake_trusting(&server, &old_ca).await.expect("the old CA is trusted before the reload");
    let refused = handshake_trusting(&server, &new_ca).await.expect_err("a client of the new CA only, before");
    assert!(format!("{refused:#}").contains("not trusted"), "{refused:#}");

    setup.write_pair(&new_ca.server_pair());
    server.reload_tls().await.expect("the renewed pair loads");
    handshake_trusting(&server, &new_ca).await.expect("the new CA is trusted after the reload");
    let refused = handshake_trusting(&server, &old_ca).await.expect_err("a client of the old CA only, after");
    assert!(format!("{refused:#}").contains("--ca-cert"), "{refused:#}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_pair_on_reload_is_refused_and_the_old_one_stays() {
    let ca = Ca::new("chatctl test CA");
    let setup = Setup::new(&[]);
    let pair = ca.server_pair();
    setup.write_pair(&pair);
    let server = setup.start().await;

    // A key that is not the certificate's.
    let (_, other_key) = ca.server_pair();
    std::fs::write(&setup.files.key, &other_key).unwrap();
    let error = server.reload_tls().await.expect_err("a mismatched key").to_string();
    assert!(error.contains("does not belong") && error.contains("key.pem"), "{error}");
    handshake_trusting(&server, &ca).await.expect("the old pair still serves");

    // A certificate file that is not PEM, and one that is gone.
    std::fs::write(&setup.files.key, &pair.1).unwrap();
    std::fs::write(&setup.files.cert, "not a certificate").unwrap();
    let error = server.reload_tls().await.expect_err("a cert that is not PEM").to_string();
    assert!(error.contains("cert.pem") && error.contains("no PEM certificate"), "{error}");
    std::fs::remove_file(&setup.files.cert).unwrap();
    let error = server.reload_tls().await.expect_err("a missing cert").to_string();
    assert!(error.contains("cannot read --tls-cert") && error.contains("cert.pem"), "{error}");
    handshake_trusting(&server, &ca).await.expect("the old pair still serves");
    server.shutdown().await;
}

#[tokio::test]
async fn start_refuses_unusable_files_naming_them() {
    let ca = Ca::new("chatctl test CA");
    let setup = Setup::new(&[]);
    let (cert, key) = ca.server_pair();
    let expect_refused = |files: TlsFiles, says: &'static [&'static str]| {
        let mut config = setup.config();
        config.tls = Some(files);
        async move {
            let error = match chatctl::startup::start(config).await {
                Ok(server) => {
                    server.shutdown().await;
                    panic!("started with unusable files; expected {says:?}");
                }
                Err(error) => error.to_string(),
            };
            for part in says {
                assert!(error.contains(part), "{error:?} does not say {part:?}");
            }
        }
    };
    let (cert_path, key_path) = (setup.write("c.pem", &cert), setup.write("k.pem", &key));
    let missing = setup.dir.path().join("missing.pem");
    let files = |cert: &Path, key: &Path| TlsFiles { cert: cert.to_owned(), key: key.to_owned() };
    expect_refused(files(&missing, &key_path), &["cannot read --tls-cert", "missing.pem"]).await;
    expect_refused(files(&cert_path, &missing), &["cannot read --tls-key", "missing.pem"]).await;
    expect_refused(files(&key_path, &cert_path), &["k.pem", "swapped"]).await;
    let other_key = setup.write("other.pem", &ca.server_pair().1);
    expect_refused(files(&cert_path, &other_key), &["other.pem", "does not belong", "c.pem"]).await;
    let truncated = setup.write("cut.pem", &cert[..cert.len() / 2]);
    expect_refused(files(&truncated, &key_path), &["cut.pem", "not valid PEM"]).await;
}

/// Runs the built `chatctl` with these arguments; (success, stdout + stderr).
async fn chatctl(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatctl")).args(&args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_test_passes_over_https_with_the_ca_and_names_the_fix_without() {
    let ca = Ca::new("chatctl smoke CA");
    let setup = Setup::new(&["alice", "bob"]);
    setup.write_pair(&ca.server_pair());
    let ca_path = setup.write("ca.pem", &ca.pem());
    let server = setup.start().await;
    let mut args = vec!["smoke-test".to_owned(), "--url".to_owned(), server.url()];
    for name in ["alice", "bob"] {
        args.extend(["--user".to_owned(), format!("{name}:{}", password_of(name))]);
    }

    let (ok, output) = chatctl([args.clone(), vec!["--ca-cert".into(), ca_path.display().to_string()]].concat()).await;
    assert!(ok && output.contains(" 0 failed"), "smoke-test with --ca-cert failed:\n{output}");
    assert!(output.contains("ok      messages both ways arrive once"), "{output}");

    let (ok, output) = chatctl(args).await;
    assert!(!ok, "smoke-test passed without trusting the CA:\n{output}");
    assert!(output.contains("not trusted") && output.contains("--ca-cert"), "{output}");
    server.shutdown().await;
}

/// A `chatctl serve` process, killed if the test ends early.
struct ServeProcess(std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (HUP, TERM) to the process.
fn signal(process: &ServeProcess, signal: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(process.0.id().to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_serve_load_the_renewed_certificate() {
    use std::io::BufRead;
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let setup = Setup::new(&[]);
    setup.write_pair(&old_ca.server_pair());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatctl"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(setup.dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&setup.files.cert)
        .arg("--tls-key")
        .arg(&setup.files.key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = ServeProcess(child);
    let url = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("chatctl is serving at ").map(str::to_owned));
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        url
    })
    .await
    .unwrap()
    .expect("serve prints its URL");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let fresh = |ca: &Ca| Client::with_roots(&url, vec![ca.der()]).unwrap();
    assert_healthy(&fresh(&old_ca)).await;

    setup.write_pair(&new_ca.server_pair());
    signal(&process, "HUP");
    let deadline = tokio::time::Instant::now() + WAIT;
    while fresh(&new_ca).get("/healthz").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "SIGHUP did not load the new certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fresh(&old_ca).get("/healthz").await.is_err(), "the old certificate is still served");
    signal(&process, "TERM");
}
