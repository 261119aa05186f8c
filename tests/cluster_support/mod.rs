//! What the multi-node tests share: a RabbitMQ to run against (the URL in
//! `CHATCTL_TEST_AMQP_URL`, else a testcontainers broker, else the test is
//! skipped loudly), nodes started in-process or as child processes, each
//! test's own stream (deleted when the test ends, even when it fails), a
//! TCP proxy that can take the broker away from one node, and bounded polls.
//! Each test binary uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use chatctl::client::{ChatSocket, Client};
use chatctl::config::ServerConfig;
use chatctl::log::cluster::ClusterConfig;
use chatctl::log::write::{Outcome, Write};
use chatctl::startup::RunningServer;
use chatctl::storage::{now_ms, UserRecord};
use serde_json::Value;
use tempfile::TempDir;
use testcontainers_modules::rabbitmq::RabbitMq;
use testcontainers_modules::testcontainers::core::{CmdWaitFor, ExecCommand};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::common::password_of;

/// How long a poll waits for something that should happen (a node getting
/// ready, catching up, reconnecting) before the test fails.
pub const SETTLE: Duration = Duration::from_secs(30);
/// How long a sender waits for the answer (echo or error) to one message.
/// Longer than a reconnect's backoff: a write in flight during an outage is
/// answered after the reconnect.
pub const ANSWER: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- broker

/// The RabbitMQ a test runs against; a container lives as long as this.
pub struct Broker {
    pub url: String,
    container: Option<ContainerAsync<RabbitMq>>,
}

/// The broker for `test`, or `None` (after a loud line on stderr) when none
/// can be had: the test then returns early.
pub async fn broker(test: &str) -> Option<Broker> {
    if let Ok(url) = std::env::var("CHATCTL_TEST_AMQP_URL") {
        if !url.trim().is_empty() {
            return Some(Broker { url: url.trim().to_owned(), container: None });
        }
    }
    if docker_answers().await {
        // The module's default tag (3.8) predates streams (3.9): pin one that has them.
        let container = RabbitMq::default()
            .with_tag("3.13-management")
            .start()
            .await
            .unwrap_or_else(|e| panic!("{test}: Docker answers but the RabbitMQ container did not start: {e}"));
        let host = container.get_host().await.expect("the container's host");
        let port = container.get_host_port_ipv4(5672).await.expect("the container's AMQP port");
        return Some(Broker { url: format!("amqp://guest:guest@{host}:{port}/%2f"), container: Some(container) });
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of tests that pass.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no RabbitMQ (set CHATCTL_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f, or run a Docker engine)"
    );
    None
}

/// Whether a Docker engine answers `/_ping` (testcontainers fails at once
/// without one, so look before using it).
async fn docker_answers() -> bool {
    let ping = async {
        let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
        let mut answer = Vec::new();
        match std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
            Some(host) if host.starts_with("tcp://") => {
                let authority = host.trim_start_matches("tcp://").trim_end_matches('/');
                let mut stream = TcpStream::connect(authority).await.ok()?;
                stream.write_all(request).await.ok()?;
                stream.read_to_end(&mut answer).await.ok()?;
            }
            Some(host) if host.starts_with("unix://") => {
                let mut stream = tokio::net::UnixStream::connect(host.trim_start_matches("unix://")).await.ok()?;
                stream.write_all(request).await.ok()?;
                stream.read_to_end(&mut answer).await.ok()?;
            }
            Some(_) => return None,
            None => {
                let mut stream = tokio::net::UnixStream::connect("/var/run/docker.sock").await.ok()?;
                stream.write_all(request).await.ok()?;
                stream.read_to_end(&mut answer).await.ok()?;
            }
        }
        Some(String::from_utf8_lossy(&answer).starts_with("HTTP/1.") && answer.ends_with(b"OK"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), ping).await, Ok(Some(true)))
}

