//! Two nodes in-process, one broker: the shared checks with one user on
//! each node, then the same history on both, then a node that was down
//! catching up. The stream is a fresh one, deleted at the end.

use std::time::Duration;

use anyhow::ensure;

use super::checks::{direct_conversation, room_path, shared_checks, Signed};
use super::{Account, Report, WAIT};
use crate::client::Client;
use crate::config::ServerConfig;
use crate::log::cluster::ClusterConfig;
use crate::log::write::Write;
use crate::startup::RunningServer;

/// Runs the cluster checks against the RabbitMQ at `amqp_url`.
pub(super) async fn run(report: &mut Report, amqp_url: &str) -> anyhow::Result<()> {
    let stream = format!("chatctl.smoke.{}", crate::auth::session::random_hex::<4>());
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let config_for = |dir: &tempfile::TempDir| {
        let mut config = ServerConfig::ephemeral(dir.path());
        config.cluster =
            Some(ClusterConfig { url: amqp_url.to_owned(), stream: stream.clone(), max_age: None, max_bytes: None });
        config
    };
    let accounts = Account::smoke_users();
    let started = report
        .check(
            "two nodes start, connect to RabbitMQ and become ready",
            start_nodes([config_for(&dirs[0]), config_for(&dirs[1])]),
        )
        .await;
    let Some((first, second)) = started else {
        delete_stream(amqp_url, &stream).await;
        return Ok(());
    };
    let created = report
        .check("accounts created on one node are known on the other", create_accounts(&first, &second, &accounts))
        .await;
    let nodes = [Client::new(&first.url())?, Client::new(&second.url())?];
    let state = match created {
        Some(()) => shared_checks(report, [&nodes[0], &nodes[1]], &accounts[0], &accounts[1]).await,
        None => None,
    };
    let Some(state) = state else {
        println!("skipped the remaining checks: they build on the one that failed");
        first.shutdown().await;
        second.shutdown().await;
        delete_stream(amqp_url, &stream).await;
        return Ok(());
    };
    report
        .check(
            "a direct conversation across nodes reaches its two users and no third",
            direct_conversation(&state, &accounts[2]),
        )
        .await;
    report.check("both nodes hold identical history", identical_history(&state)).await;
    second.shutdown().await;
    report.check("a node that was down catches up on what it missed", catch_up(&state, config_for(&dirs[1]))).await;
    first.shutdown().await;
    delete_stream(amqp_url, &stream).await;
    Ok(())
}

/// Starts both nodes and waits until each has caught up on the stream.
async fn start_nodes(configs: [ServerConfig; 2]) -> anyhow::Result<(RunningServer, RunningServer)> {
    let [first, second] = configs;
    let first = crate::startup::start(first).await?;
    let second = crate::startup::start(second).await?;
    for node in [&first, &second] {
        wait_ready(&Client::new(&node.url())?).await?;
    }
    Ok((first, second))
}

/// Creates the accounts through the first node's log; the second must learn
/// them from the stream.
async fn create_accounts(first: &RunningServer, second: &RunningServer, accounts: &[Account]) -> anyhow::Result<()> {
    for account in accounts {
        first.app().log.apply(Write::CreateUser { user: account.record(), only_if_first: false }).await?;
    }
    let mut probe = Client::new(&second.url())?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while probe.login(&accounts[1].name, &accounts[1].password).await?.status != 200 {
        ensure!(tokio::time::Instant::now() < deadline, "the second node never learned the accounts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The history API path of the shared checks' room.
fn history_path(state: &Signed) -> String {
    format!("/api/rooms/{}/messages?limit=500", state.room)
}

/// Alice's node and bob's node answer the room's history identically.
async fn identical_history(state: &Signed) -> anyhow::Result<()> {
    let on_first = state.alice.get(&history_path(state)).await?.json()?;
    let on_second = state.bob.get(&history_path(state)).await?.json()?;
    ensure!(on_first["messages"].as_array().is_some_and(|m| !m.is_empty()), "no history: {on_first}");
    ensure!(on_first == on_second, "the nodes differ:\nfirst  {on_first}\nsecond {on_second}");
    Ok(())
}

/// With bob's node stopped, alice sends three messages; bob's node,
/// restarted from `config`, then holds the same history as alice's.
async fn catch_up(state: &Signed, config: ServerConfig) -> anyhow::Result<()> {
    let mut alice_ws = state.alice.connect(&room_path(&state.room), None).await?;
    alice_ws.next_of_type("history", WAIT).await?;
    for i in 0..3 {
        alice_ws.send_message(&format!("while the second node was down {i}"), None).await?;
        alice_ws.next_of_type("chat_handler", WAIT).await?;
    }
    alice_ws.close().await;
    let restarted = crate::startup::start(config).await?;
    let bob = state.bob.at(&restarted.url())?;
    wait_ready(&bob).await?;
    let on_first = state.alice.get(&history_path(state)).await?.json()?;
    let on_second = bob.get(&history_path(state)).await?.json()?;
    restarted.shutdown().await;
    ensure!(on_first == on_second, "the restarted node differs:\nfirst  {on_first}\nsecond {on_second}");
    Ok(())
}
/// Waits until `/readyz` says ready (a cluster node has caught up).
async fn wait_ready(node: &Client) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = node.get_json("/readyz").await?;
        if status == 200 {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "not ready after 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes the smoke test's own stream from the broker.
async fn delete_stream(amqp_url: &str, stream: &str) {
    let deleted = async {
        let connection = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel.queue_delete(stream.into(), lapin::options::QueueDeleteOptions::default()).await?;
        connection.close(200, "smoke-test done".into()).await
    };
    if let Err(error) = tokio::time::timeout(Duration::from_secs(10), deleted).await.unwrap_or(Ok(())) {
        println!("note: could not delete the smoke-test stream {stream}: {error}");
    }
}
