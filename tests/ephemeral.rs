//! Ephemeral events (typing, presence) between two nodes through RabbitMQ:
//! they reach the other node's listeners, never come back to their own
//! node twice, and touch neither the stream nor storage. Without a broker
//! (see `cluster_support::broker`) the test says SKIPPED and returns.

mod cluster_support;
mod common;

use std::time::Duration;

use chatctl::chat::ephemeral::Ephemeral;
use chatctl::domain::{Conversation, Username};
use cluster_support::*;
use tokio::sync::broadcast::error::TryRecvError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_published_on_one_node_reaches_the_other_and_is_stored_nowhere() {
    let Some(broker) = broker("typing_published_on_one_node_reaches_the_other_and_is_stored_nowhere").await else {
        return;
    };
    let stream = TestStream::new(&broker.url);
    let a = start_ready_node(&broker.url, &stream.name).await;
    let b = start_ready_node(&broker.url, &stream.name).await;
    let (bus_a, bus_b) = (a.server.app().chat.ephemeral.clone(), b.server.app().chat.ephemeral.clone());
    let mut on_a = bus_a.subscribe();
    let mut on_b = bus_b.subscribe();
    let typing = Ephemeral::Typing {
        conversation: Conversation::from_key("lobby").unwrap(),
        user: Username::parse("ann").unwrap(),
        at_ms: 1,
    };
    // Both nodes have applied both connection markers: nothing else is written.
    let offset = |node: &Node| node.server.app().store.stream_next_offset().unwrap();
    let settled = poll(SETTLE, || async {
        let (on_a, on_b) = (offset(&a), offset(&b));
        (on_a == on_b).then_some(on_a)
    })
    .await;
    let stored_before = settled.expect("the nodes never applied the same stream");

    // The relays connect in the background: keep typing until B hears it,
    // as a client does while its user types.
    let mut published = 0;
    let heard = tokio::time::timeout(SETTLE, async {
        loop {
            bus_a.publish(typing.clone());
            published += 1;
            if let Ok(Ok(event @ Ephemeral::Typing { .. })) =
                tokio::time::timeout(Duration::from_millis(200), on_b.recv()).await
            {
                return event;
            }
        }
    })
    .await
    .expect("node B never heard node A's typing");
    assert_eq!(heard, typing);

    // A's own listener got each event exactly once: the relay skips its own.
    // (Presence heartbeats and the like come and go meanwhile.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut on_a_count = 0;
    loop {
        match on_a.try_recv() {
            Ok(event @ Ephemeral::Typing { .. }) => {
                assert_eq!(event, typing);
                on_a_count += 1;
            }
            Ok(_) => {}
            Err(TryRecvError::Empty) => break,
            Err(other) => panic!("node A's listener: {other}"),
        }
    }
    assert_eq!(on_a_count, published, "node A heard its own events other than once each");
    let stored_after = offset(&a);
    assert_eq!(stored_before, stored_after, "typing went through the write log");
    a.stop().await;
    b.stop().await;
}
