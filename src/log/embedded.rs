//! A single node's log: one writer thread applies every write, taking all
//! that waited while the previous commit ran into the next transaction
//! (group commit), so durable throughput grows with load instead of paying
//! one fsync per message. Ids come from the local counter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::apply::{apply_batch, Entry};
use super::write::Outcome;
use super::{effect_of, refuse, Effect, LogError, Pending, Reply, Sinks};
use crate::storage::Store;

/// The most writes one commit takes.
const MAX_BATCH: usize = 4096;
/// Writes waiting for the writer; a full queue makes senders wait.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// Committed batches waiting to be fanned out; a full queue makes the
/// writer wait before its next commit.
const FAN_OUT_CAPACITY: usize = 64;

#[derive(Clone)]
pub struct Embedded {
    queue: mpsc::Sender<Job>,
    closing: Arc<AtomicBool>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    fan_out: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// What a commit came to, handed from the writer thread to the fan-out
/// task. Fanning out on the runtime makes waking a room's socket tasks a
/// push onto a worker's own run queue; from the writer thread every wake
/// was a cross-thread hand-off.
enum Committed {
    Stored(Vec<(Effect, Outcome, Reply)>),
    Failed(Vec<Reply>, String),
}

/// What the writer thread is asked to do, in order.
enum Job {
    Write(Pending),
    /// Everything before is committed: stop and release the database.
    Stop,
}

impl Embedded {
    /// Starts the writer thread; it runs until `close`.
    pub fn start(store: Store, sinks: Arc<Sinks>) -> Embedded {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (committed, mut to_fan_out) = mpsc::channel::<Committed>(FAN_OUT_CAPACITY);
        let metrics = sinks.metrics.clone();
        let fan_out = tokio::spawn(async move {
            while let Some(batch) = to_fan_out.recv().await {
                match batch {
                    Committed::Stored(results) => sinks.finish(results),
                    Committed::Failed(replies, error) => sinks.fail(replies, &error),
                }
            }
        });
        let thread = std::thread::Builder::new()
            .name("chatctl-writer".into())
            .spawn(move || run_writer(receiver, store, committed, metrics))
            .expect("spawning the writer thread");
        Embedded {
            queue,
            closing: Arc::new(AtomicBool::new(false)),
            thread: Arc::new(Mutex::new(Some(thread))),
            fan_out: Arc::new(Mutex::new(Some(fan_out))),
        }
    }

    /// Queues a write; waits while the writer is saturated (back-pressure),
    /// never drops it.
    pub async fn submit(&self, pending: Pending) {
        if self.closing.load(Ordering::Relaxed) {
            return refuse(pending.reply, LogError::Unavailable("the server is shutting down".into()));
        }
        if let Err(refused) = self.queue.send(Job::Write(pending)).await {
            if let Job::Write(pending) = refused.0 {
                refuse(pending.reply, LogError::Unavailable("the writer has stopped".into()));
            }
        }
    }

    pub fn readiness(&self) -> Result<(), String> {
        let fan_out = self.fan_out.lock().unwrap_or_else(|p| p.into_inner());
        if fan_out.as_ref().is_some_and(|task| task.is_finished()) {
            return Err(
                "the fan-out task has stopped: messages are stored but not delivered; restart the server".into()
            );
        }
        drop(fan_out);
        if self.queue.is_closed() {
            return Err("the message writer has stopped".into());
        }
        Ok(())
    }

    /// Refuses new writes, commits everything queued before, then stops
    /// the writer thread, which releases the database.
    pub async fn close(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        self.closing.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout_at(deadline, self.queue.send(Job::Stop)).await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout_at(deadline, joined).await;
        }
        // The writer has gone, and with it the fan-out queue's sender: the
        // task ends once the last commit is fanned out and answered.
        let fan_out = self.fan_out.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(fan_out) = fan_out {
            let _ = tokio::time::timeout_at(deadline, fan_out).await;
        }
    }
}

fn run_writer(
    mut receiver: mpsc::Receiver<Job>,
    store: Store,
    committed: mpsc::Sender<Committed>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let hand_over = |batch| {
        if committed.blocking_send(batch).is_err() {
            // Stored, but nobody will be told: /readyz reports it too.
            tracing::error!("the fan-out task has stopped; a committed batch was not delivered");
        }
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        match receiver.blocking_recv() {
            Some(Job::Write(first)) => batch.push(first),
            Some(Job::Stop) | None => break,
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Job::Write(next)) => batch.push(next),
                Ok(Job::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut entries = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for pending in batch.drain(..) {
            waiting.push((effect_of(&pending.write), pending.reply));
            entries.push(Entry { position: None, origin: None, write: pending.write });
        }
        match apply_batch(&store, &entries, None) {
            Ok(outcomes) => {
                metrics.commits.fetch_add(1, Ordering::Relaxed);
                let results =
                    waiting.into_iter().zip(outcomes).map(|((effect, reply), outcome)| (effect, outcome, reply));
                hand_over(Committed::Stored(results.collect()));
            }
            Err(error) if waiting.len() > 1 => {
                // One bad write must not fail the others: apply them alone.
                tracing::warn!(%error, writes = waiting.len(), "a batch failed to commit; retrying its writes one by one");
                for ((effect, reply), entry) in waiting.into_iter().zip(&entries) {
                    match apply_batch(&store, std::slice::from_ref(entry), None) {
                        Ok(mut outcome) => hand_over(Committed::Stored(vec![(effect, outcome.remove(0), reply)])),
                        Err(error) => {
                            tracing::error!(%error, "a write failed to commit; its writer was told nothing was stored");
                            hand_over(Committed::Failed(vec![reply], error.to_string()));
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "a write failed to commit; its writer was told nothing was stored");
                hand_over(Committed::Failed(waiting.into_iter().map(|(_, reply)| reply).collect(), error.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::hub::{Hub, Outbound, Subscriber};
    use crate::domain::MessageId;
    use crate::log::write::Write;
    use crate::log::Reply;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn submitted_messages_are_stored_then_published_in_order() {
        let (_dir, store) = crate::storage::test_store();
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let sinks =
            Arc::new(Sinks { hub: hub.clone(), live: Arc::default(), setup: Arc::default(), metrics: metrics.clone() });
        let (sub, mut rx, _) = Subscriber::new(1024);
        hub.subscribe("r", sub.clone());
        let log = Embedded::start(store.clone(), sinks);
        for i in 0..300 {
            let write =
                Write::Message { conversation: "r".into(), author: "a".into(), text: format!("m{i}"), ts_ms: 1 };
            log.submit(Pending { write, reply: Reply::Socket { origin: sub.clone(), client_id: None } }).await;
        }
        log.close(Duration::from_secs(10)).await;
        let mut last = MessageId(0);
        for _ in 0..300 {
            let Some(Outbound::Message { id, .. }) = rx.recv().await else { panic!("missing delivery") };
            assert!(id > last);
            last = id;
        }
        assert_eq!(store.messages_before("r", None, 500).unwrap().len(), 300);
        assert!(metrics.commits.load(Ordering::Relaxed) <= 301);
    }
}
