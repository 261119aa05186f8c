//! Best-effort messages between the nodes of a cluster, for what must reach
//! every node now but need not last: who is typing, who is online,
//! cluster-wide sign-in throttling. The opposite of the write log on every
//! count: nothing is stored, nothing is ordered across nodes, nothing is
//! confirmed or resent, and a node that is away misses what was said.
//!
//! Over RabbitMQ: one fanout exchange per chat (`<stream>.relay`, not
//! durable) and one exclusive, auto-deleted queue per node bound to it, so
//! each message costs the broker one routing and no disk. The relay carries
//! opaque bytes; `chat::ephemeral` gives them meaning. It reconnects by
//! itself, with backoff; while it is down, messages to send are dropped.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::mpsc;

use crate::shutdown::Stopping;

/// Messages waiting to go out; past it new ones are dropped (best effort).
const OUTBOX: usize = 4096;
/// Messages received and not yet taken by the consumer; past it the relay
/// waits, and the broker holds them in this node's queue.
const INBOX: usize = 4096;
/// The header naming the sending node, so that a node skips its own.
const NODE_HEADER: &str = "chatctl-node";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HEARTBEAT_SECS: u16 = 10;

/// The sending end of a running relay.
#[derive(Clone)]
pub struct Relay {
    outbox: mpsc::Sender<Vec<u8>>,
}

/// Where a relay connects.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The cluster's broker (`--amqp-url`); the relay opens its own connection beside the log's.
    pub url: String,
    /// The fanout exchange every node of one chat shares.
    pub exchange: String,
}

impl RelayConfig {
    /// The relay of the chat whose write log is the stream `stream`.
    pub fn for_stream(url: &str, stream: &str) -> RelayConfig {
        RelayConfig { url: url.to_owned(), exchange: format!("{stream}.relay") }
    }
}

impl Relay {
    /// Starts the relay for this node (`node`: its random id); what other
    /// nodes send arrives on the returned receiver. Runs until shutdown.
    pub fn start(config: RelayConfig, node: u64, stopping: Stopping) -> (Relay, mpsc::Receiver<Vec<u8>>) {
        let (outbox, to_send) = mpsc::channel(OUTBOX);
        let (inbox, received) = mpsc::channel(INBOX);
        tokio::spawn(supervise(config, node, to_send, inbox, stopping));
        (Relay { outbox }, received)
    }

    /// Sends `message` to every other node, if the relay is up and not
    /// swamped; never waits.
    pub fn send(&self, message: Vec<u8>) {
        let _ = self.outbox.try_send(message);
    }
}

/// Connects, relays until the connection fails, and reconnects with a
/// backoff doubling from 100 ms to 10 s, until shutdown.
async fn supervise(
    config: RelayConfig,
    node: u64,
    mut to_send: mpsc::Receiver<Vec<u8>>,
    inbox: mpsc::Sender<Vec<u8>>,
    mut stopping: Stopping,
) {
    let _running = stopping.running();
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = tokio::select! {
            _ = stopping.requested() => return,
            ended = run_connection(&config, node, &mut to_send, &inbox) => ended,
        };
        match ended {
            Ok(()) => return, // the node stopped sending and receiving
            Err(error) => {
                tracing::warn!(%error, exchange = %config.exchange, "relay to other nodes lost; reconnecting")
            }
        }
        // What was queued while down is stale: typing and presence move on.
        while to_send.try_recv().is_ok() {}
        tokio::select! {
            _ = stopping.requested() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn run_connection(
    config: &RelayConfig,
    node: u64,
    to_send: &mut mpsc::Receiver<Vec<u8>>,
    inbox: &mpsc::Sender<Vec<u8>>,
) -> Result<(), String> {
    let mut uri = crate::log::amqp_url::parse(&config.url)?;
    uri.query.heartbeat = uri.query.heartbeat.or(Some(HEARTBEAT_SECS));
    let connection =
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, ConnectionProperties::default()))
            .await
            .map_err(|_| format!("connecting timed out after {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
    let channel = connection.create_channel().await.map_err(|e| e.to_string())?;
    let exchange = ShortString::from(config.exchange.as_str());
    let transient = ExchangeDeclareOptions { durable: false, auto_delete: false, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(exchange.clone(), ExchangeKind::Fanout, transient, FieldTable::default())
        .await
        .map_err(|e| e.to_string())?;
    let own_queue = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
    let queue = channel
        .queue_declare(ShortString::from(""), own_queue, FieldTable::default())
        .await
        .map_err(|e| e.to_string())?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.clone(),
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let no_ack = BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() };
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            ShortString::from(format!("relay-{node:016x}")),
            no_ack,
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(exchange = %config.exchange, "relaying to other nodes");
    let mut headers = FieldTable::default();
    headers.insert(ShortString::from(NODE_HEADER), AMQPValue::LongLongInt(node as i64));
    let properties = BasicProperties::default().with_headers(headers);
    loop {
        tokio::select! {
            outgoing = to_send.recv() => {
                let Some(message) = outgoing else { return Ok(()) };
                // No confirm: a lost message is as good as a late one here.
                channel
                    .basic_publish(exchange.clone(), ShortString::from(""), BasicPublishOptions::default(), &message, properties.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            incoming = consumer.next() => {
                let delivery = incoming.ok_or("the relay consumer was cancelled")?.map_err(|e| e.to_string())?;
                if sender_of(&delivery.properties) == Some(node) {
                    continue;
                }
                if inbox.send(delivery.data).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// The node that sent a delivery, from its header.
fn sender_of(properties: &BasicProperties) -> Option<u64> {
    match properties.headers().as_ref()?.inner().get(&ShortString::from(NODE_HEADER))? {
        AMQPValue::LongLongInt(node) => Some(*node as u64),
        _ => None,
    }
}
