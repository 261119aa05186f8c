//! A cluster node's log: a RabbitMQ stream is the cluster's one ordered
//! record of every write. A node publishes its writes (with publisher
//! confirms) and applies nothing locally until it reads them back; every
//! node consumes the stream from the offset it last applied, which is
//! stored in redb in the same transaction as the writes, so applying is
//! exactly-once and a restart resumes where it stopped. Writes travel many
//! to a stream record; the record's offset and the write's place in it are
//! the order all nodes agree on, and a message's id (`write::position`).
//!
//! lapin does not reconnect by itself: `supervise` reconnects with backoff
//! and jitter, republishes what was not confirmed (applied once thanks to
//! the (node, seq) check in `apply`), and resumes consuming.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::mpsc;

use super::apply::{apply_batch, Entry};
use super::write::{encode_record, Envelope, Outcome, Record, Write, RECORD_BYTES, RECORD_SLOTS};
use super::{Change, Committed, Events, LogError, LogEvent, Pending, Ticket};
use crate::metrics::Metrics;
use crate::storage::Store;

/// Where the cluster's log lives.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The broker, as `amqp://` or `amqps://` (see `amqp_url`).
    pub url: String,
    /// The stream queue's name; every node of one chat uses the same.
    pub stream: String,
    /// Retention: `x-max-age` (e.g. `30D`, `12h`), `x-max-length-bytes`.
    pub max_age: Option<String>,
    /// Retention by size (`x-max-length-bytes`); a node that falls behind
    /// past it must be seeded anew.
    pub max_bytes: Option<u64>,
}

/// Writes published and not yet confirmed, at most; past it senders wait.
const QUEUE_CAPACITY: usize = 16 * 1024;
const PUBLISH_BATCH: usize = 1024;
/// Records per transaction at most, and their bytes: a record holds up to
/// 1,024 writes, so catching up on a busy history must be capped by size too.
const APPLY_BATCH: usize = 4096;
const APPLY_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Records in flight to this node before it acks (each up to 512 KiB).
const PREFETCH: u16 = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);
/// AMQP heartbeat unless the URL sets one: a dead link shows within ~20 s.
const HEARTBEAT_SECS: u16 = 10;

/// This node's handle on the cluster's log; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    queue: mpsc::Sender<Pending>,
    state: Arc<State>,
    supervisor: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

struct State {
    /// This process's id in the stream: a restart is a new writer.
    node: u64,
    connected: AtomicBool,
    caught_up: AtomicBool,
    /// The seq of the marker this connection published; reading it back
    /// means caught up.
    marker_seq: AtomicU64,
    closing: AtomicBool,
    /// Set when this node cannot go on without an operator (a gap in the stream).
    fatal: Mutex<Option<String>>,
    /// The last connection problem, for `/readyz`.
    problem: Mutex<Option<String>>,
    /// This node's writes in flight, by `seq`, until read back and applied.
    waiting: Mutex<HashMap<u64, Ticket>>,
    /// Where committed writes and refusals go.
    events: Events,
    /// Bumped after each applied batch and each lost connection, so that
    /// `close` waits on progress instead of polling.
    progress: tokio::sync::watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Starts the connection supervisor; the node is not ready until it has
    /// connected and caught up on the stream.
    pub fn start(config: ClusterConfig, store: Store, events: Events, metrics: Arc<Metrics>) -> Cluster {
        let mut node_bytes = [0u8; 8];
        getrandom::fill(&mut node_bytes).expect("the OS random source is available");
        let state = Arc::new(State {
            node: u64::from_le_bytes(node_bytes),
            connected: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            marker_seq: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            fatal: Mutex::new(None),
            problem: Mutex::new(Some("connecting to RabbitMQ".into())),
            waiting: Mutex::new(HashMap::new()),
            events,
            metrics,
            progress: tokio::sync::watch::Sender::new(0),
        });
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let watched = state.clone();
        let supervisor = tokio::spawn(async move {
            let run = std::panic::AssertUnwindSafe(supervise(config, store, watched.clone(), receiver));
            if futures_lite::FutureExt::catch_unwind(run).await.is_err() {
                // Never a silent zombie: say so in /readyz and refuse writes.
                watched.connected.store(false, Ordering::Relaxed);
                *lock(&watched.fatal) =
                    Some("the cluster log stopped after an internal error; restart this node".into());
            }
        });
        Cluster { queue, state, supervisor: Arc::new(Mutex::new(Some(supervisor))) }
    }

