//! A full disk: the data dir on a small tmpfs is filled while a real server
//! runs. Sends must be refused cleanly and `/readyz` say 503 while storage
//! cannot write; once space is freed the node must take writes again by
//! itself within 15 s, without a restart; and every acknowledged message
//! must still be there after a restart.
//!
//! The same on a cluster node: the node whose disk filled misses the
//! records others write meanwhile, and applies every one of them, in the
//! stream's order, once its disk takes writes again.
//!
//! Mounting needs root. Without it the test says loudly that it skipped,
//! unless `CHATCTL_REQUIRE_TMPFS=1` (set by `.ci/run`, which runs as root),
//! where it fails instead.

mod cluster_support;
mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chatctl::client::{ChatSocket, Client};
use chatctl::config::ServerConfig;
use common::{create_users, join, password_of, text_of, UserSpec};
use serde_json::Value;

/// Big enough for the database and its growth, small enough to fill fast.
const TMPFS_SIZE: &str = "24m";
/// What the issue allows between space returning and writes working.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(10);

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE},mode=0700"), "chatctl-test"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A tmpfs, or `None` after a loud SKIPPED line when none can be mounted
/// (not root) and `CHATCTL_REQUIRE_TMPFS=1` does not make that a failure.
fn tmpfs_or_skip(test: &str) -> Option<Tmpfs> {
    match Tmpfs::mount() {
        Ok(tmpfs) => Some(tmpfs),
        Err(why) if std::env::var("CHATCTL_REQUIRE_TMPFS").is_ok_and(|v| v == "1") => {
            panic!("CHATCTL_REQUIRE_TMPFS=1 but a tmpfs could not be mounted: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED disk_full {test}: cannot mount a tmpfs ({why}); run as root, or set CHATCTL_REQUIRE_TMPFS=1 to fail instead");
            None
        }
    }
}

/// Fills the file system holding `dir` with one file, to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("creating the filler file");
    let block = vec![0xA5u8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // Fill the last partial block too.
    while file.write(&[0xA5]).is_ok_and(|n| n == 1) {}
    let _ = file.sync_all();
    filler
}

async fn readyz(client: &Client) -> (u16, Value) {
    let answer = client.get("/readyz").await.expect("GET /readyz answers");
    let status = answer.status.as_u16();
    (status, answer.json().unwrap_or(Value::Null))
}

/// Sends `text` and returns the first frame about it: its echo, or an error.
async fn send_and_answer(ws: &mut ChatSocket, text: &str) -> Value {
    ws.send_message(text, None).await.expect("sending a message");
    loop {
        let frame = ws.next_json(WAIT).await.unwrap_or_else(|e| panic!("no answer to {text:?}: {e:#}"));
        if frame["type"] == "error" || (frame["type"] == "chat_handler" && text_of(&frame) == text) {
            return frame;
        }
    }
}

