//! RabbitMQ closing every connection (`rabbitmqctl close_all_connections`)
//! while two nodes exchange messages: both reconnect, and every socket and
//! both histories hold exactly the accepted messages, each once.
//! A file of its own: cargo runs test binaries one after another, so no
//! other test's connections are near (and the cut is limited to this
//! test's own vhost besides).

mod cluster_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_support::*;
use common::QUIET;
use serde_json::Value;

/// How many times the broker closes every connection.
const CUTS: usize = 3;

/// The text a message with this `client_id` was sent with (`name-i` → `name i`).
fn text_for(client_id: &str) -> String {
    let (name, i) = client_id.rsplit_once('-').expect("client ids are name-i");
    format!("{name} {i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_by_the_broker_lose_and_duplicate_nothing() {
    let Some(broker) = broker("connections_cut_by_the_broker_lose_and_duplicate_nothing").await else { return };
    let vhost = TestVhost::create(&broker).await.expect("creating the test's vhost");
    let url = with_vhost(&broker.url, &vhost.name);
    let stream = TestStream::new(&url);
    let a = start_ready_node(&url, &stream.name).await;
    let b = start_ready_node(&url, &stream.name).await;
    for name in ["alice", "bob", "olive", "oscar"] {
        a.create_user(name).await;
    }
    let room = "cut";
    let alice = Talker::join("alice", &a.sign_in("alice").await, room).await;
    let bob = Talker::join("bob", &b.sign_in("bob").await, room).await;
    // Observers on each node, reading only.
    let reader_a = a.sign_in("olive").await;
    let reader_b = b.sign_in("oscar").await;
    let mut olive = Talker::join("olive", &reader_a, room).await;
    let mut oscar = Talker::join("oscar", &reader_b, room).await;

    let accepted = Arc::new(AtomicUsize::new(0));
    let recovered = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for mut talker in [alice, bob] {
        let (accepted, recovered) = (accepted.clone(), recovered.clone());
        tasks.push(tokio::spawn(async move {
            let mut clean_after_recovery = 0;
            for _ in 0..400 {
                let (echoes, refused) = (talker.echoes.len(), talker.refused.len());
                talker.burst(5).await?;
                accepted.fetch_add(talker.echoes.len() - echoes, Ordering::SeqCst);
                if recovered.load(Ordering::SeqCst) && talker.refused.len() == refused {
                    clean_after_recovery += 1;
                    if clean_after_recovery == 3 {
                        return anyhow::Ok(talker);
                    }
                }
                // Pacing, so the traffic before the cut stays small.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::bail!("{}: no clean bursts after the reconnect", talker.name)
        }));
    }

    // Several cuts, each while messages flow: each is another chance to
    // catch a node between storing a batch and delivering it.
    for cut in 1..=CUTS {
        let target = accepted.load(Ordering::SeqCst) + 40;
        let flowing = poll(SETTLE, || async { (accepted.load(Ordering::SeqCst) >= target).then_some(()) }).await;
        assert!(flowing.is_some(), "cut {cut}: the traffic did not flow");
        let out = broker
            .rabbitmqctl(&["close_all_connections", "--vhost", &vhost.name, "test"])
            .await
            .expect("rabbitmqctl close_all_connections");
        let closed: Option<u32> =
            out.lines().find_map(|l| l.strip_prefix("Closed ")?.strip_suffix(" connections")?.parse().ok());
        // Usually both nodes' connections; a connection the broker is still
        // opening may be missed by that one call, which is fine: every cut
        // must close something, and the checks below hold either way.
        assert!(closed.is_some_and(|n| n >= 1), "cut {cut}: expected connections closed; got {out:?}");
        wait_ready(&a.anonymous()).await.expect("node A reconnects");
        wait_ready(&b.anonymous()).await.expect("node B reconnects");
    }
    recovered.store(true, Ordering::SeqCst);
    let mut talkers = Vec::new();
    for task in tasks {
        talkers.push(task.await.unwrap().expect("every message got an answer"));
    }

    // The nodes agree, and hold exactly the accepted messages, each once.
    let history = poll(SETTLE, || async {
        let on_a = full_history(&reader_a, room).await.ok()?;
        let on_b = full_history(&reader_b, room).await.ok()?;
        (on_a == on_b).then_some(on_a)
    })
    .await
    .expect("the two nodes' histories never became identical");
    assert_once_each_in_order(&history, "the history after the cut");
    let echoes: Vec<Value> = talkers.iter().flat_map(|t| t.echoes.clone()).collect();
    assert_contains_each_once(&history, &echoes, "the history after the cut");
    assert_eq!(history.len(), echoes.len(), "the history holds messages that were never echoed");
    for refusal in talkers.iter().flat_map(|t| &t.refused) {
        assert_eq!(refusal["code"], "unavailable", "{refusal}");
        let text = text_for(refusal["client_id"].as_str().unwrap());
        assert!(history.iter().all(|m| m["message"] != text.as_str()), "the refused {text:?} was stored");
    }
    let refused: usize = talkers.iter().map(|t| t.refused.len()).sum();
    eprintln!("{} messages accepted, {refused} refused during the reconnect", echoes.len());

    // Every socket got every message once, in the history's order.
    let mut problems = Vec::new();
    for (talker, node) in talkers.iter_mut().zip(["A", "B"]).chain([(&mut olive, "A"), (&mut oscar, "B")]) {
        let read = tokio::time::timeout(Duration::from_secs(10), talker.read_until_seen(history.len())).await;
        talker.assert_no_duplicates();
        let missing: Vec<String> = history
            .iter()
            .filter(|m| !talker.seen.iter().any(|s| s["id"] == m["id"]))
            .map(|m| format!("{} {:?} by {}", id_of(m), m["message"], m["author"]))
            .collect();
        if !missing.is_empty() || read.is_err() {
            problems.push(format!(
                "{} (on node {node}) saw {} of {} stored messages; never got {missing:?}",
                talker.name,
                talker.seen.len(),
                history.len()
            ));
            continue;
        }
        assert_eq!(ids(&talker.seen), ids(&history), "{}'s socket saw another order than the history", talker.name);
        assert!(talker.ws.receives_nothing(QUIET).await, "{} got an extra frame", talker.name);
    }
    assert!(problems.is_empty(), "messages stored by a node never reached its sockets:\n{}", problems.join("\n"));

    a.stop().await;
    b.stop().await;
    drop(stream);
    vhost.delete(&broker).await.expect("deleting the test's vhost");
}
