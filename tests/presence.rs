//! Presence and sign-in throttling across two nodes through RabbitMQ, at
//! the contract's times (PROTOCOL.md, "Presence"): online on the other node
//! within 2 s, offline 5 to 15 s after the last socket closed, a reconnect
//! within 5 s silent, a dead node's users offline within 30 s, and failed
//! sign-ins counted on every node. Sockets are stood in for by
//! `Presence::socket_opened` guards (the socket wiring is tested with the
//! sockets). Without a broker (see `cluster_support::broker`) each test says
//! SKIPPED and returns.

mod cluster_support;
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chatctl::chat::ephemeral::Ephemeral;
use chatctl::chat::presence::{Presence, PresenceChange};
use chatctl::domain::{Conversation, Username};
use cluster_support::*;
use tokio::sync::broadcast;

fn presence(node: &Node) -> &std::sync::Arc<Presence> {
    &node.server.app().chat.presence
}

fn name(raw: &str) -> Username {
    Username::parse(raw).unwrap()
}

/// Waits until events published on `from`'s bus reach `to`'s: the relays
/// connect in the background.
async fn wait_relayed(from: &Node, to: &Node) {
    let mut heard = to.server.app().chat.ephemeral.subscribe();
    let probe =
        Ephemeral::Typing { conversation: Conversation::from_key("probe").unwrap(), user: name("probe"), at_ms: 1 };
    let relayed = tokio::time::timeout(SETTLE, async {
        loop {
            from.server.app().chat.ephemeral.publish(probe.clone());
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, heard.recv()).await {
                if event == probe {
                    return;
                }
            }
        }
    })
    .await;
    relayed.unwrap_or_else(|_| panic!("{} never heard {}", to.url(), from.url()));
}