impl Broker {
    /// Runs `rabbitmqctl` with `args` where the broker runs: inside the
    /// container, or on this machine (`CHATCTL_TEST_RABBITMQCTL` names
    /// another program).
    pub async fn rabbitmqctl(&self, args: &[&str]) -> anyhow::Result<String> {
        if let Some(container) = &self.container {
            let mut command = vec!["rabbitmqctl".to_owned()];
            command.extend(args.iter().map(|a| (*a).to_owned()));
            let mut result = container
                .exec(ExecCommand::new(command).with_cmd_ready_condition(CmdWaitFor::exit()))
                .await
                .context("rabbitmqctl in the container")?;
            let out = String::from_utf8_lossy(&result.stdout_to_vec().await?).into_owned();
            let code = result.exit_code().await?;
            ensure!(code == Some(0), "rabbitmqctl {args:?} exited with {code:?}: {out}");
            return Ok(out);
        }
        let program = std::env::var("CHATCTL_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let output = tokio::task::spawn_blocking(move || Command::new(&program).args(&args).output())
            .await?
            .context("running rabbitmqctl (is it on PATH? CHATCTL_TEST_RABBITMQCTL names another)")?;
        ensure!(
            output.status.success(),
            "rabbitmqctl exited with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `host:port` of the broker's AMQP listener.
    pub async fn address(&self) -> SocketAddr {
        let authority = amqp_authority(&self.url);
        tokio::net::lookup_host(authority.as_str())
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .unwrap_or_else(|| panic!("cannot resolve the broker address {authority}"))
    }
}

/// The `host:port` of an `amqp://user:pass@host:port/vhost` URL.
fn amqp_authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split('/').next().unwrap_or_default();
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if host_port.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

/// `url` with its host and port replaced by `authority`.
pub fn with_authority(url: &str, authority: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
    let (before_path, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let user = before_path.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}{authority}/{path}")
}

/// `url` with its virtual host replaced by `vhost`.
pub fn with_vhost(url: &str, vhost: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
    let before_path = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{before_path}/{vhost}")
}

/// The user name in an `amqp://` URL (`guest` when none is given).
pub fn amqp_user(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let before_path = rest.split('/').next().unwrap_or_default();
    match before_path.rsplit_once('@') {
        Some((user, _)) => user.split(':').next().unwrap_or("guest").to_owned(),
        None => "guest".to_owned(),
    }
}

/// A short random name part.
pub fn random_suffix() -> String {
    chatctl::auth::session::random_hex::<4>()
}

/// A test's own stream, deleted from the broker when this is dropped, also
/// when the test fails.
pub struct TestStream {
    pub url: String,
    pub name: String,
}

impl TestStream {
    pub fn new(url: &str) -> TestStream {
        TestStream { url: url.to_owned(), name: format!("chatctl.test.{}", random_suffix()) }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop cannot await: delete from a thread with its own runtime.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), delete_stream(&url, &name)).await })
                .ok()
        })
        .join();
        if !matches!(deleted, Ok(Some(Ok(())))) {
            eprintln!("note: could not delete the test stream {}", self.name);
        }
    }
}

/// Deletes a stream queue (lapin `queue_delete`).
pub async fn delete_stream(url: &str, stream: &str) -> anyhow::Result<()> {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.queue_delete(stream.into(), lapin::options::QueueDeleteOptions::default()).await?;
    connection.close(200, "test done".into()).await?;
    Ok(())
}

// ---------------------------------------------------------------- nodes

/// A node running in this process.
pub struct Node {
    pub server: RunningServer,
    pub config: ServerConfig,
    /// Dropped last: the server must stop before its directory goes.
    pub dir: TempDir,
}

/// Starts a node on `stream` through the broker at `amqp_url`, with an
/// empty data dir and the per-user rate limit off.
pub async fn start_node(amqp_url: &str, stream: &str) -> Node {
    let dir = tempfile::tempdir().expect("creating a temporary data dir");
    let mut config = ServerConfig::ephemeral(dir.path());
    config.message_rate = 0;
    config.shutdown_grace = Duration::from_secs(5);
    config.cluster =
        Some(ClusterConfig { url: amqp_url.to_owned(), stream: stream.to_owned(), max_age: None, max_bytes: None });
    let server = chatctl::startup::start(config.clone()).await.expect("a cluster node starts");
    Node { server, config, dir }
}