    /// Queues a write for the stream. While the broker is unreachable the
    /// write is refused at once (`unavailable`): nothing is accepted and
    /// then dropped.
    pub async fn submit(&self, pending: Pending) {
        if let Err(reason) = self.accepting() {
            return pending.ticket.refuse(LogError::Unavailable(reason), &self.state.events).await;
        }
        if let Err(refused) = self.queue.send(pending).await {
            refused.0.ticket.refuse(LogError::Unavailable("the log has stopped".into()), &self.state.events).await;
        }
    }

    fn accepting(&self) -> Result<(), String> {
        if let Some(fatal) = lock(&self.state.fatal).clone() {
            return Err(fatal);
        }
        if self.state.closing.load(Ordering::Relaxed) {
            return Err("the server is shutting down".into());
        }
        if !self.state.connected.load(Ordering::Relaxed) {
            let problem = lock(&self.state.problem).clone().unwrap_or_default();
            return Err(format!("RabbitMQ is unreachable ({problem}); reconnecting"));
        }
        Ok(())
    }

    /// Connected to the broker (caught up or not yet).
    pub fn connected(&self) -> bool {
        self.state.connected.load(Ordering::Relaxed)
    }

    /// This process's random id as a writer of the stream; the relay
    /// (`crate::relay`) names the node by it too.
    pub fn node_id(&self) -> u64 {
        self.state.node
    }

