//! The message log: where an accepted message gets its id and becomes
//! durable, in one order, before the hub fans it out. This is the boundary a
//! clustered backend (RabbitMQ) slots in behind; the embedded backend below
//! is a group-commit writer thread over redb.
//!
//! Group commit: the writer takes every submission waiting in its queue,
//! stores them all in one transaction (one fsync), then publishes them in id
//! order. Throughput therefore grows with load instead of being one fsync
//! per message.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::frames::{self, Refusal};
use super::hub::{Hub, Outbound, Subscriber};
use crate::domain::MessageText;
use crate::metrics::Metrics;
use crate::storage::{now_ms, NewMessage, Store};

/// The most messages one commit takes.
const MAX_BATCH: usize = 4096;
/// Submissions waiting for the writer; a full queue makes sockets wait.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// A message accepted from a socket.
pub struct Submission {
    pub conversation: String,
    pub author: String,
    pub text: MessageText,
    pub client_id: Option<String>,
    /// The sending socket: it gets the `client_id` copy, or the error.
    pub origin: Arc<Subscriber>,
}

#[derive(Clone)]
pub struct MessageLog {
    queue: mpsc::Sender<Submission>,
}

/// The node cannot take messages now (the writer has stopped); the
/// submission comes back untouched.
pub struct Unavailable(pub Submission);

impl MessageLog {
    /// Starts the embedded writer thread. It stops once every `MessageLog`
    /// clone is dropped and the queue is drained; join the handle to know
    /// that every accepted message is committed.
    pub fn start_embedded(store: Store, hub: Arc<Hub>, metrics: Arc<Metrics>) -> (MessageLog, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("chatctl-writer".into())
            .spawn(move || run_writer(receiver, store, hub, metrics))
            .expect("spawning the writer thread");
        (MessageLog { queue }, handle)
    }

    /// Whether the writer has stopped (it only does at shutdown).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Hands a message to the log. Waits while the writer is saturated
    /// (back-pressure on the sending socket), never drops it.
    pub async fn submit(&self, submission: Submission) -> Result<(), Unavailable> {
        self.queue.send(submission).await.map_err(|refused| Unavailable(refused.0))
    }
}

fn run_writer(mut receiver: mpsc::Receiver<Submission>, store: Store, hub: Arc<Hub>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        commit_and_publish(&mut batch, &store, &hub, &metrics);
    }
}

fn commit_and_publish(batch: &mut Vec<Submission>, store: &Store, hub: &Hub, metrics: &Metrics) {
    let ts_ms = now_ms();
    let new: Vec<NewMessage> = batch
        .iter()
        .map(|s| NewMessage {
            conversation: s.conversation.clone(),
            author: s.author.clone(),
            text: s.text.as_str().to_owned(),
            ts_ms,
        })
        .collect();
    match store.append_messages(new) {
        Ok(stored) => {
            metrics.commits.fetch_add(1, Ordering::Relaxed);
            metrics.messages_stored.fetch_add(stored.len() as u64, Ordering::Relaxed);
            for (submission, message) in batch.drain(..).zip(&stored) {
                let origin = submission.client_id.as_deref().map(|id| (submission.origin.id, id));
                hub.publish(message, origin);
            }
        }
        Err(error) => {
            tracing::error!(%error, messages = batch.len(), "storing messages failed; senders were told nothing was stored");
            metrics.store_failures.fetch_add(1, Ordering::Relaxed);
            for submission in batch.drain(..) {
                let refusal = frames::error_bytes(&Refusal::Unavailable, submission.client_id.as_deref());
                submission.origin.deliver(Outbound::Frame(refusal));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn submitted_messages_are_stored_then_published_in_order() {
        let (_dir, store) = crate::storage::test_store();
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let (sub, mut rx, _) = Subscriber::new(1024);
        hub.subscribe("r", sub.clone());
        let (log, writer) = MessageLog::start_embedded(store.clone(), hub.clone(), metrics.clone());
        for i in 0..300 {
            let text = MessageText::parse(&format!("m{i}")).unwrap();
            let submission =
                Submission { conversation: "r".into(), author: "a".into(), text, client_id: None, origin: sub.clone() };
            assert!(log.submit(submission).await.is_ok());
        }
        drop(log);
        tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
        let mut last = None;
        for _ in 0..300 {
            let Some(Outbound::Message { id, .. }) = rx.recv().await else { panic!("missing delivery") };
            assert!(Some(id) > last);
            last = Some(id);
        }
        assert_eq!(store.messages_before("r", None, 500).unwrap().len(), 300);
        assert!(metrics.commits.load(Ordering::Relaxed) <= 300);
    }
}
