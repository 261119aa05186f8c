//! The admin commands on cluster nodes, through the real binary and a real
//! RabbitMQ: `createsuperuser --amqp-url` seeding a fresh data dir, commands
//! reaching a running node and every node applying them, a node's backup
//! seeding a new node that catches up from its offset, and a joining node
//! not offering the setup URL of a cluster that has accounts. Without a
//! broker each test says SKIPPED and returns.

mod admin_support;
mod cluster_support;
mod common;

use std::path::Path;
use std::time::Duration;

use admin_support::{assert_ok, chatctl, closed, code, dir_arg, stderr};
use chatctl::client::Client;
use chatctl::config::ServerConfig;
use chatctl::log::cluster::ClusterConfig;
use chatctl::startup::RunningServer;
use cluster_support::{
    broker, full_history, poll, sign_in, start_ready_node, wait_ready, ChildNode, TestStream, SETTLE,
};
use common::{join, password_of, say};

/// An in-process node on `dir` (which may hold a copy of another node's data).
async fn start_node_on(dir: &Path, url: &str, stream: &str) -> RunningServer {
    let mut config = ServerConfig::ephemeral(dir);
    config.message_rate = 0;
    config.shutdown_grace = Duration::from_secs(5);
    config.cluster =
        Some(ClusterConfig { url: url.to_owned(), stream: stream.to_owned(), max_age: None, max_bytes: None });
    chatctl::startup::start(config).await.expect("a cluster node starts on the data dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn createsuperuser_with_amqp_url_seeds_a_data_dir_that_serves_and_other_nodes_know_the_account() {
    let test = "createsuperuser_with_amqp_url_seeds_a_data_dir_that_serves_and_other_nodes_know_the_account";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let cluster_flags = ["--amqp-url", broker.url.as_str(), "--amqp-stream", stream.name.as_str()];
    let args = ["createsuperuser", "--no-input", "--username", "root", "--password-stdin", "--data-dir", &d];
    let output = chatctl(&[&args[..], &cluster_flags[..]].concat(), Some(&format!("{}\n", password_of("root")))).await;
    assert_ok(&output, "createsuperuser --amqp-url into a fresh data dir");
    for (name, status, reason) in [("ROOT", 1, "already taken"), ("..", 2, "only of dots")] {
        let args = ["createsuperuser", "--no-input", "--username", name, "--password-stdin", "--data-dir", &d];
        let refused = chatctl(&[&args[..], &cluster_flags[..]].concat(), Some("Quiet-Harbor-2026\n")).await;
        assert_eq!(code(&refused), status, "{name}: {}", stderr(&refused));
        assert!(stderr(&refused).contains(reason), "{name}: {}", stderr(&refused));
    }

    // Without --amqp-url the stopped node's data dir is refused with the fix.
    let refused = chatctl(&["users", "deactivate", "root", "--data-dir", &d], None).await;
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--amqp-url"), "{}", stderr(&refused));
    // Reading needs no log.
    assert_ok(&chatctl(&["users", "list", "--data-dir", &d], None).await, "users list on a stopped cluster node");

    let seeded = start_node_on(dir.path(), &broker.url, &stream.name).await;
    let seeded_client = Client::new(&seeded.url()).unwrap();
    wait_ready(&seeded_client).await.expect("the seeded node gets ready");
    assert!(seeded.setup_url_when_ready().await.is_none(), "the seeded node offers setup although root exists");
    sign_in(&seeded.url(), "root").await;

    let other = start_ready_node(&broker.url, &stream.name).await;
    let root = other.sign_in("root").await;
    let (_, me) = root.get_json("/api/me").await.unwrap();
    assert_eq!(me["is_superuser"], true);
    assert!(other.server.setup_url.is_none());
    assert!(other.server.setup_url_when_ready().await.is_none());
    other.stop().await;
    seeded.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_a_cluster_with_accounts_prints_no_setup_url() {
    let Some(broker) = broker("a_node_joining_a_cluster_with_accounts_prints_no_setup_url").await else { return };
    let stream = TestStream::new(&broker.url);
    let first = start_ready_node(&broker.url, &stream.name).await;
    let offered = tokio::time::timeout(SETTLE, first.server.setup_url_when_ready()).await.expect("ready in time");
    assert!(offered.is_some(), "the first node of an empty cluster offers no setup URL");
    first.create_user("alice").await;

    let scratch = tempfile::tempdir().unwrap();
    let joining =
        ChildNode::spawn(&scratch.path().join("data"), &broker.url, &stream.name, &scratch.path().join("log"));
    let client = Client::new(&joining.url()).unwrap();
    let ready = poll(SETTLE, || {
        let client = client.clone();
        async move { wait_ready(&client).await.ok() }
    })
    .await;
    assert!(ready.is_some(), "the joining node never got ready:\n{}", joining.output());
    sign_in(&joining.url(), "alice").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!joining.output().contains("/setup?token="), "a joining node printed a setup URL:\n{}", joining.output());
    drop(joining);
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_reach_a_running_cluster_node_and_every_node_applies_them() {
    let test = "admin_commands_reach_a_running_cluster_node_and_every_node_applies_them";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let one = start_ready_node(&broker.url, &stream.name).await;
    let two = start_ready_node(&broker.url, &stream.name).await;
    one.create_user("bob").await;
    let bob = two.sign_in("bob").await;
    let (mut ws, _) = join(&bob, "/ws/chat/lobby/").await;
    let d = dir_arg(one.dir.path());

    let output =
        chatctl(&["changepassword", "bob", "--password-stdin", "--data-dir", &d], Some("Maple-Orbit-71\n")).await;
    assert_ok(&output, "changepassword through node one");
    assert_eq!(closed(&mut ws).await, (1008, "signed out".to_owned()), "bob's socket on node two");
    let mut fresh = Client::new(&two.url()).unwrap();
    assert_eq!(fresh.login("bob", "Maple-Orbit-71").await.unwrap().status, 200, "the new password on node two");
    let (mut ws, _) = join(&fresh, "/ws/chat/lobby/").await;

    assert_ok(&chatctl(&["users", "deactivate", "bob", "--data-dir", &d], None).await, "deactivate through node one");
    assert_eq!(closed(&mut ws).await, (1008, "account deactivated".to_owned()), "bob's socket on node two");
    let unknown = chatctl(&["users", "activate", "nobody", "--data-dir", &d], None).await;
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_nodes_backup_seeds_a_new_node_that_catches_up_from_its_offset() {
    let test = "a_cluster_nodes_backup_seeds_a_new_node_that_catches_up_from_its_offset";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let one = start_ready_node(&broker.url, &stream.name).await;
    one.create_user("alice").await;
    let alice = one.sign_in("alice").await;
    let (mut ws, _) = join(&alice, "/ws/chat/lobby/").await;
    for i in 0..20 {
        say(&mut ws, &format!("before {i}")).await;
    }
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("node-one.redb");
    let output = chatctl(&["backup", "--data-dir", &dir_arg(one.dir.path()), "--to", &dir_arg(&file)], None).await;
    assert_ok(&output, "backup of a running cluster node");
    assert!(String::from_utf8_lossy(&output.stdout).contains("stream offset"), "the backup does not say its offset");
    for i in 0..20 {
        say(&mut ws, &format!("after {i}")).await;
    }
    let restored = out.path().join("node-three");
    let output = chatctl(&["restore", "--data-dir", &dir_arg(&restored), "--from", &dir_arg(&file)], None).await;
    assert_ok(&output, "restore of a cluster node's backup");

    let three = start_node_on(&restored, &broker.url, &stream.name).await;
    wait_ready(&Client::new(&three.url()).unwrap()).await.expect("the seeded node catches up");
    let on_three = sign_in(&three.url(), "alice").await;
    let history = full_history(&on_three, "lobby").await.unwrap();
    let on_one = full_history(&alice, "lobby").await.unwrap();
    let texts: Vec<&str> = history.iter().map(|m| m["message"].as_str().unwrap_or_default()).collect();
    let expected: Vec<String> =
        (0..20).map(|i| format!("before {i}")).chain((0..20).map(|i| format!("after {i}"))).collect();
    assert_eq!(texts, expected, "the seeded node's history");
    assert_eq!(cluster_support::ids(&history), cluster_support::ids(&on_one), "ids differ between the nodes");
    three.shutdown().await;
    one.stop().await;
}