    /// `Ok` once connected and caught up on the stream; else why not (`/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        self.accepting()?;
        if !self.state.caught_up.load(Ordering::Relaxed) {
            return Err("catching up on the stream".into());
        }
        Ok(())
    }

    /// Refuses new writes, waits until this node's writes in flight are
    /// applied (or `within` passes), then disconnects and releases the
    /// database. What was published is in the stream either way.
    pub async fn close(&self, within: Duration) {
        self.state.closing.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + within;
        let mut progress = self.state.progress.subscribe();
        while self.state.connected.load(Ordering::Relaxed)
            && (!lock(&self.state.waiting).is_empty() || self.queue.capacity() < QUEUE_CAPACITY)
        {
            // Woken by each applied batch or a lost connection.
            if tokio::time::timeout_at(deadline, progress.changed()).await.is_err() {
                break;
            }
        }
        let supervisor = lock(&self.supervisor).take();
        if let Some(supervisor) = supervisor {
            supervisor.abort();
            let _ = supervisor.await;
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Broker(#[from] lapin::Error),
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Other(String),
    /// The node cannot continue without an operator.
    #[error("{0}")]
    Fatal(String),
}

/// Connects, runs until the connection fails, and reconnects with
/// exponential backoff and jitter, for as long as the process lives.
async fn supervise(config: ClusterConfig, store: Store, state: Arc<State>, mut queue: mpsc::Receiver<Pending>) {
    let mut outbox = Outbox { next_seq: 1, unconfirmed: VecDeque::new() };
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = tokio::time::Instant::now();
        let ended = run_connection(&config, &store, &state, &mut queue, &mut outbox).await;
        state.connected.store(false, Ordering::Relaxed);
        state.progress.send_modify(|count| *count += 1);
        state.caught_up.store(false, Ordering::Relaxed);
        // Writes still queued were never published: refuse them now rather
        // than let their senders wait for a reconnect.
        while let Ok(pending) = queue.try_recv() {
            let error = LogError::Unavailable("the connection to RabbitMQ was lost; retry".into());
            pending.ticket.refuse(error, &state.events).await;
        }
        let error = match ended {
            Ok(()) => return, // the write queue closed: the process is ending
            Err(error) => error,
        };
        if let LinkError::Fatal(reason) = &error {
            tracing::error!("{reason}");
            *lock(&state.fatal) = Some(reason.clone());
            // Nothing more will be applied: answer whoever waits.
            let waiting: Vec<Ticket> = lock(&state.waiting).drain().map(|(_, ticket)| ticket).collect();
            for ticket in waiting {
                ticket.refuse(LogError::Unavailable(reason.clone()), &state.events).await;
            }
            return;
        }
        *lock(&state.problem) = Some(error.to_string());
        if matches!(error, LinkError::Storage(_)) && store.write_failure().is_some() {
            // Reconnecting cannot apply anything until the database takes
            // writes again (`storage::recovery`); then resume at once.
            tracing::warn!(%error, "storage cannot write; reconnecting once it can");
            store.until_writable().await;
            backoff = Duration::from_millis(100);
            continue;
        }
        tracing::warn!(%error, "RabbitMQ connection lost; reconnecting");
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(jittered(backoff)).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// A random duration in [d/2, d]: spread reconnects of many nodes.
fn jittered(d: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    let fraction = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    d.mul_f64(0.5 + fraction / 2.0)
}

/// This node's writes that are serialised but not yet confirmed by the
/// broker; kept across reconnects and published again.
struct Outbox {
    next_seq: u64,
    unconfirmed: VecDeque<Vec<u8>>,
}

impl Outbox {
    fn seal(&mut self, node: u64, write: Write) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = serde_json::to_vec(&Envelope { node, seq, write }).expect("writes serialise infallibly");
        self.unconfirmed.push_back(bytes);
        seq
    }

    /// The unconfirmed writes as stream records, in order. After a
    /// reconnect they may be grouped differently; `apply` skips any write
    /// it already has by (node, seq).
    fn records(&self) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut start = 0;
        while start < self.unconfirmed.len() {
            let (mut end, mut bytes) = (start, 0);
            while end < self.unconfirmed.len()
                && (end - start) < RECORD_SLOTS as usize
                && (end == start || bytes + self.unconfirmed[end].len() <= RECORD_BYTES)
            {
                bytes += self.unconfirmed[end].len();
                end += 1;
            }
            records.push(encode_record(self.unconfirmed.range(start..end).map(Vec::as_slice)));
            start = end;
        }
        records
    }
}

async fn run_connection(
    config: &ClusterConfig,
    store: &Store,
    state: &Arc<State>,
    queue: &mut mpsc::Receiver<Pending>,
    outbox: &mut Outbox,
) -> Result<(), LinkError> {
    let mut uri = super::amqp_url::parse(&config.url).map_err(LinkError::Fatal)?;
    uri.query.heartbeat = uri.query.heartbeat.or(Some(HEARTBEAT_SECS));
    let connection =
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, ConnectionProperties::default()))
            .await
            .map_err(|_| LinkError::Timeout(CONNECT_TIMEOUT))??;
    let publisher = connection.create_channel().await?;
    declare_stream(&publisher, config).await?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    let reader = connection.create_channel().await?;
    reader.basic_qos(PREFETCH, BasicQosOptions::default()).await?;

    let resume = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.stream_next_offset())
            .await
            .map_err(|e| LinkError::Storage(e.to_string()))?
            .map_err(|e| LinkError::Storage(e.to_string()))?
    };
    let mut arguments = FieldTable::default();
    let start = match resume {
        Some(next) => AMQPValue::LongLongInt(i64::try_from(next).unwrap_or(i64::MAX)),
        None => AMQPValue::LongString(LongString::from("first")),
    };
    arguments.insert(ShortString::from(super::stream::OFFSET_HEADER), start);
    let consumer = reader
        .basic_consume(
            ShortString::from(config.stream.as_str()),
            ShortString::from(format!("chatctl-{:016x}", state.node)),
            BasicConsumeOptions { no_ack: false, ..BasicConsumeOptions::default() },
            arguments,
        )
        .await?;

    state.connected.store(true, Ordering::Relaxed);
    *lock(&state.problem) = None;
    tracing::info!(stream = %config.stream, resume_at = ?resume, "connected to RabbitMQ");
    // Reading this marker back proves everything before it is applied.
    state.marker_seq.store(outbox.seal(state.node, Write::Marker), Ordering::Relaxed);

    // Applying is never cut short: when publishing fails, the consumer is
    // asked to stop between batches, so a batch it stored is also fanned
    // out and answered before the next connection reads on.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let consuming = consume(consumer, resume, store, state, stopping);
    tokio::pin!(consuming);
    tokio::select! {
        published = publish(&publisher, config, state, queue, outbox) => {
            let _ = stop.send(true);
            let _ = consuming.await;
            published
        }
        consumed = &mut consuming => consumed,
    }
}

async fn declare_stream(channel: &Channel, config: &ClusterConfig) -> Result<(), LinkError> {
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-queue-type"), AMQPValue::LongString(LongString::from("stream")));
    if let Some(age) = &config.max_age {
        arguments.insert(ShortString::from("x-max-age"), AMQPValue::LongString(LongString::from(age.as_str())));
    }
    if let Some(bytes) = config.max_bytes {
        arguments.insert(
            ShortString::from("x-max-length-bytes"),
            AMQPValue::LongLongInt(i64::try_from(bytes).unwrap_or(i64::MAX)),
        );
    }
    channel
        .queue_declare(
            ShortString::from(config.stream.as_str()),
            QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
            arguments,
        )
        .await?;
    Ok(())
}

