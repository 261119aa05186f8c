//! Several nodes on one RabbitMQ stream: delivery across nodes in one
//! order, a node killed and restarted, a new node catching up, a username
//! claimed twice at once, the broker going away from one node, and
//! `smoke-test --amqp-url`. Each test has its own stream; without a broker
//! (see `cluster_support::broker`) each says SKIPPED and returns.

mod cluster_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatctl::client::Client;
use chatctl::log::write::Outcome;
use cluster_support::*;
use common::{expect_error, password_of, QUIET};
use serde_json::Value;

/// The frames without the `client_id` only their sender's copy carries.
fn plain(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .map(|frame| {
            let mut frame = frame.clone();
            if let Some(fields) = frame.as_object_mut() {
                fields.remove("client_id");
            }
            frame
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_nodes_once_with_the_same_id() {
    let Some(broker) = broker("a_message_crosses_nodes_once_with_the_same_id").await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    a.create_user("alice").await;
    b.create_user("bob").await;
    let alice = a.sign_in("alice").await;
    let bob = b.sign_in("bob").await;

    let mut alice_ws = Talker::join("alice", &alice, "across").await;
    let mut bob_ws = Talker::join("bob", &bob, "across").await;
    alice_ws.burst(3).await.unwrap();
    bob_ws.burst(3).await.unwrap();
    alice_ws.read_until_seen(6).await.unwrap();
    bob_ws.read_until_seen(6).await.unwrap();

    assert_eq!(alice_ws.seen, bob_ws.seen, "the two nodes delivered different frames or orders");
    assert_once_each_in_order(&alice_ws.seen, "the frames on node A");
    let texts: Vec<&str> = alice_ws.seen.iter().map(|f| f["message"].as_str().unwrap()).collect();
    assert_eq!(texts, ["alice 0", "alice 1", "alice 2", "bob 0", "bob 1", "bob 2"]);
    for frame in &alice_ws.seen {
        let author = if frame["message"].as_str().unwrap().starts_with("alice") { "alice" } else { "bob" };
        assert_eq!(frame["author"], author, "{frame}");
        assert_eq!(frame["room"], "across", "{frame}");
    }
    assert_eq!(plain(&alice_ws.echoes), alice_ws.seen[..3], "alice's echoes are not what bob saw");
    assert_eq!(plain(&bob_ws.echoes), bob_ws.seen[3..], "bob's echoes are not what alice saw");
    assert!(alice_ws.ws.receives_nothing(QUIET).await, "alice got a frame twice or an extra frame");
    assert!(bob_ws.ws.receives_nothing(QUIET).await, "bob got a frame twice or an extra frame");

    let on_a = full_history(&alice, "across").await.unwrap();
    let on_b = full_history(&bob, "across").await.unwrap();
    assert_eq!(on_a, alice_ws.seen, "node A's history API differs from what the sockets saw");
    assert_eq!(on_b, on_a, "the history APIs of the two nodes differ");

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_concurrent_senders_in_one_order() {
    let Some(broker) = broker("three_nodes_deliver_concurrent_senders_in_one_order").await else { return };
    let stream = TestStream::new(&broker.url);
    let nodes = [
        start_ready_node(&broker.url, &stream.name).await,
        start_ready_node(&broker.url, &stream.name).await,
        start_ready_node(&broker.url, &stream.name).await,
    ];
    let names = ["ann", "ben", "cat"];
    for name in names {
        nodes[0].create_user(name).await;
    }
    let mut clients = Vec::new();
    for (node, name) in nodes.iter().zip(names) {
        clients.push(node.sign_in(name).await);
    }
    const PER_SENDER: usize = 100;
    const TOTAL: usize = 2 * PER_SENDER;
    let mut sockets = Vec::new();
    for (client, name) in clients.iter().zip(names) {
        sockets.push(Talker::join(name, client, "order").await);
    }
    let mut tasks = Vec::new();
    for (i, mut talker) in sockets.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            if i < 2 {
                for _ in 0..PER_SENDER / 20 {
                    talker.burst(20).await?;
                }
            }
            talker.read_until_seen(TOTAL).await?;
            anyhow::Ok(talker)
        }));
    }
    let mut talkers = Vec::new();
    for task in tasks {
        talkers.push(task.await.unwrap().unwrap());
    }

    let reference = ids(&talkers[0].seen);
    assert_eq!(reference.len(), TOTAL);
    assert_once_each_in_order(&talkers[0].seen, "ann's socket");
    for talker in &talkers[1..] {
        assert_eq!(ids(&talker.seen), reference, "{} saw another order than ann", talker.name);
        assert_eq!(talker.seen, talkers[0].seen, "{} saw other frames than ann", talker.name);
    }
    let mut texts: Vec<String> = talkers[0].seen.iter().map(|f| f["message"].as_str().unwrap().to_owned()).collect();
    texts.sort();
    let mut expected: Vec<String> = (0..PER_SENDER).flat_map(|i| [format!("ann {i}"), format!("ben {i}")]).collect();
    expected.sort();
    assert_eq!(texts, expected, "the messages seen are not the messages sent, each once");
    for talker in &mut talkers {
        assert!(talker.ws.receives_nothing(QUIET).await, "{} got an extra frame", talker.name);
    }
    for (client, node) in clients.iter().zip(&nodes) {
        let history = full_history(client, "order").await.unwrap();
        assert_eq!(history, talkers[0].seen, "the history API of {} differs from the sockets", node.url());
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_traffic_restarts_with_every_accepted_message_once() {
    let Some(broker) = broker("a_node_killed_mid_traffic_restarts_with_every_accepted_message_once").await else {
        return;
    };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    a.create_user("alice").await;
    a.create_user("bob").await;
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let log = scratch.path().join("child.log");
    let mut child = ChildNode::spawn(&data_dir, &broker.url, &stream.name, &log);
    // Ready means it applied everything before its marker: both accounts.
    wait_ready(&Client::new(&child.url()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nchild output:\n{}", child.output()));
    let alice = a.sign_in("alice").await;
    let bob = sign_in(&child.url(), "bob").await;
    let mut alice_ws = Talker::join("alice", &alice, "crash").await;
    let mut bob_ws = Talker::join("bob", &bob, "crash").await;

    let bob_accepted = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let bob_task = {
        let bob_accepted = bob_accepted.clone();
        tokio::spawn(async move {
            // Until the socket dies with the node; bounded all the same.
            for _ in 0..400 {
                if bob_ws.burst(5).await.is_err() {
                    break;
                }
                bob_accepted.store(bob_ws.echoes.len(), Ordering::SeqCst);
            }
            bob_ws
        })
    };
    let alice_task = {
        let killed = killed.clone();
        tokio::spawn(async move {
            let mut after_kill = 0;
            for _ in 0..400 {
                alice_ws.burst(5).await?;
                if killed.load(Ordering::SeqCst) {
                    after_kill += 1;
                    if after_kill == 6 {
                        break;
                    }
                }
            }
            anyhow::Ok(alice_ws)
        })
    };
    let enough = poll(SETTLE, || async { (bob_accepted.load(Ordering::SeqCst) >= 30).then_some(()) }).await;
    assert!(enough.is_some(), "bob's messages through the child were not accepted\n{}", child.output());
    child.kill();
    killed.store(true, Ordering::SeqCst);
    let bob_ws = bob_task.await.unwrap();
    let mut alice_ws = alice_task.await.unwrap().unwrap();
    assert!(alice_ws.refused.is_empty(), "node A refused messages: {:?}", alice_ws.refused);
    assert!(bob_ws.echoes.len() >= 30);

    let restarted = ChildNode::spawn(&data_dir, &broker.url, &stream.name, &log);
    let bob = bob.at(&restarted.url()).unwrap();
    wait_ready(&bob).await.unwrap_or_else(|e| panic!("{e:#}\nchild output:\n{}", restarted.output()));
    let on_child = full_history(&bob, "crash").await.unwrap();
    // A message written after the child got ready: once node A has it, A
    // has applied everything the child could have applied.
    alice_ws.burst(1).await.unwrap();
    let fence = plain(&alice_ws.echoes[alice_ws.echoes.len() - 1..]);
    let on_a = full_history(&alice, "crash").await.unwrap();
    assert_eq!(on_a.last(), fence.first(), "node A's history does not end with the last message");
    assert_eq!(
        on_child,
        on_a[..on_a.len() - 1],
        "the restarted node's history differs from node A's\nchild output:\n{}",
        restarted.output()
    );
    assert_once_each_in_order(&on_child, "the restarted node's history");
    let accepted: Vec<Value> =
        alice_ws.echoes[..alice_ws.echoes.len() - 1].iter().chain(&bob_ws.echoes).cloned().collect();
    assert_contains_each_once(&on_child, &accepted, "the restarted node's history");
    drop(restarted);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_is_ready_only_once_it_holds_the_whole_history() {
    let Some(broker) = broker("a_new_node_is_ready_only_once_it_holds_the_whole_history").await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    a.create_user("alice").await;
    b.create_user("bob").await;
    b.create_user("carol").await;
    let alice = a.sign_in("alice").await;
    let bob = b.sign_in("bob").await;
    let mut tasks = Vec::new();
    for (name, client) in [("alice", &alice), ("bob", &bob)] {
        let mut talker = Talker::join(name, client, "boot").await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..6 {
                talker.burst(25).await?;
            }
            anyhow::Ok(talker)
        }));
    }
    for task in tasks {
        let talker = task.await.unwrap().unwrap();
        assert!(talker.refused.is_empty(), "{} was refused: {:?}", talker.name, talker.refused);
    }
    let on_a = poll(SETTLE, || async {
        let history = full_history(&alice, "boot").await.ok()?;
        (history.len() == 300).then_some(history)
    })
    .await
    .expect("node A holds the 300 messages");

    let c = start_node(&broker.url, &stream.name).await;
    let probe = c.anonymous();
    let mut not_ready_seen = 0;
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let (status, body) = readyz(&probe).await.unwrap();
        if status == 200 {
            assert_eq!(body["status"], "ready");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unavailable", "{body}");
        assert!(body["reason"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
        not_ready_seen += 1;
        assert!(tokio::time::Instant::now() < deadline, "the new node never got ready: {body}");
        // Asked often, so a "ready" that comes early is seen.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Right at its first "ready": it must already hold everything.
    let alice_on_c = alice.at(&c.url()).unwrap();
    let on_c = full_history(&alice_on_c, "boot")
        .await
        .unwrap_or_else(|e| panic!("the new node said ready but cannot serve alice the history yet: {e:#}"));
    assert_eq!(on_c.len(), on_a.len(), "the new node said ready with {} of {} messages", on_c.len(), on_a.len());
    assert_eq!(on_c, on_a, "the new node's history differs from node A's");
    eprintln!("the new node answered 503 {not_ready_seen} times before it was ready");

    // Accounts made earlier sign in on it, and its sockets see the history.
    let carol = sign_in(&c.url(), "carol").await;
    let mut alice_again = Client::new(&c.url()).unwrap();
    assert_eq!(alice_again.login("alice", &password_of("alice")).await.unwrap().status, 200);
    let (_, history) = common::join(&carol, "/ws/chat/boot/").await;
    assert_eq!(history["messages"].as_array().unwrap()[..], on_a[on_a.len() - 50..]);

    c.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_claimed_on_two_nodes_at_once_goes_to_exactly_one() {
    let Some(broker) = broker("a_username_claimed_on_two_nodes_at_once_goes_to_exactly_one").await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    for round in 0..3 {
        let name = format!("dora{round}");
        let passwords = [format!("{name}-on-A-9xQ!"), format!("{name}-on-B-4wZ?")];
        let hashes = [chatctl::auth::password::hash(&passwords[0]), chatctl::auth::password::hash(&passwords[1])];
        // Both writes go out together; alternate who is polled first.
        let (on_a, on_b) = if round % 2 == 0 {
            tokio::join!(a.claim_username(&name, &hashes[0]), b.claim_username(&name, &hashes[1]))
        } else {
            let (on_b, on_a) = tokio::join!(b.claim_username(&name, &hashes[1]), a.claim_username(&name, &hashes[0]));
            (on_a, on_b)
        };
        let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
        let winner = match (&on_a, &on_b) {
            (Outcome::Applied, Outcome::UsernameTaken) => 0,
            (Outcome::UsernameTaken, Outcome::Applied) => 1,
            other => panic!("round {round}: expected one Applied and one UsernameTaken, got {other:?}"),
        };
        let stored_a = a.wait_for_user(&name).await;
        let stored_b = b.wait_for_user(&name).await;
        assert_eq!(stored_a, stored_b, "round {round}: the nodes store different users");
        assert_eq!(stored_a.password_hash, hashes[winner], "round {round}: the stored user is not the winner's");
        for node in [&a, &b] {
            let mut client = node.anonymous();
            let right = client.login(&name, &passwords[winner]).await.unwrap();
            assert_eq!(right.status, 200, "round {round}: the winner cannot sign in at {}", node.url());
            let wrong = client.login(&name, &passwords[1 - winner]).await.unwrap();
            assert_eq!(wrong.status, 401, "round {round}: the loser's password works at {}", node.url());
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_differing_only_in_case_claimed_on_two_nodes_at_once_go_to_exactly_one() {
    let test = "names_differing_only_in_case_claimed_on_two_nodes_at_once_go_to_exactly_one";
    let Some(broker) = broker(test).await else { return };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    let hash = chatctl::auth::password::hash("Amber-Window-71");
    for round in 0..3 {
        let names = [format!("Eve{round}"), format!("eve{round}")];
        let (on_a, on_b) = tokio::join!(a.claim_username(&names[0], &hash), b.claim_username(&names[1], &hash));
        let winner = match (on_a.unwrap(), on_b.unwrap()) {
            (Outcome::Applied, Outcome::UsernameTaken) => 0,
            (Outcome::UsernameTaken, Outcome::Applied) => 1,
            other => panic!("round {round}: expected one Applied and one UsernameTaken, got {other:?}"),
        };
        for node in [&a, &b] {
            assert_eq!(node.wait_for_user(&names[winner]).await.username.as_str(), names[winner]);
            let store = node.server.app().store.clone();
            let loser = names[1 - winner].clone();
            let stored = tokio::task::spawn_blocking(move || store.user(&loser)).await.unwrap().unwrap();
            assert!(stored.is_none(), "round {round}: {} stores both {names:?}", node.url());
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_the_broker_refuses_writes_and_recovers_by_itself() {
    let Some(broker) = broker("a_node_that_loses_the_broker_refuses_writes_and_recovers_by_itself").await else {
        return;
    };
    let stream = TestStream::new(&broker.url);
    let proxy = Proxy::start(broker.address().await).await;
    let proxied_url = with_authority(&broker.url, &format!("127.0.0.1:{}", proxy.port));
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&proxied_url, &stream.name).await;
    a.create_user("alice").await;
    a.create_user("bob").await;
    let alice = a.sign_in("alice").await;
    let bob = b.sign_in("bob").await;
    let mut alice_ws = Talker::join("alice", &alice, "outage").await;
    let mut bob_ws = Talker::join("bob", &bob, "outage").await;
    bob_ws.burst(5).await.unwrap();
    alice_ws.burst(5).await.unwrap();
    bob_ws.read_until_seen(10).await.unwrap();
    alice_ws.read_until_seen(10).await.unwrap();

    proxy.stop();
    let (status, body) = poll(SETTLE, || async {
        let answer = readyz(&bob).await.ok()?;
        (answer.0 != 200).then_some(answer)
    })
    .await
    .expect("/readyz stayed 200 after the broker went away");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(body["reason"].as_str().is_some_and(|r| !r.is_empty()), "no reason in {body}");
    assert_eq!(readyz(&alice).await.unwrap().0, 200, "node A lost readiness although its broker link is fine");

    bob_ws.ws.send_message("while the broker is away", Some("refused-1")).await.unwrap();
    let refusal = expect_error(&mut bob_ws.ws, "unavailable", "a message while the broker is away").await;
    assert_eq!(refusal["client_id"], "refused-1", "{refusal}");
    let (status, page) = bob.get_json("/api/rooms/outage/messages").await.unwrap();
    assert_eq!(status, 200, "the history API fails while the broker is away: {page}");
    assert_eq!(page["messages"].as_array().unwrap()[..], bob_ws.seen[..], "history during the outage");
    // Node A goes on meanwhile; node B must catch up on it later.
    alice_ws.burst(3).await.unwrap();

    proxy.resume().await;
    wait_ready(&bob).await.expect("node B reconnects by itself");
    bob_ws.read_until_seen(13).await.expect("node B delivers what node A accepted during the outage");
    bob_ws.burst(1).await.unwrap();
    assert!(bob_ws.refused.is_empty(), "refused after the reconnect: {:?}", bob_ws.refused);
    alice_ws.read_until_seen(14).await.expect("a message through the reconnected node reaches node A");
    assert_eq!(alice_ws.seen, bob_ws.seen, "the two sockets saw different messages");

    let on_a = full_history(&alice, "outage").await.unwrap();
    let on_b = full_history(&bob, "outage").await.unwrap();
    assert_eq!(on_b, on_a, "the nodes' histories differ after the outage");
    assert_eq!(on_a, alice_ws.seen);
    assert_once_each_in_order(&on_a, "the history after the outage");
    let accepted: Vec<Value> = alice_ws.echoes.iter().chain(&bob_ws.echoes).cloned().collect();
    assert_contains_each_once(&on_a, &accepted, "the history after the outage");
    assert!(on_a.iter().all(|m| m["message"] != "while the broker is away"), "a refused message was stored");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_test_passes_against_the_broker() {
    let Some(broker) = broker("smoke_test_passes_against_the_broker").await else { return };
    let scratch = tempfile::tempdir().unwrap();
    let stdout_path = scratch.path().join("stdout");
    let stderr_path = scratch.path().join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatctl"))
        .args(["smoke-test", "--amqp-url", &broker.url])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting chatctl smoke-test");
    let status = poll(Duration::from_secs(180), || {
        let exited = child.try_wait().expect("waiting for smoke-test");
        async move { exited }
    })
    .await;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let status = status.unwrap_or_else(|| panic!("smoke-test did not finish in 180 s\n{stdout}\n{stderr}"));
    assert!(status.success(), "smoke-test exited with {status}\n{stdout}\n{stderr}");
    let last = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    let passed = last
        .strip_prefix("smoke-test: ")
        .and_then(|rest| rest.strip_suffix(" passed, 0 failed"))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(passed.is_some_and(|n| n > 0), "the last line is {last:?}\n{stdout}");
}