/// The next change of `user` on `changes` within `within`, if any.
async fn change_of(
    changes: &mut broadcast::Receiver<PresenceChange>,
    user: &str,
    within: Duration,
) -> Option<PresenceChange> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Ok(change)) if change.user == user => return Some(change),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("the changes listener: {error}"),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_on_one_node_is_seen_on_the_other_within_2_s_and_offline_5_to_15_s_after_the_close() {
    let test = "online_on_one_node_is_seen_on_the_other_within_2_s_and_offline_5_to_15_s_after_the_close";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    wait_relayed(&a, &b).await;
    let (mut on_a, mut on_b) = (presence(&a).changes(), presence(&b).changes());

    let opened = Instant::now();
    let socket = presence(&a).socket_opened(&name("ann"));
    let seen = change_of(&mut on_b, "ann", Duration::from_secs(2)).await;
    assert_eq!(seen, Some(PresenceChange { user: name("ann"), online: true }), "node B within 2 s");
    println!("online on B {:?} after the socket opened on A", opened.elapsed());
    assert!(presence(&b).is_online("ann"));
    assert_eq!(presence(&b).online_among(["bob", "ann"].into_iter()), vec!["ann".to_owned()]);
    assert_eq!(change_of(&mut on_a, "ann", Duration::ZERO).await.map(|c| c.online), Some(true), "A: at once");

    let closed = Instant::now();
    drop(socket);
    for (node, changes) in [("A", &mut on_a), ("B", &mut on_b)] {
        let gone = change_of(changes, "ann", Duration::from_secs(20)).await;
        let after = closed.elapsed();
        assert_eq!(gone, Some(PresenceChange { user: name("ann"), online: false }), "node {node}");
        assert!(
            after >= Duration::from_secs(5) && after <= Duration::from_secs(15),
            "node {node} announced offline {after:?} after the close"
        );
        println!("offline on {node} {after:?} after the socket closed");
    }
    assert!(!presence(&a).is_online("ann") && !presence(&b).is_online("ann"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_to_the_other_node_within_5_s_announces_nothing() {
    let Some(broker) = broker("a_reconnect_to_the_other_node_within_5_s_announces_nothing").await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    wait_relayed(&a, &b).await;
    wait_relayed(&b, &a).await;
    let socket = presence(&a).socket_opened(&name("bob"));
    let mut on_b = presence(&b).changes();
    assert!(
        presence(&b).is_online("bob") || change_of(&mut on_b, "bob", Duration::from_secs(2)).await.is_some(),
        "B never saw bob online"
    );
    let mut on_a = presence(&a).changes();
    drop(socket);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let socket = presence(&b).socket_opened(&name("bob"));
    for (node, changes) in [("A", &mut on_a), ("B", &mut on_b)] {
        let change = change_of(changes, "bob", Duration::from_secs(12)).await;
        assert_eq!(change, None, "node {node} announced a change for a reconnect within 5 s");
    }
    assert!(presence(&a).is_online("bob") && presence(&b).is_online("bob"));
    drop(socket);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_learns_who_is_online_and_a_dead_nodes_users_go_offline_within_30_s() {
    let test = "a_late_node_learns_who_is_online_and_a_dead_nodes_users_go_offline_within_30_s";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let _socket = presence(&a).socket_opened(&name("cid"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let b = start_ready_node(&broker.url, &stream.name).await;
    let started = Instant::now();
    let learned = poll(SETTLE, || async { presence(&b).is_online("cid").then_some(()) }).await;
    assert!(learned.is_some(), "node B, started late, never learned that cid is online on A");
    println!("the late node learned cid is online {:?} after it was ready", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    let mut on_b = presence(&b).changes();

    // A stops without a word (its sockets are held here, so it sends no
    // offline): only its silence tells B.
    let died = Instant::now();
    a.stop().await;
    let gone = change_of(&mut on_b, "cid", Duration::from_secs(40)).await;
    let after = died.elapsed();
    assert_eq!(gone, Some(PresenceChange { user: name("cid"), online: false }), "B never took cid offline");
    assert!(after <= Duration::from_secs(30), "cid went offline on B {after:?} after A stopped");
    println!("offline on B {after:?} after node A stopped");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_spread_over_two_nodes_hit_the_per_address_limit_as_on_one() {
    let test = "failed_sign_ins_spread_over_two_nodes_hit_the_per_address_limit_as_on_one";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    wait_relayed(&a, &b).await;
    wait_relayed(&b, &a).await;
    let wrong = |node: &Node, i: usize| {
        let client = node.anonymous();
        async move {
            let body = serde_json::json!({"username": format!("ghost{i}"), "password": "x-wrong-1"});
            client.post_json("/api/login", &body).await.unwrap().status.as_u16()
        }
    };
    let heard = |node: &Node| node.server.app().metrics.login_failures_from_other_nodes.load(Ordering::Relaxed);

    for i in 0..10 {
        assert_eq!(wrong(&a, i).await, 401, "failure {} on A", i + 1);
    }
    let told = poll(SETTLE, || async { (heard(&b) == 10).then_some(()) }).await;
    assert!(told.is_some(), "B heard of {} of A's 10 failures", heard(&b));
    let mut statuses = Vec::new();
    for i in 10..21 {
        statuses.push(wrong(&b, i).await);
    }
    assert_eq!(statuses[..10], [401; 10], "failures 11 to 20, on B: {statuses:?}");
    assert_eq!(statuses[10], 429, "the 21st failure, on B, is refused: {statuses:?}");
    // And A counts B's: the address is refused there too.
    let told = poll(SETTLE, || async { (heard(&a) == 10).then_some(()) }).await;
    assert!(told.is_some(), "A heard of {} of B's 10 failures", heard(&a));
    assert_eq!(wrong(&a, 99).await, 429, "A refuses the address after 10 failures on each node");
    a.stop().await;
    b.stop().await;
}

/// The whole way, with real sockets and a real `kill -9`: a user whose only
/// socket is on a node that dies goes offline on the other node's sockets
/// within 30 s, and came online there within 2 s of the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_a_node_killed_with_sigkill_goes_offline_on_the_other_nodes_sockets_within_30_s() {
    let test = "a_user_on_a_node_killed_with_sigkill_goes_offline_on_the_other_nodes_sockets_within_30_s";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    a.create_user("alice").await;
    a.create_user("bob").await;
    let scratch = tempfile::tempdir().unwrap();
    let mut child =
        ChildNode::spawn(&scratch.path().join("data"), &broker.url, &stream.name, &scratch.path().join("child.log"));
    wait_ready(&chatctl::client::Client::new(&child.url()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nchild output:\n{}", child.output()));
    let alice = a.sign_in("alice").await;
    let bob = sign_in(&child.url(), "bob").await;
    // Both are members of the room before bob comes online for this test.
    let (alice_ws, _) = common::join(&alice, "/ws/chat/vigil/").await;
    let mut alice_ws = alice_ws.with_awareness();
    let (bob_ws, _) = common::join(&bob, "/ws/chat/vigil/").await;

    let online = wait_for_presence(&mut alice_ws, "bob", true, Duration::from_secs(2)).await;
    assert!(online.is_some(), "bob's socket on the child was not announced on node A within 2 s");
    let killed_at = Instant::now();
    child.kill();
    let offline = wait_for_presence(&mut alice_ws, "bob", false, Duration::from_secs(30)).await;
    let after = killed_at.elapsed();
    assert!(offline.is_some(), "bob was still online on node A 30 s after his node was killed");
    println!("bob offline on node A {after:?} after kill -9 of his node");
    drop(bob_ws);
}

/// The first `{"type":"presence","user":user,"online":online}` on `ws` within `within`.
async fn wait_for_presence(
    ws: &mut chatctl::client::ChatSocket,
    user: &str,
    online: bool,
    within: Duration,
) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = ws.next_json(left).await.ok()?;
        if frame["type"] == "presence" && frame["user"] == user && frame["online"] == online {
            return Some(frame);
        }
    }
}