/// Publishes queued writes in batches and waits for the broker's confirms;
/// what is confirmed leaves the outbox.
async fn publish(
    channel: &Channel,
    config: &ClusterConfig,
    state: &State,
    queue: &mut mpsc::Receiver<Pending>,
    outbox: &mut Outbox,
) -> Result<(), LinkError> {
    loop {
        if !outbox.unconfirmed.is_empty() {
            let mut confirms = Vec::new();
            for record in outbox.records() {
                let confirm = channel
                    .basic_publish(
                        ShortString::from(""),
                        ShortString::from(config.stream.as_str()),
                        BasicPublishOptions::default(),
                        &record,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?;
                confirms.push(confirm);
            }
            let confirmed = tokio::time::timeout(CONFIRM_TIMEOUT, async {
                for confirm in confirms {
                    if confirm.await?.is_nack() {
                        return Err(LinkError::Other("RabbitMQ refused a write (nack)".into()));
                    }
                }
                Ok(())
            });
            // A blocked broker (memory or disk alarm) confirms nothing: give
            // up on this connection and refuse writes until it is back.
            confirmed
                .await
                .map_err(|_| LinkError::Other(format!("no publisher confirm within {CONFIRM_TIMEOUT:?}")))??;
            outbox.unconfirmed.clear();
        }
        let Some(first) = queue.recv().await else { return Ok(()) };
        let mut batch = vec![first];
        while batch.len() < PUBLISH_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut waiting = lock(&state.waiting);
        for pending in batch {
            let seq = outbox.seal(state.node, pending.write);
            waiting.insert(seq, pending.ticket);
        }
    }
}

/// Applies the stream in order, a batch per transaction, then acks:
/// `next_batch` takes what has arrived, `decode_batch` checks offsets and
/// turns records into writes, `apply_and_hand_on` stores them and only
/// then sends them on as a `LogEvent`.
async fn consume(
    mut consumer: Consumer,
    resume: Option<u64>,
    store: &Store,
    state: &State,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let mut next_offset = resume;
    loop {
        let Some(deliveries) = next_batch(&mut consumer, &mut stopping).await? else { return Ok(()) };
        let batch = decode_batch(&deliveries, &mut next_offset, state)?;
        if !batch.entries.is_empty() || next_offset != resume {
            apply_and_hand_on(store, state, batch, next_offset).await?;
        }
        if let Some(last) = deliveries.last() {
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
    }
}

/// The next deliveries: waits for one, then takes whatever else has
/// already arrived, up to `APPLY_BATCH` records or `APPLY_BATCH_BYTES`.
/// `None` once this connection is asked to stop.
async fn next_batch(
    consumer: &mut Consumer,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Vec<Delivery>>, LinkError> {
    let cancelled = || LinkError::Other("the stream consumer was cancelled".into());
    let next = tokio::select! {
        biased;
        _ = async { let _ = stopping.wait_for(|stop| *stop).await; } => return Ok(None),
        next = consumer.next() => next,
    };
    let first = next.ok_or_else(cancelled)??;
    let mut bytes = first.data.len();
    let mut deliveries = vec![first];
    while deliveries.len() < APPLY_BATCH && bytes < APPLY_BATCH_BYTES {
        match futures_lite::future::poll_once(consumer.next()).await {
            Some(Some(delivery)) => {
                let delivery = delivery?;
                bytes += delivery.data.len();
                deliveries.push(delivery);
            }
            Some(None) => return Err(cancelled()),
            None => break,
        }
    }
    Ok(Some(deliveries))
}

/// A batch of deliveries as writes to apply, with the ticket of each
/// (this node's own writes are waited for) and whether it holds the
/// marker this connection published.
struct DecodedBatch {
    entries: Vec<Entry>,
    tickets: Vec<(Ticket, u64)>,
    own_marker: Option<u64>,
}

/// Checks that the offsets follow on from `next_offset` (a gap means
/// retention removed records this node never applied: fatal), skips what
/// was applied before a reconnect, and decodes the rest. Records that are
/// not chatctl's, or writes this version cannot read, keep their places.
fn decode_batch(
    deliveries: &[Delivery],
    next_offset: &mut Option<u64>,
    state: &State,
) -> Result<DecodedBatch, LinkError> {
    let mut batch = DecodedBatch { entries: Vec::new(), tickets: Vec::new(), own_marker: None };
    for delivery in deliveries {
        let offset = super::stream::offset_of(&delivery.properties)
            .ok_or_else(|| LinkError::Other("a delivery without x-stream-offset: is this queue a stream?".into()))?;
        match *next_offset {
            Some(next) if offset < next => continue, // applied before the reconnect
            Some(next) if offset > next => return Err(LinkError::Fatal(truncated(next, offset))),
            None if offset > 0 => return Err(LinkError::Fatal(truncated(0, offset))),
            _ => {}
        }
        *next_offset = Some(offset + 1);
        let Some(record) = Record::decode(&delivery.data) else {
            tracing::warn!(offset, "skipping a stream record that is not a chatctl write");
            continue;
        };
        if record.writes.len() > RECORD_SLOTS as usize {
            tracing::warn!(
                offset,
                writes = record.writes.len(),
                "a stream record holds more writes than fit its positions; the rest are skipped"
            );
        }
        for (index, position, envelope) in record.into_positioned(offset) {
            let Some(envelope) = envelope else {
                tracing::warn!(offset, index, "skipping an element of a stream record that is not a write");
                continue;
            };
            if envelope.write == Write::Unreadable {
                tracing::warn!(offset, index, "skipping a write this version cannot read (from a newer chatctl?)");
            }
            let own = envelope.node == state.node;
            if own && envelope.write == Write::Marker && envelope.seq == state.marker_seq.load(Ordering::Relaxed) {
                batch.own_marker = Some(offset);
            }
            let ticket = if own { lock(&state.waiting).remove(&envelope.seq) } else { None };
            batch.tickets.push((ticket.unwrap_or(Ticket::Nobody), envelope.seq));
            batch.entries.push(Entry {
                position: Some(position),
                origin: Some((envelope.node, envelope.seq)),
                write: envelope.write,
            });
        }
    }
    Ok(batch)
}

/// Stores a decoded batch with the offset that follows it, in one commit,
/// then hands it on. A write that arrived ahead of an earlier one of its
/// writer waits for its resent copy. If the commit fails nothing was
/// applied: the waiters wait on, and the records come again after the
/// reconnect.
async fn apply_and_hand_on(
    store: &Store,
    state: &State,
    batch: DecodedBatch,
    next_offset: Option<u64>,
) -> Result<(), LinkError> {
    let DecodedBatch { entries, tickets, own_marker } = batch;
    let store = store.clone();
    let (applied, entries) = tokio::task::spawn_blocking(move || {
        let applied = apply_batch(&store, &entries, next_offset);
        (applied, entries)
    })
    .await
    .map_err(|e| LinkError::Storage(e.to_string()))?;
    let outcomes = match applied {
        Ok(outcomes) => outcomes,
        Err(error) => {
            let mut waiting = lock(&state.waiting);
            for (ticket, seq) in tickets {
                if !matches!(ticket, Ticket::Nobody) {
                    waiting.insert(seq, ticket);
                }
            }
            return Err(LinkError::Storage(error.to_string()));
        }
    };
    state.metrics.commits.fetch_add(1, Ordering::Relaxed);
    let mut committed = Vec::with_capacity(outcomes.len());
    {
        let mut waiting = lock(&state.waiting);
        for ((entry, (ticket, seq)), outcome) in entries.into_iter().zip(tickets).zip(outcomes) {
            if matches!(outcome, Outcome::OutOfOrder) {
                if !matches!(ticket, Ticket::Nobody) {
                    waiting.insert(seq, ticket);
                }
                continue;
            }
            committed.push(Committed { change: Change::of(&entry.write, &outcome), outcome, ticket });
        }
    }
    if state.events.send(LogEvent::Committed(committed)).await.is_err() {
        return Err(LinkError::Fatal("the log's events have no consumer; restart this node".into()));
    }
    state.progress.send_modify(|count| *count += 1);
    // Ready only once the batch holding our marker is stored.
    if let Some(offset) = own_marker {
        if !state.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(offset, "caught up on the stream; ready");
        }
    }
    Ok(())
}

fn truncated(expected: u64, found: u64) -> String {
    format!(
        "the stream no longer holds offset {expected} (it starts at {found}): its retention removed writes this node never applied. \
         Seed this node from a copy of another node's data dir (stop that node, copy its data dir, start this node on the copy), then start it again"
    )
}
