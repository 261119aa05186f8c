//! A single node's log: one writer thread applies every write, taking all
//! that waited while the previous commit ran into the next transaction
//! (group commit), so durable throughput grows with load instead of paying
//! one fsync per message. Ids come from the local counter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::apply::{apply_batch, Entry};
use super::{Change, Committed, Events, LogError, LogEvent, Pending, Ticket};
use crate::metrics::Metrics;
use crate::storage::Store;

/// The most writes one commit takes.
const MAX_BATCH: usize = 4096;
/// Writes waiting for the writer; a full queue makes senders wait.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// The handle on a single node's writer thread; cheap to clone.
#[derive(Clone)]
pub struct Embedded {
    queue: mpsc::Sender<Job>,
    events: Events,
    closing: Arc<AtomicBool>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// What the writer thread is asked to do, in order.
enum Job {
    Write(Pending),
    /// Everything before is committed: stop and release the database.
    Stop,
}

impl Embedded {
    /// Starts the writer thread; it runs until `close`. Each commit is
    /// handed on as a `LogEvent` on `events`.
    pub fn start(store: Store, events: Events, metrics: Arc<Metrics>) -> Embedded {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let thread_events = events.clone();
        let thread = std::thread::Builder::new()
            .name("chatctl-writer".into())
            .spawn(move || run_writer(receiver, store, thread_events, metrics))
            .expect("spawning the writer thread");
        Embedded {
            queue,
            events,
            closing: Arc::new(AtomicBool::new(false)),
            thread: Arc::new(Mutex::new(Some(thread))),
        }
    }

    /// Queues a write; waits while the writer is saturated (back-pressure),
    /// never drops it.
    pub async fn submit(&self, pending: Pending) {
        if self.closing.load(Ordering::Relaxed) {
            let error = LogError::Unavailable("the server is shutting down".into());
            return pending.ticket.refuse(error, &self.events).await;
        }
        if let Err(refused) = self.queue.send(Job::Write(pending)).await {
            if let Job::Write(pending) = refused.0 {
                pending.ticket.refuse(LogError::Unavailable("the writer has stopped".into()), &self.events).await;
            }
        }
    }

    /// `Ok` while the writer takes writes; else why not.
    pub fn readiness(&self) -> Result<(), String> {
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
    }
}

fn run_writer(mut receiver: mpsc::Receiver<Job>, store: Store, events: Events, metrics: Arc<Metrics>) {
    let hand_over = |event| {
        if events.blocking_send(event).is_err() {
            // Stored, but nobody will be told: the consumer's readiness says so.
            tracing::error!("the log's events have no consumer; a committed batch was not handed on");
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
        let (entries, tickets): (Vec<Entry>, Vec<Ticket>) = batch
            .drain(..)
            .map(|pending| (Entry { position: None, origin: None, write: pending.write }, pending.ticket))
            .unzip();
        match apply_batch(&store, &entries, None) {
            Ok(outcomes) => {
                metrics.commits.fetch_add(1, Ordering::Relaxed);
                hand_over(LogEvent::Committed(committed(entries, outcomes, tickets)));
            }
            Err(error) if tickets.len() > 1 => {
                // One bad write must not fail the others: apply them alone.
                tracing::warn!(%error, writes = tickets.len(), "a batch failed to commit; retrying its writes one by one");
                for (entry, ticket) in entries.into_iter().zip(tickets) {
                    match apply_batch(&store, std::slice::from_ref(&entry), None) {
                        Ok(outcome) => hand_over(LogEvent::Committed(committed(vec![entry], outcome, vec![ticket]))),
                        Err(error) => {
                            tracing::error!(%error, "a write failed to commit; its writer was told nothing was stored");
                            hand_over(LogEvent::Refused(vec![ticket], LogError::Storage(error.to_string())));
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "a write failed to commit; its writer was told nothing was stored");
                hand_over(LogEvent::Refused(tickets, LogError::Storage(error.to_string())));
            }
        }
    }
}

/// A commit's writes as the events' consumer sees them.
fn committed(entries: Vec<Entry>, outcomes: Vec<super::write::Outcome>, tickets: Vec<Ticket>) -> Vec<Committed> {
    entries
        .into_iter()
        .zip(outcomes)
        .zip(tickets)
        .map(|((entry, outcome), ticket)| Committed { change: Change::of(&entry.write, &outcome), outcome, ticket })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Conversation, MessageId, MessageText, Username};
    use crate::log::write::{Outcome, Write};

    /// The order the log promises: every message is stored before anyone
    /// hears of it. The consumer reads storage the moment each event
    /// arrives, while the writer goes on committing the rest.
    #[tokio::test]
    async fn a_message_is_stored_before_its_event_is_handed_on_and_events_keep_log_order() {
        let (_dir, store) = crate::storage::test_store();
        let metrics = Arc::new(Metrics::default());
        let (events, mut received) = crate::log::events();
        let log = Embedded::start(store.clone(), events, metrics.clone());
        let conversation = Conversation::from_key("r").unwrap();
        let checker = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut last = MessageId(0);
                let mut seen = 0;
                while let Some(event) = received.recv().await {
                    let LogEvent::Committed(batch) = event else { panic!("a write was refused") };
                    for committed in batch {
                        let Outcome::Stored(message) = committed.outcome else { panic!("not stored") };
                        assert!(message.id > last, "events out of log order");
                        last = message.id;
                        let latest = store.latest_message("r").unwrap().expect("nothing stored yet");
                        assert!(latest.id >= message.id, "message {} handed on before it was stored", message.id);
                        seen += 1;
                    }
                }
                seen
            })
        };
        for i in 0..300 {
            let write = Write::Message {
                conversation: conversation.clone(),
                author: Username::parse("a").unwrap(),
                text: MessageText::parse(&format!("m{i}")).unwrap(),
                ts_ms: 1,
            };
            log.submit(Pending { write, ticket: Ticket::Nobody }).await;
        }
        log.close(Duration::from_secs(10)).await;
        drop(log);
        assert_eq!(checker.await.unwrap(), 300);
        assert!(metrics.commits.load(Ordering::Relaxed) <= 300);
    }
}