/// Starts a node and waits until it is ready.
pub async fn start_ready_node(amqp_url: &str, stream: &str) -> Node {
    let node = start_node(amqp_url, stream).await;
    wait_ready(&node.anonymous()).await.expect("the node gets ready");
    node
}

impl Node {
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn anonymous(&self) -> Client {
        Client::new(&self.url()).expect("the node URL is http://")
    }

    /// Creates `username` (password `password_of(username)`) through this
    /// node's log, as `smoke-test` does.
    pub async fn create_user(&self, username: &str) {
        let hash = chatctl::auth::password::hash(&password_of(username));
        let outcome = self.claim_username(username, &hash).await;
        assert!(matches!(outcome, Ok(Outcome::Applied)), "creating {username}: {outcome:?}");
    }

    /// Submits a `CreateUser` write with this password hash and returns
    /// what applying it came to on this node.
    pub async fn claim_username(&self, username: &str, password_hash: &str) -> Result<Outcome, chatctl::log::LogError> {
        let user = UserRecord {
            username: chatctl::domain::Username::parse(username).expect("a valid test username"),
            email: String::new(),
            password_hash: password_hash.to_owned(),
            is_superuser: false,
            is_active: true,
            created_at_ms: now_ms(),
        };
        self.server.app().log.apply(Write::CreateUser { user, only_if_first: false }).await
    }

    /// A client of `username` signed in on this node, once this node has
    /// applied the account (it may have been created through another node).
    /// Login attempts are throttled per address, so this does not retry.
    pub async fn sign_in(&self, username: &str) -> Client {
        self.wait_for_user(username).await;
        sign_in(&self.url(), username).await
    }

    /// Waits until this node's storage holds `username`.
    pub async fn wait_for_user(&self, username: &str) -> UserRecord {
        let store = self.server.app().store.clone();
        poll(SETTLE, || {
            let (store, username) = (store.clone(), username.to_owned());
            async move { tokio::task::spawn_blocking(move || store.user(&username)).await.ok()?.ok()? }
        })
        .await
        .unwrap_or_else(|| panic!("{} never learned the account {username}", self.url()))
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        drop(self.dir);
    }
}

/// Signs `username` in at `url` (which must know the account) with one attempt.
pub async fn sign_in(url: &str, username: &str) -> Client {
    let mut client = Client::new(url).expect("the node URL is http://");
    let answer = client.login(username, &password_of(username)).await.expect("POST /api/login answers");
    assert_eq!(answer.status, 200, "{username} could not sign in at {url}: {}", answer.text());
    client
}