async fn start(data_dir: &Path) -> (chatctl::startup::RunningServer, Client) {
    let mut config = ServerConfig::ephemeral(data_dir);
    config.message_rate = 0;
    let server = chatctl::startup::start(config).await.expect("the server starts");
    let mut client = Client::new(&server.url()).unwrap();
    let answer = client.login("ann", &password_of("ann")).await.expect("POST /api/login answers");
    assert_eq!(answer.status, 200, "ann could not sign in: {}", answer.text());
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_then_the_node_recovers_by_itself() {
    let Some(tmpfs) = tmpfs_or_skip("a_full_disk_refuses_writes_then_the_node_recovers_by_itself") else { return };
    let data_dir = tmpfs.path().join("data");
    create_users(&data_dir, &[UserSpec::new("ann")]);
    let (server, client) = start(&data_dir).await;
    let (mut ws, _) = join(&client, "/ws/chat/full/").await;

    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let text = format!("before {i}");
        let frame = send_and_answer(&mut ws, &text).await;
        assert_eq!(frame["type"], "chat_handler", "a send on a disk with room was refused: {frame}");
        acknowledged.push(text);
    }
    assert_eq!(readyz(&client).await.0, 200);

    // The disk fills up: /readyz says so even before a write fails.
    let filler = fill(tmpfs.path());
    let (status, body) = readyz(&client).await;
    assert_eq!(status, 503, "/readyz on a full disk: {body}");

    // Sends are refused with an error frame, never acknowledged; the
    // socket stays open. A few small ones may still fit in pages redb has.
    let mut refused = 0;
    for i in 0..200 {
        let text = format!("during {i} {}", "x".repeat(2000));
        let frame = send_and_answer(&mut ws, &text).await;
        if frame["type"] == "error" {
            assert_eq!(frame["code"], "unavailable", "{frame}");
            refused += 1;
            if refused >= 3 {
                break;
            }
        } else {
            acknowledged.push(text);
        }
    }
    assert!(refused >= 3, "200 sends of 2 KB fitted on a full disk");
    let (status, body) = readyz(&client).await;
    assert_eq!(status, 503, "/readyz while writes fail: {body}");
    let login = client.anonymous().login("ann", &password_of("ann")).await.expect("POST /api/login answers");
    assert_eq!(login.status, 503, "a sign-in needs a write: {}", login.text());

    // Space returns: writes come back by themselves, in time.
    std::fs::remove_file(&filler).expect("freeing the space");
    let freed = Instant::now();
    let recovered_text = loop {
        let text = format!("after space returned {}", freed.elapsed().as_millis());
        let frame = send_and_answer(&mut ws, &text).await;
        if frame["type"] == "chat_handler" {
            break text;
        }
        assert!(
            freed.elapsed() < RECOVERY_LIMIT,
            "writes still refused {RECOVERY_LIMIT:?} after space returned: {frame}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("writes taken again {:?} after space returned", freed.elapsed());
    acknowledged.push(recovered_text);
    assert_eq!(readyz(&client).await.0, 200, "/readyz after recovery");
    for i in 0..20 {
        let text = format!("after {i}");
        let frame = send_and_answer(&mut ws, &text).await;
        assert_eq!(frame["type"], "chat_handler", "{frame}");
        acknowledged.push(text);
    }
    let mut anonymous = client.anonymous();
    let login = anonymous.login("ann", &password_of("ann")).await.unwrap();
    assert_eq!(login.status, 200, "sign-in after recovery: {}", login.text());
    drop(ws);
    server.shutdown().await;

    // Restarted on the same files: exactly the acknowledged messages are
    // stored, in the order they were acknowledged; nothing refused is.
    let (server, client) = start(&data_dir).await;
    let (status, page) = client.get_json("/api/rooms/full/messages?after=0&limit=500").await.unwrap();
    assert_eq!(status, 200, "{page}");
    let stored: Vec<String> =
        page["messages"].as_array().expect("a page lists messages").iter().map(|m| text_of(m).to_owned()).collect();
    assert_ne!(page["more"], true, "the page did not hold every message");
    assert_eq!(stored, acknowledged, "what is stored is not what was acknowledged");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_whose_disk_filled_catches_up_once_space_returns() {
    use cluster_support::{broker, start_ready_node, wait_ready, TestStream, ANSWER};
    let test = "a_cluster_node_whose_disk_filled_catches_up_once_space_returns";
    let Some(tmpfs) = tmpfs_or_skip(test) else { return };
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let healthy = start_ready_node(&broker.url, &stream.name).await;
    let mut config = ServerConfig::ephemeral(tmpfs.path().join("data"));
    config.message_rate = 0;
    config.shutdown_grace = Duration::from_secs(5);
    config.cluster = healthy.config.cluster.clone();
    let full = chatctl::startup::start(config).await.expect("the tmpfs node starts");
    let full_client = Client::new(&full.url()).unwrap();
    wait_ready(&full_client).await.expect("the tmpfs node gets ready");
    healthy.create_user("ann").await;
    let writer = healthy.sign_in("ann").await;
    let (mut ws, _) = join(&writer, "/ws/chat/spill/").await;
    let mut sent = Vec::new();
    for i in 0..10 {
        let text = format!("before {i}");
        assert_eq!(send_and_answer(&mut ws, &text).await["type"], "chat_handler");
        sent.push(text);
    }

    let filler = fill(tmpfs.path());
    // The healthy node goes on taking writes; the full one cannot store them.
    for i in 0..50 {
        let text = format!("while full {i} {}", "y".repeat(2000));
        let frame = tokio::time::timeout(ANSWER, send_and_answer(&mut ws, &text)).await.expect("an answer");
        assert_eq!(frame["type"], "chat_handler", "the healthy node refused a write: {frame}");
        sent.push(text);
    }
    let answer = full_client.get("/readyz").await.unwrap();
    assert_eq!(answer.status.as_u16(), 503, "/readyz on the full node: {}", answer.text());

    std::fs::remove_file(&filler).expect("freeing the space");
    let freed = Instant::now();
    let last = sent.last().unwrap().clone();
    let mut reader = None;
    let texts = loop {
        if reader.is_none() && full_client.get("/readyz").await.is_ok_and(|answer| answer.status == 200) {
            reader = Some(cluster_support::sign_in(&full.url(), "ann").await);
        }
        if let Some(reader) = &reader {
            let (status, page) = reader.get_json("/api/rooms/spill/messages?after=0&limit=500").await.unwrap();
            assert_eq!(status, 200, "{page}");
            let texts: Vec<String> =
                page["messages"].as_array().unwrap().iter().map(|m| text_of(m).to_owned()).collect();
            if texts.last() == Some(&last) {
                break texts;
            }
        }
        assert!(freed.elapsed() < RECOVERY_LIMIT, "the node had not caught up {RECOVERY_LIMIT:?} after space returned");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("the node caught up {:?} after space returned", freed.elapsed());
    assert_eq!(texts, sent, "the recovered node does not hold what the cluster acknowledged, in order");
    full.shutdown().await;
    healthy.stop().await;
}