/// Polls `check` every 50 ms until it gives `Some`, for at most `within`.
pub async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/readyz` of a node: its status and JSON body.
pub async fn readyz(node: &Client) -> anyhow::Result<(u16, Value)> {
    let (status, body) = node.get_json("/readyz").await?;
    Ok((status.as_u16(), body))
}

/// Waits until `/readyz` answers 200 `{"status": "ready"}`.
pub async fn wait_ready(node: &Client) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let answer = readyz(node).await;
        if matches!(&answer, Ok((200, body)) if body["status"] == "ready") {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{} not ready within {SETTLE:?}; last /readyz: {answer:?}",
            node.authority()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole history of `room` from the history API, oldest first, paging
/// back with `before` (so no id is assumed to exist).
pub async fn full_history(client: &Client, room: &str) -> anyhow::Result<Vec<Value>> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(id) => format!("/api/rooms/{room}/messages?limit=500&before={id}"),
            None => format!("/api/rooms/{room}/messages?limit=500"),
        };
        let (status, page) = client.get_json(&path).await?;
        ensure!(status == 200, "{path} at {} answered {status} {page}", client.authority());
        let messages = page["messages"].as_array().cloned().ok_or_else(|| anyhow!("no messages in {page}"))?;
        if messages.is_empty() {
            break;
        }
        before = messages[0]["id"].as_str().map(str::to_owned);
        let full = messages.len() == 500;
        pages.push(messages);
        if !full {
            break;
        }
    }
    Ok(pages.into_iter().rev().flatten().collect())
}

/// The `id` of a frame.
pub fn id_of(frame: &Value) -> String {
    frame["id"].as_str().unwrap_or_else(|| panic!("a frame without a string id: {frame}")).to_owned()
}

pub fn ids(frames: &[Value]) -> Vec<String> {
    frames.iter().map(id_of).collect()
}

/// Asserts the frames have distinct ids and texts, ids increasing as strings.
pub fn assert_once_each_in_order(frames: &[Value], what: &str) {
    let ids = ids(frames);
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "{what}: ids not strictly increasing: {} then {}", pair[0], pair[1]);
    }
    let mut texts: Vec<&str> = frames.iter().map(|f| f["message"].as_str().unwrap_or_default()).collect();
    texts.sort_unstable();
    let before = texts.len();
    texts.dedup();
    assert_eq!(texts.len(), before, "{what}: a message text is stored more than once");
}

/// Asserts every frame of `accepted` (messages that got an echo) is in
/// `history` exactly once, as the same frame (client_id aside).
pub fn assert_contains_each_once(history: &[Value], accepted: &[Value], what: &str) {
    for echo in accepted {
        let id = id_of(echo);
        let copies: Vec<&Value> = history.iter().filter(|m| m["id"] == echo["id"]).collect();
        assert_eq!(
            copies.len(),
            1,
            "{what}: message {id} ({}) is in the history {} times",
            echo["message"],
            copies.len()
        );
        let mut expected = echo.clone();
        if let Some(fields) = expected.as_object_mut() {
            fields.remove("client_id");
        }
        assert_eq!(copies[0], &expected, "{what}: the stored frame differs from the echo");
        let same_text = history.iter().filter(|m| m["message"] == echo["message"]).count();
        assert_eq!(same_text, 1, "{what}: the text {} is stored {same_text} times", echo["message"]);
    }
}

// ---------------------------------------------------------------- talkers

/// A socket that sends numbered messages in bursts and keeps what it saw.
pub struct Talker {
    pub name: String,
    pub ws: ChatSocket,
    /// The echoes of this talker's own messages (accepted: they got an id).
    pub echoes: Vec<Value>,
    /// The error frames answering this talker's messages.
    pub refused: Vec<Value>,
    /// Every `chat_handler` frame this socket got, in arrival order.
    pub seen: Vec<Value>,
    sent: usize,
}

impl Talker {
    /// Opens `/ws/chat/<room>/` for `client` and reads its history frame.
    pub async fn join(name: &str, client: &Client, room: &str) -> Talker {
        let (ws, _) = crate::common::join(client, &format!("/ws/chat/{room}/")).await;
        Talker { name: name.to_owned(), ws, echoes: Vec::new(), refused: Vec::new(), seen: Vec::new(), sent: 0 }
    }

    /// Sends `count` messages without waiting, then reads until each has
    /// its answer: the echo (carrying its `client_id`) or an error frame.
    /// Frames of others are kept in `seen`.
    pub async fn burst(&mut self, count: usize) -> anyhow::Result<()> {
        let first = self.sent;
        for i in first..first + count {
            let text = format!("{} {i}", self.name);
            self.ws.send_message(&text, Some(&format!("{}-{i}", self.name))).await?;
        }
        self.sent += count;
        let mut open: Vec<String> = (first..first + count).map(|i| format!("{}-{i}", self.name)).collect();
        while !open.is_empty() {
            let frame = self
                .ws
                .next_json(ANSWER)
                .await
                .with_context(|| format!("{}: waiting for the answers to {open:?}", self.name))?;
            let client_id = frame["client_id"].as_str().map(str::to_owned);
            match frame["type"].as_str() {
                Some("chat_handler") => {
                    let mut plain = frame.clone();
                    if let Some(fields) = plain.as_object_mut() {
                        fields.remove("client_id");
                    }
                    self.seen.push(plain);
                    if let Some(id) = client_id {
                        let position = open.iter().position(|o| *o == id);
                        ensure!(position.is_some(), "{}: an unexpected or second echo {frame}", self.name);
                        open.retain(|o| *o != id);
                        self.echoes.push(frame);
                    }
                }
                Some("error") => {
                    let id =
                        client_id.ok_or_else(|| anyhow!("{}: an error frame without client_id: {frame}", self.name))?;
                    ensure!(open.contains(&id), "{}: an error for no open message: {frame}", self.name);
                    open.retain(|o| *o != id);
                    self.refused.push(frame);
                }
                _ => bail!("{}: unexpected frame {frame}", self.name),
            }
        }
        Ok(())
    }

    /// Reads others' messages until `count` messages in all were seen.
    pub async fn read_until_seen(&mut self, count: usize) -> anyhow::Result<()> {
        while self.seen.len() < count {
            let frame = self
                .ws
                .next_json(ANSWER)
                .await
                .with_context(|| format!("{}: after {} of {count} messages", self.name, self.seen.len()))?;
            ensure!(frame["type"] == "chat_handler", "{}: expected a message, got {frame}", self.name);
            self.seen.push(frame);
        }
        Ok(())
    }

    /// Asserts no message reached this socket twice.
    pub fn assert_no_duplicates(&self) {
        let mut ids = ids(&self.seen);
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "{}: a message reached this socket twice", self.name);
    }
}

// ---------------------------------------------------------------- child nodes

/// A free loopback port: bound to port 0, read, and released.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("a local address").port()
}

/// `chatctl serve` as a child process (killed when this is dropped).
pub struct ChildNode {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl ChildNode {
    /// Starts `chatctl serve` on a free port with `data_dir`.
    pub fn spawn(data_dir: &Path, amqp_url: &str, stream: &str, log: &Path) -> ChildNode {
        let port = free_port();
        let output = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("opening the child's log");
        let child = Command::new(env!("CARGO_BIN_EXE_chatctl"))
            .arg("serve")
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--amqp-url", amqp_url, "--amqp-stream", stream, "--message-rate", "0"])
            .env_remove("CHATCTL_BIND")
            .env_remove("CHATCTL_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("cloning the log handle"))
            .stderr(output)
            .spawn()
            .expect("starting chatctl serve");
        ChildNode { child, port, log: log.to_owned() }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL (kill -9), and reaped.
    pub fn kill(&mut self) {
        self.child.kill().expect("killing the child node");
        self.child.wait().expect("reaping the child node");
    }

    /// The child's output so far, for a failure message.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- proxy

/// A TCP proxy in front of the broker: stopping it drops its listener and
/// every connection through it, as a broker outage would.
pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let proxy = Proxy { port, upstream, tasks: Arc::new(Mutex::new(Vec::new())) };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(relay.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Closes the listener and every connection.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let address = format!("127.0.0.1:{}", self.port);
        let listener = poll(SETTLE, || async { TcpListener::bind(&address).await.ok() })
            .await
            .unwrap_or_else(|| panic!("cannot listen on {address} again"));
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- vhosts

/// A virtual host of the test's own, so that closing "all" connections in
/// it touches no one else using the broker. Deleted by `delete`, or (on a
/// local broker) when dropped.
pub struct TestVhost {
    pub name: String,
    deleted: bool,
    local: bool,
}

impl TestVhost {
    /// Creates the vhost and lets the URL's user use it.
    pub async fn create(broker: &Broker) -> anyhow::Result<TestVhost> {
        let name = format!("chatctl_test_{}", random_suffix());
        broker.rabbitmqctl(&["add_vhost", &name]).await?;
        let vhost = TestVhost { name, deleted: false, local: broker.container.is_none() };
        broker.rabbitmqctl(&["set_permissions", "-p", &vhost.name, &amqp_user(&broker.url), ".*", ".*", ".*"]).await?;
        Ok(vhost)
    }

    pub async fn delete(mut self, broker: &Broker) -> anyhow::Result<()> {
        self.deleted = true;
        broker.rabbitmqctl(&["delete_vhost", &self.name]).await.map(|_| ())
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        if !self.deleted && self.local {
            let program = std::env::var("CHATCTL_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
            let _ = Command::new(program).args(["delete_vhost", &self.name]).output();
        }
    }
}
