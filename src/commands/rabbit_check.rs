//! `chatctl rabbit-check`: proves, against the real broker, that `serve
//! --amqp-url` will work there. It connects, round-trips a probe message
//! through a temporary stream queue and reads the state of serve's stream.
//! It changes nothing it did not create, and deletes what it created.

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{connection, AMQPClass};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};

use crate::auth::session::random_hex;
use crate::log::amqp_url;
use crate::log::stream::{self, DEFAULT_STREAM, OFFSET_HEADER};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ErrorKind};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where `serve` and this check look for RabbitMQ when no URL is given.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The RabbitMQ to check: amqp://USER:PASSWORD@HOST:PORT/VHOST (vhost `/` is %2f).
    #[arg(long = "amqp-url", env = "CHATCTL_AMQP_URL", default_value = DEFAULT_URL, hide_env_values = true)]
    pub amqp_url: String,
    /// The stream queue serve uses for the message log.
    #[arg(long = "amqp-stream", env = "CHATCTL_AMQP_STREAM", default_value = DEFAULT_STREAM)]
    pub amqp_stream: String,
    /// Print one JSON object (for scripts) instead of one line per check.
    #[arg(long)]
    pub json: bool,
}

/// TCP connect plus AMQP handshake, for the probe and for each lapin connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Any single broker operation after the handshake.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a consumer of serve's stream waits for its first delivery.
const FIRST_DELIVERY_WAIT: Duration = Duration::from_secs(2);
/// Reading the tail stops once no delivery arrived for this long...
const TAIL_IDLE: Duration = Duration::from_millis(300);
/// ...or after this long in all, so a busy stream cannot keep the check running.
const TAIL_LIMIT: Duration = Duration::from_secs(3);
/// Queue arguments that bound a stream's size or age.
const RETENTION_ARGS: [&str; 3] = ["x-max-age", "x-max-length-bytes", "x-stream-max-segment-size-bytes"];
/// Re-declares tried while learning an existing stream's arguments.
const MAX_REDECLARES: usize = 8;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut report = Report::new(amqp_url::mask(&args.amqp_url), args.json);
    super::runtime().context("starting the async runtime")?.block_on(check(&args, &mut report));
    report.finish()?;
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs the checks in order; each failure is recorded in `report` with its
/// diagnosis, and later checks that build on it are skipped.
async fn check(args: &Args, report: &mut Report) {
    let mut target = match Target::parse(&args.amqp_url) {
        Ok(target) => target,
        Err(why) => return report.fail("url", why),
    };
    // lapin keeps the server's properties to itself, so read them from a
    // handshake of our own (plain AMQP only: amqps would need TLS here too).
    if target.uri.scheme == AMQPScheme::AMQP {
        match tokio::time::timeout(CONNECT_TIMEOUT, read_server(&target)).await {
            Ok(Ok(server)) => {
                report.server = Some(server.clone());
                target.server = Some(server);
            }
            Ok(Err(why)) => return report.fail("connect", why),
            Err(_) => return report.fail("connect", diagnose(&Failure::Timeout, Phase::Connect, &target)),
        }
    }
    let properties = ConnectionProperties::default().with_connection_name("chatctl rabbit-check".into());
    let connection = match within(CONNECT_TIMEOUT, Connection::connect_uri(target.uri.clone(), properties)).await {
        Ok(connection) => connection,
        Err(failure) => return report.fail("connect", diagnose(&failure, Phase::Connect, &target)),
    };
    let server = report.server.as_ref().map(|s| format!(": {} {}", s.product, s.version)).unwrap_or_default();
    report.pass("connect", format!("{} as user {}, vhost {}{server}", target.masked, target.user(), target.vhost()));

    round_trip(&connection, &target, report).await;
    if let Some(why) = stream_name_problem(&args.amqp_stream) {
        report.fail("stream", why);
    } else if connection.status().connected() {
        inspect_stream(&connection, &target, &args.amqp_stream, report).await;
    } else {
        report.fail("stream", format!("not checked: the connection to {} was lost", target.addr()));
    }
    let _ = within(STEP_TIMEOUT, connection.close(200, "rabbit-check done".into())).await;
}

/// Why serve could not declare a stream by this name, if it could not.
fn stream_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some(format!("--amqp-stream is empty; give the stream a name (the default is {DEFAULT_STREAM})"))
    } else if name.len() > 255 {
        Some(format!("--amqp-stream is {} bytes long; AMQP queue names stop at 255", name.len()))
    } else if name.starts_with("amq.") {
        Some(format!("--amqp-stream {name}: names starting with `amq.` are reserved by RabbitMQ; pick another"))
    } else {
        None
    }
}

/// Declares a temporary stream, publishes a probe with confirms, consumes it
/// back from offset "first", then deletes the stream whatever happened.
async fn round_trip(connection: &Connection, target: &Target, report: &mut Report) {
    let name = format!("chatctl.rabbit-check.{}", random_hex::<6>());
    let declared = async {
        let channel = connection.create_channel().await?;
        channel.queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), stream_arguments()).await?;
        let _ = channel.close(200, "declared".into()).await;
        Ok::<_, lapin::Error>(())
    };
    let deleted = async {
        let channel = connection.create_channel().await?;
        channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await?;
        let _ = channel.close(200, "deleted".into()).await;
        Ok::<_, lapin::Error>(())
    };
    if let Err(failure) = within(STEP_TIMEOUT, declared).await {
        report.fail("declare", diagnose(&failure, Phase::Declare(&name), target));
        if matches!(failure, Failure::Timeout) {
            // The declare may have landed after all.
            let _ = within(STEP_TIMEOUT, deleted).await;
        }
        return;
    }
    report.pass("declare", format!("temporary stream queue {name} (x-queue-type: stream)"));

    if let Err((check, why)) = publish_and_consume(connection, target, &name, report).await {
        report.fail(check, why);
    }

    // The probe's channels may have been closed by an error: `deleted` uses a fresh one.
    match within(STEP_TIMEOUT, deleted).await {
        Ok(()) => report.pass("cleanup", format!("deleted temporary stream queue {name}")),
        Err(failure) => {
            let why = diagnose(&failure, Phase::Delete(&name), target);
            report.fail(
                "cleanup",
                format!("{why}; delete it by hand: `rabbitmqctl delete_queue -p '{}' {name}`", target.vhost()),
            );
        }
    }
}

/// The publish and consume half of the round trip. The consumer subscribes
/// first and reads while the publish waits for its confirm, so the latency is
/// publish → delivered, whichever of delivery and confirm comes first.
async fn publish_and_consume(
    connection: &Connection,
    target: &Target,
    name: &str,
    report: &mut Report,
) -> Result<(), (&'static str, String)> {
    let consume_failed = |failure: Failure| ("consume", diagnose(&failure, Phase::Consume(name), target));
    let reader = within(STEP_TIMEOUT, connection.create_channel()).await.map_err(consume_failed)?;
    let subscribed = within(STEP_TIMEOUT, subscribe(&reader, name, "chatctl.rabbit-check.probe", "first", 1)).await;
    let mut consumer = match subscribed {
        Ok(consumer) => consumer,
        Err(failure) => {
            let _ = within(STEP_TIMEOUT, reader.close(200, "probe failed".into())).await;
            return Err(consume_failed(failure));
        }
    };
    let outcome = match connect_publisher(target, name).await {
        Ok((publisher, channel)) => {
            let outcome = round_trip_probe(&publisher, &channel, &mut consumer, target, name).await;
            // A blocked connection does not read its close: do not wait long for it.
            let _ = within(Duration::from_secs(1), publisher.close(200, "probe sent".into())).await;
            outcome
        }
        Err(why) => Err(why),
    };
    finish_consumer(&reader, &consumer).await;
    let (confirmed, delivered) = outcome.map_err(|why| ("publish", why))?;
    report.pass("publish", format!("probe published through the default exchange, confirmed in {confirmed:.1} ms"));
    let (delivered, offset) = delivered.map_err(|why| ("consume", why))?;
    report.latency_ms = Some((delivered * 10.0).round() / 10.0);
    let offset = match offset {
        Some(offset) => format!("at offset {offset}"),
        None => format!("(without an {OFFSET_HEADER} header)"),
    };
    report
        .pass("consume", format!("probe read back from offset \"first\" {offset}, {delivered:.1} ms after publishing"));
    Ok(())
}

/// Publishing gets a connection of its own: RabbitMQ blocks a publishing
/// connection during a memory or disk alarm, and the deletes and reads that
/// follow must not be stuck behind it (serve should do the same). Gives the
/// connection and a channel in confirm mode.
async fn connect_publisher(target: &Target, name: &str) -> Result<(Connection, Channel), String> {
    let failed = |failure: Failure| diagnose(&failure, Phase::Publish(name), target);
    let properties = ConnectionProperties::default().with_connection_name("chatctl rabbit-check publisher".into());
    let publisher =
        within(CONNECT_TIMEOUT, Connection::connect_uri(target.uri.clone(), properties)).await.map_err(failed)?;
    let channel = async {
        let channel = publisher.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok::<_, lapin::Error>(channel)
    };
    match within(STEP_TIMEOUT, channel).await {
        Ok(channel) => Ok((publisher, channel)),
        Err(failure) => {
            let _ = within(Duration::from_secs(1), publisher.close(200, "probe failed".into())).await;
            Err(failed(failure))
        }
    }
}

/// The milliseconds to the confirm, and to the delivery with its offset.
type ProbeTimes = (f64, Result<(f64, Option<u64>), String>);

/// Publishes the probe with a confirm while `consumer` waits for it; the
/// error is the publish's diagnosis.
async fn round_trip_probe(
    publisher: &Connection,
    channel: &Channel,
    consumer: &mut Consumer,
    target: &Target,
    name: &str,
) -> Result<ProbeTimes, String> {
    let marker = random_hex::<8>();
    let started = Instant::now();
    let publish = async {
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let properties = BasicProperties::default().with_message_id(marker.as_str().into());
        let confirmation =
            channel.basic_publish("".into(), name.into(), options, marker.as_bytes(), properties).await?.await?;
        Ok::<_, lapin::Error>((started.elapsed(), confirmation))
    };
    let read = async {
        loop {
            let Some(delivery) = consumer.next().await else {
                return Err(Failure::Other("RabbitMQ cancelled the consumer before the probe arrived".into()));
            };
            let delivery = delivery?;
            let elapsed = started.elapsed();
            delivery.ack(BasicAckOptions::default()).await?;
            if delivery.data == marker.as_bytes() {
                return Ok((elapsed, stream::offset_of(&delivery.properties)));
            }
        }
    };
    let publish = within(STEP_TIMEOUT, publish);
    let read = within(STEP_TIMEOUT, read);
    tokio::pin!(publish, read);
    let (mut published, mut delivered) = (None, None);
    while published.is_none() || delivered.is_none() {
        tokio::select! {
            outcome = &mut publish, if published.is_none() => {
                let failed = outcome.is_err();
                published = Some(outcome);
                if failed {
                    break;
                }
            }
            outcome = &mut read, if delivered.is_none() => delivered = Some(outcome),
        }
    }
    let confirmed = match published {
        Some(Ok((_, confirmation))) if confirmation.is_nack() => {
            return Err(format!(
                "RabbitMQ refused (nacked) the probe to {name}; see its log (`rabbitmq-diagnostics -q log_tail`)"
            ));
        }
        Some(Ok((elapsed, confirmation))) => match confirmation.take_message() {
            Some(returned) => {
                return Err(format!(
                    "the default exchange did not route the probe to {name} ({} {}); serve's publishes would be lost",
                    returned.reply_code, returned.reply_text
                ))
            }
            None => elapsed,
        },
        Some(Err(Failure::Timeout)) if publisher.status().blocked() => {
            return Err("RabbitMQ blocked the publishing connection (connection.blocked): a memory or disk alarm \
                        is on, and serve could not publish either. See `rabbitmq-diagnostics -q alarms` and free \
                        memory or disk (or raise `vm_memory_high_watermark` / `disk_free_limit`)"
                .to_owned())
        }
        Some(Err(failure)) => return Err(diagnose(&failure, Phase::Publish(name), target)),
        None => return Err("the probe's publish never finished".to_owned()),
    };
    let delivered = match delivered {
        Some(Ok((elapsed, offset))) => Ok((millis(elapsed), offset)),
        Some(Err(failure)) => Err(diagnose(&failure, Phase::Consume(name), target)),
        None => Err("the probe was never read back".to_owned()),
    };
    Ok((millis(confirmed), delivered))
}

/// Reports on the stream serve will use: whether it exists, that it is a
/// stream, its size, offsets and retention. Never creates it.
async fn inspect_stream(connection: &Connection, target: &Target, name: &str, report: &mut Report) {
    let mut state = StreamState { name: name.to_owned(), ..StreamState::default() };
    let check = "stream";
    let failed = |failure: Failure| diagnose(&failure, Phase::Inspect(name), target);

    // A passive declare of a missing queue closes its channel with 404: use
    // a channel of its own for it.
    let passive = async {
        let channel = connection.create_channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let queue = channel.queue_declare(name.into(), options, FieldTable::default()).await?;
        let _ = channel.close(200, "inspected".into()).await;
        Ok::<_, lapin::Error>(queue)
    };
    let queue = match within(STEP_TIMEOUT, passive).await {
        Ok(queue) => queue,
        Err(failure) if failure.amqp_code() == Some(404) => {
            report.stream = Some(state);
            return report.pass(check, format!("{name} does not exist yet; serve declares it on first start"));
        }
        Err(failure) => {
            report.stream = Some(state);
            return report.fail(check, failed(failure));
        }
    };
    state.exists = true;
    state.messages = Some(queue.message_count());
    state.consumers = Some(queue.consumer_count());

    match stream_arguments_of(connection, name).await {
        Ok(Kind::Stream(retention)) => {
            state.queue_type = Some("stream".into());
            state.retention = Some(retention);
        }
        Ok(Kind::NotStream(why)) => {
            state.queue_type = Some("not a stream".into());
            report.stream = Some(state);
            let vhost = target.vhost();
            return report.fail(
                check,
                format!(
                    "{name} exists but is not a stream queue ({why}); serve cannot use it. Delete it \
                     (`rabbitmqctl delete_queue -p '{vhost}' {name}`, which drops its messages) or pick \
                     another --amqp-stream"
                ),
            );
        }
        Err(failure) => {
            report.stream = Some(state);
            return report.fail(check, failed(failure));
        }
    }

    match read_offsets(connection, name).await {
        Ok((first, last, exact)) => {
            state.first_offset = first;
            state.last_offset = last;
            state.last_offset_exact = last.map(|_| exact);
            // A stream's declare-ok always counts 0; its offsets are contiguous.
            if let (Some(first), Some(last)) = (first, last) {
                state.messages = last.checked_sub(first).and_then(|n| u32::try_from(n + 1).ok());
            }
        }
        Err(failure) => {
            report.stream = Some(state);
            return report.fail(check, failed(failure));
        }
    }
    let detail = stream_detail(&state);
    report.stream = Some(state);
    report.pass(check, detail);
}

/// What a re-declare says about an existing queue.
enum Kind {
    /// A stream, with the retention arguments it was declared with.
    Stream(Vec<(String, String)>),
    /// Something else, with the broker's words.
    NotStream(String),
}

/// Finds out whether `name` is a stream and with which retention, by
/// re-declaring it as a stream: RabbitMQ accepts that only when the
/// arguments match, and when they do not its refusal names the current
/// value ("received none but current is the value '7D' of type 'longstr'"),
/// which the next attempt then includes. A matching declare changes nothing.
async fn stream_arguments_of(connection: &Connection, name: &str) -> Result<Kind, Failure> {
    let mut known: Vec<(String, AMQPValue)> = Vec::new();
    for _ in 0..MAX_REDECLARES {
        let mut arguments = stream_arguments();
        for (key, value) in &known {
            if let Ok(key) = ShortString::try_new(key.as_str()) {
                arguments.insert(key, value.clone());
            }
        }
        let declared = async {
            let channel = connection.create_channel().await?;
            channel.queue_declare(name.into(), QueueDeclareOptions::durable(), arguments).await?;
            let _ = channel.close(200, "inspected".into()).await;
            Ok::<_, lapin::Error>(())
        };
        let failure = match within(STEP_TIMEOUT, declared).await {
            Ok(()) => {
                let retention = known
                    .iter()
                    .filter(|(key, _)| RETENTION_ARGS.contains(&key.as_str()))
                    .map(|(key, value)| (key.clone(), value_text(value)))
                    .collect();
                return Ok(Kind::Stream(retention));
            }
            Err(failure) => failure,
        };
        let Some(message) = failure.amqp_message().filter(|_| failure.amqp_code() == Some(406)) else {
            return Err(failure);
        };
        match inequivalent_arg(&message) {
            Some((key, _)) if key == "x-queue-type" || key == "durable" => return Ok(Kind::NotStream(message)),
            Some((key, Some(value))) if !known.iter().any(|(k, _)| *k == key) => known.push((key, value)),
            _ => return Err(failure),
        }
    }
    Err(Failure::Other(format!("RabbitMQ kept refusing to re-declare {name} as a stream")))
}

/// Reads the first offset (from "first", prefetch 1) and the last one (from
/// "last", which starts at the last chunk, read until it goes quiet); false
/// when the tail was still arriving at the time limit.
async fn read_offsets(connection: &Connection, name: &str) -> Result<(Option<u64>, Option<u64>, bool), Failure> {
    let first = async {
        let channel = within(STEP_TIMEOUT, connection.create_channel()).await?;
        let mut consumer =
            within(STEP_TIMEOUT, subscribe(&channel, name, "chatctl.rabbit-check.first", "first", 1)).await?;
        let first = match tokio::time::timeout(FIRST_DELIVERY_WAIT, consumer.next()).await {
            Ok(Some(delivery)) => stream::offset_of(&delivery?.properties),
            Ok(None) | Err(_) => None,
        };
        finish_consumer(&channel, &consumer).await;
        Ok::<_, Failure>(first)
    }
    .await?;
    if first.is_none() {
        return Ok((None, None, true));
    }

    let channel = within(STEP_TIMEOUT, connection.create_channel()).await?;
    let mut consumer =
        within(STEP_TIMEOUT, subscribe(&channel, name, "chatctl.rabbit-check.last", "last", 100)).await?;
    let started = Instant::now();
    let mut last = None;
    let mut exact = false;
    while started.elapsed() < TAIL_LIMIT {
        let wait = if last.is_none() { FIRST_DELIVERY_WAIT } else { TAIL_IDLE };
        let delivery = match tokio::time::timeout(wait, consumer.next()).await {
            Ok(Some(delivery)) => delivery?,
            Ok(None) | Err(_) => {
                exact = true;
                break;
            }
        };
        last = last.max(stream::offset_of(&delivery.properties));
        delivery.ack(BasicAckOptions::default()).await?;
    }
    finish_consumer(&channel, &consumer).await;
    Ok((first, last.or(first), exact))
}

/// Sets the prefetch streams require and starts a manual-ack consumer at `offset`.
async fn subscribe(channel: &Channel, queue: &str, tag: &str, offset: &str, prefetch: u16) -> lapin::Result<Consumer> {
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let mut arguments = FieldTable::default();
    arguments.insert(OFFSET_HEADER.into(), AMQPValue::LongString(offset.into()));
    channel.basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), arguments).await
}

/// Cancels a consumer and closes its channel, best effort: the check's
/// result no longer depends on them.
async fn finish_consumer(channel: &Channel, consumer: &Consumer) {
    let _ = within(STEP_TIMEOUT, channel.basic_cancel(consumer.tag(), BasicCancelOptions::default())).await;
    let _ = within(STEP_TIMEOUT, channel.close(200, "inspected".into())).await;
}

/// The arguments serve declares its stream with, minus retention.
fn stream_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
    arguments
}

/// The human line for an existing stream.
fn stream_detail(state: &StreamState) -> String {
    let contents = match (state.first_offset, state.last_offset) {
        (Some(first), Some(last)) if state.last_offset_exact != Some(false) => {
            format!("{} message(s), offsets {first}..{last}", (last + 1).saturating_sub(first))
        }
        (Some(first), Some(last)) => format!("offsets {first}..{last} or more (still growing)"),
        _ => format!("empty (nothing delivered from offset \"first\" within {} s)", FIRST_DELIVERY_WAIT.as_secs()),
    };
    let consumers = state.consumers.map(|n| format!(", {n} consumer(s)")).unwrap_or_default();
    let retention = match state.retention.as_deref() {
        Some([]) => "no retention limit set".to_owned(),
        Some(args) => args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        None => "retention unknown".into(),
    };
    format!("{} exists (stream queue): {contents}{consumers}; {retention}", state.name)
}

/// Parses RabbitMQ's "inequivalent arg 'KEY' for queue ... received ... but
/// current is the value 'VALUE' of type 'TYPE'" into the key and, when the
/// type is one a declare can send back, the current value.
fn inequivalent_arg(message: &str) -> Option<(String, Option<AMQPValue>)> {
    let rest = message.split_once("inequivalent arg '")?.1;
    let (key, rest) = rest.split_once('\'')?;
    let value = rest.split_once("current is the value '").and_then(|(_, rest)| {
        let (value, rest) = rest.rsplit_once("' of type '")?;
        let kind = rest.strip_suffix('\'')?;
        match kind {
            "longstr" => Some(AMQPValue::LongString(value.into())),
            // RabbitMQ compares integers by value, whatever their width.
            "byte" | "short" | "signedint" | "long" | "unsignedbyte" | "unsignedshort" | "unsignedint" => {
                value.parse().ok().map(AMQPValue::LongLongInt)
            }
            "bool" => value.parse().ok().map(AMQPValue::Boolean),
            _ => None,
        }
    });
    Some((key.to_owned(), value))
}

/// An argument value as a person reads it.
fn value_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Opens a plain AMQP handshake of our own and reads the broker's product and
/// version from its connection.start, then hangs up.
async fn read_server(target: &Target) -> Result<Server, String> {
    let unreachable = |error: std::io::Error| diagnose(&Failure::Io(error), Phase::Connect, target);
    let host = target.uri.authority.host.as_str();
    let mut socket = TcpStream::connect((host, target.uri.authority.port)).await.map_err(unreachable)?;
    socket.write_all(b"AMQP\x00\x00\x09\x01").await.map_err(unreachable)?;
    let not_amqp = |what: &str| {
        format!(
            "something answers at {} but it is not an AMQP 0-9-1 broker ({what}); is this RabbitMQ's AMQP \
             port (5672, or 5671 with amqps://)?",
            target.addr()
        )
    };
    let mut header = [0u8; 7];
    socket.read_exact(&mut header).await.map_err(|_| not_amqp("it closed the connection"))?;
    if header.starts_with(b"AMQP") {
        return Err(not_amqp("it speaks another AMQP version"));
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > 1 << 20 {
        return Err(not_amqp("its first frame is not connection.start"));
    }
    let mut payload = vec![0u8; size + 1];
    socket.read_exact(&mut payload).await.map_err(|_| not_amqp("it sent a short frame"))?;
    let _ = socket.shutdown().await;
    match lapin::protocol::parse_class(&payload[..size]) {
        Ok((_, AMQPClass::Connection(connection::AMQPMethod::Start(start)))) => {
            Ok(Server::from_properties(&start.server_properties))
        }
        _ => Err(not_amqp("its first frame is not connection.start")),
    }
}

/// The broker's self-description from connection.start.
#[derive(Serialize, Debug, Clone, PartialEq)]
struct Server {
    product: String,
    version: String,
}

impl Server {
    fn from_properties(properties: &FieldTable) -> Server {
        let text = |key: &str| properties.inner().get(key).map(value_text).unwrap_or_else(|| "unknown".into());
        Server { product: text("product"), version: text("version") }
    }

    /// False only for a RabbitMQ known to predate stream queues (3.9).
    fn may_have_streams(&self) -> bool {
        let mut parts = self.version.split('.').map(|part| part.parse::<u32>().ok());
        match (self.product.as_str(), parts.next().flatten(), parts.next().flatten()) {
            ("RabbitMQ", Some(major), Some(minor)) => (major, minor) >= (3, 9),
            _ => true,
        }
    }
}

/// The state of serve's stream, as `--json` reports it.
#[derive(Serialize, Debug, Default)]
struct StreamState {
    name: String,
    exists: bool,
    #[serde(rename = "type")]
    queue_type: Option<String>,
    messages: Option<u32>,
    consumers: Option<u32>,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
    /// False when messages were still arriving when the tail read stopped:
    /// `last_offset` is then a lower bound.
    last_offset_exact: Option<bool>,
    /// Retention arguments (x-max-age, x-max-length-bytes, ...) when they
    /// could be read; an empty list means none are set.
    #[serde(serialize_with = "retention_map")]
    retention: Option<Vec<(String, String)>>,
}

fn retention_map<S: serde::Serializer>(value: &Option<Vec<(String, String)>>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(pairs) => s.collect_map(pairs.iter().map(|(k, v)| (k, v))),
        None => s.serialize_none(),
    }
}

/// One check's outcome.
#[derive(Serialize, Debug)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

/// Everything the command found; printed line by line as it goes, or once as JSON.
#[derive(Serialize, Debug)]
struct Report {
    ok: bool,
    url: String,
    server: Option<Server>,
    checks: Vec<Check>,
    latency_ms: Option<f64>,
    stream: Option<StreamState>,
    error: Option<String>,
    #[serde(skip)]
    json: bool,
}

impl Report {
    fn new(url: String, json: bool) -> Report {
        Report { ok: true, url, server: None, checks: Vec::new(), latency_ms: None, stream: None, error: None, json }
    }

    fn pass(&mut self, name: &str, detail: String) {
        if !self.json {
            say(&format!("ok  {name}: {detail}"));
        }
        self.checks.push(Check { name: name.to_owned(), ok: true, detail });
    }

    fn fail(&mut self, name: &str, diagnosis: String) {
        if !self.json {
            say(&format!("FAILED  {name}: {diagnosis}"));
        }
        self.ok = false;
        self.error.get_or_insert_with(|| diagnosis.clone());
        self.checks.push(Check { name: name.to_owned(), ok: false, detail: diagnosis });
    }

    fn finish(&self) -> anyhow::Result<()> {
        if self.json {
            say(&serde_json::to_string(self)?);
        } else {
            say(&format!("rabbit-check: {}", if self.ok { "ok" } else { "FAILED" }));
        }
        Ok(())
    }
}

/// Prints one line; a closed stdout (`| head`) is no reason to panic, and
/// the exit code still tells the result.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The broker being checked: the parts of --amqp-url the checks and
/// diagnoses need, and the broker's self-description once read.
#[derive(Debug)]
struct Target {
    uri: AMQPUri,
    /// The URL as given, password masked: the only form ever printed.
    masked: String,
    server: Option<Server>,
}

impl Target {
    fn parse(raw: &str) -> Result<Target, String> {
        let uri = amqp_url::parse(raw)?;
        Ok(Target { uri, masked: amqp_url::mask(raw), server: None })
    }

    fn user(&self) -> &str {
        &self.uri.authority.userinfo.username
    }

    fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    fn is_loopback(&self) -> bool {
        let host = self.uri.authority.host.as_str();
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// host:port, as a person would type it.
    fn addr(&self) -> String {
        let host = &self.uri.authority.host;
        if host.contains(':') {
            format!("[{host}]:{}", self.uri.authority.port)
        } else {
            format!("{host}:{}", self.uri.authority.port)
        }
    }
}

/// What went wrong with one broker operation.
#[derive(Debug)]
enum Failure {
    Broker(lapin::Error),
    Io(std::io::Error),
    Timeout,
    Other(String),
}

impl From<lapin::Error> for Failure {
    fn from(error: lapin::Error) -> Failure {
        Failure::Broker(error)
    }
}

impl Failure {
    /// The AMQP reply code, when the broker closed a channel or the connection.
    fn amqp_code(&self) -> Option<u16> {
        match self {
            Failure::Broker(error) => match error.kind() {
                ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
                _ => None,
            },
            _ => None,
        }
    }

    fn amqp_message(&self) -> Option<String> {
        match self {
            Failure::Broker(error) => match error.kind() {
                ErrorKind::ProtocolError(amqp) => Some(amqp.get_message().as_str().to_owned()),
                _ => None,
            },
            _ => None,
        }
    }

    fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Failure::Io(error) => Some(error),
            Failure::Broker(error) => match error.kind() {
                ErrorKind::IOError(error) => Some(error),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Which operation failed: the same AMQP code means different things in each.
#[derive(Debug, Clone, Copy)]
enum Phase<'a> {
    Connect,
    Declare(&'a str),
    Publish(&'a str),
    Consume(&'a str),
    Delete(&'a str),
    Inspect(&'a str),
}

impl Phase<'_> {
    fn doing(&self) -> String {
        match self {
            Phase::Connect => "connecting".into(),
            Phase::Declare(queue) => format!("declaring stream queue {queue}"),
            Phase::Publish(queue) => format!("publishing to {queue}"),
            Phase::Consume(queue) => format!("consuming from {queue}"),
            Phase::Delete(queue) => format!("deleting {queue}"),
            Phase::Inspect(queue) => format!("inspecting {queue}"),
        }
    }
}

/// Says in words what a failure means for `target` and how to fix it.
fn diagnose(failure: &Failure, phase: Phase<'_>, target: &Target) -> String {
    let addr = target.addr();
    let user = target.user();
    let vhost = target.vhost();
    let grant = format!("`rabbitmqctl set_permissions -p '{vhost}' {user} '.*' '.*' '.*'`");
    if let Some(error) = failure.io_error() {
        use std::io::ErrorKind as Io;
        let reason = match error.kind() {
            Io::ConnectionRefused => "connection refused".to_owned(),
            _ => error.to_string(),
        };
        let tls = target.uri.scheme == AMQPScheme::AMQPS;
        return match phase {
            Phase::Connect if error.kind() == Io::ConnectionRefused => format!(
                "cannot reach RabbitMQ at {addr}: connection refused. Is it running? Start it with \
                 `rabbitmq-server -detached` (or `systemctl start rabbitmq-server`), then check with \
                 `rabbitmq-diagnostics -q ping`."
            ),
            Phase::Connect if reason.contains("lookup address") => format!(
                "cannot resolve the host {}: {reason}. Check the host name in the URL.",
                target.uri.authority.host
            ),
            Phase::Connect if tls => format!(
                "the TLS connection to {addr} failed: {reason}. amqps:// needs RabbitMQ's TLS listener (usually \
                 port 5671) and a certificate this machine trusts (for a private CA, set SSL_CERT_FILE to its PEM); for \
                 a plain listener write amqp://"
            ),
            Phase::Connect => format!(
                "cannot reach RabbitMQ at {addr}: {reason}. Check the host and port in the URL (AMQP listens on \
                 5672, TLS on 5671) and any firewall; on the broker, `rabbitmq-diagnostics -q ping`."
            ),
            _ => format!(
                "the connection to RabbitMQ at {addr} dropped while {}: {reason}. Check the broker log and \
                 `rabbitmq-diagnostics -q ping`.",
                phase.doing()
            ),
        };
    }
    match failure {
        Failure::Timeout => {
            return match phase {
                Phase::Connect => format!(
                    "no answer from RabbitMQ at {addr} within {} s. Check the host and port (AMQP listens on 5672, \
                     TLS on 5671), firewalls, and `rabbitmq-diagnostics -q ping` on the broker.",
                    CONNECT_TIMEOUT.as_secs()
                ),
                Phase::Publish(_) => format!(
                    "the probe was not confirmed within {} s: RabbitMQ may be blocking publishers because of a \
                     memory or disk alarm (`rabbitmq-diagnostics -q alarms`)",
                    STEP_TIMEOUT.as_secs()
                ),
                _ => format!(
                    "RabbitMQ did not answer within {} s while {}; is it overloaded or alarmed \
                     (`rabbitmq-diagnostics -q alarms`)?",
                    STEP_TIMEOUT.as_secs(),
                    phase.doing()
                ),
            };
        }
        Failure::Other(why) => return why.clone(),
        Failure::Io(_) | Failure::Broker(_) => {}
    }
    let (Some(code), Some(message)) = (failure.amqp_code(), failure.amqp_message()) else {
        let error = match failure {
            Failure::Broker(error) => error.to_string(),
            _ => "unknown error".into(),
        };
        return match phase {
            Phase::Connect => format!(
                "the AMQP handshake with {addr} failed: {error}. Check the URL and the broker log \
                 (`rabbitmq-diagnostics -q log_tail`)."
            ),
            _ => format!("{} failed: {error}", phase.doing()),
        };
    };
    match (code, phase) {
        (403, Phase::Connect) => format!(
            "RabbitMQ refused the credentials for user {user}: check the user and password in the URL \
             (`rabbitmqctl list_users`, `rabbitmqctl change_password {user} NEW_PASSWORD`){}",
            if user == "guest" && !target.is_loopback() {
                ". The `guest` user may only log in from localhost unless `loopback_users` is changed"
            } else {
                ""
            }
        ),
        (530, Phase::Connect) if message.contains("not found") && vhost.is_empty() => {
            "the URL's path is `/`, which names the empty vhost \"\": the default vhost `/` is written %2f \
             (amqp://HOST:5672/%2f); other vhosts by name (`rabbitmqctl list_vhosts`)"
                .to_owned()
        }
        (530, Phase::Connect) if message.contains("not found") => format!(
            "vhost '{vhost}' does not exist on this RabbitMQ: create it with `rabbitmqctl add_vhost '{vhost}'` and \
             let the user in with {grant}, or fix the vhost in the URL (`rabbitmqctl list_vhosts`)"
        ),
        (530, Phase::Connect) => format!(
            "user {user} may not use vhost '{vhost}' ({message}): grant it with {grant} \
             (`rabbitmqctl list_user_permissions {user}`)"
        ),
        (403, _) => format!(
            "user {user} lacks the permission for {} in vhost '{vhost}' ({message}); serve needs configure, \
             write and read on its stream and write on amq.default: {grant}",
            phase.doing()
        ),
        (406 | 540 | 541, Phase::Declare(_)) => {
            let version = match &target.server {
                Some(server) if !server.may_have_streams() => format!(" ({} {})", server.product, server.version),
                _ => String::new(),
            };
            format!(
                "this RabbitMQ{version} does not support stream queues (needs 3.9+ with the stream feature flag: \
                 `rabbitmqctl enable_feature_flag stream_queue`); it said: {message}"
            )
        }
        (320, _) => format!(
            "RabbitMQ closed the connection while {} ({message}): it is shutting down or an operator closed it",
            phase.doing()
        ),
        (_, Phase::Connect) => format!("RabbitMQ at {addr} refused the connection: {code} {message}"),
        (_, phase) => format!("RabbitMQ refused {}: {code} {message}", phase.doing()),
    }
}

/// Runs one broker operation with a time limit.
async fn within<T, E: Into<Failure>>(limit: Duration, work: impl Future<Output = Result<T, E>>) -> Result<T, Failure> {
    match tokio::time::timeout(limit, work).await {
        Ok(outcome) => outcome.map_err(Into::into),
        Err(_) => Err(Failure::Timeout),
    }
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    fn broker_error(kind: AMQPErrorKind, message: &str) -> Failure {
        Failure::Broker(ErrorKind::ProtocolError(AMQPError::new(kind, message.into())).into())
    }

    fn target(url: &str) -> Target {
        Target::parse(url).expect("valid test URL")
    }

    #[test]
    fn stream_names_serve_cannot_declare_are_refused() {
        assert!(stream_name_problem("chatctl.log").is_none());
        assert!(stream_name_problem("").is_some());
        assert!(stream_name_problem("amq.log").is_some());
        assert!(stream_name_problem(&"x".repeat(256)).is_some());
    }

    #[test]
    fn an_ip_host_is_kept_as_written() {
        assert_eq!(target("amqp://guest:guest@10.1.2.3:5672/%2f").addr(), "10.1.2.3:5672");
        assert_eq!(target("amqp://[::1]/%2f").addr(), "[::1]:5672");
        assert_eq!(target("amqps://rabbit.example:5671/chat").vhost(), "chat");
    }

    #[test]
    fn connection_failures_are_diagnosed_with_the_fix() {
        let local = target("amqp://guest:guest@127.0.0.1:5672/%2f");
        let refused = Failure::Io(std::io::ErrorKind::ConnectionRefused.into());
        let why = diagnose(&refused, Phase::Connect, &local);
        assert!(why.starts_with("cannot reach RabbitMQ at 127.0.0.1:5672: connection refused."), "{why}");
        assert!(why.contains("rabbitmq-server -detached"), "{why}");

        let login =
            broker_error(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED), "ACCESS_REFUSED - Login was refused");
        let why = diagnose(&login, Phase::Connect, &local);
        assert!(why.contains("refused the credentials for user guest"), "{why}");

        let missing = target("amqp://guest:guest@127.0.0.1:5672/nosuchvhost");
        let vhost =
            broker_error(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED), "NOT_ALLOWED - vhost nosuchvhost not found");
        let why = diagnose(&vhost, Phase::Connect, &missing);
        assert!(why.contains("vhost 'nosuchvhost' does not exist"), "{why}");
        assert!(why.contains("rabbitmqctl add_vhost 'nosuchvhost'"), "{why}");
        assert!(why.contains("set_permissions -p 'nosuchvhost' guest"), "{why}");
    }

    #[test]
    fn declare_failures_say_whether_permissions_or_streams_are_missing() {
        let local = target("amqp://chat:pw@127.0.0.1/chat");
        let denied = broker_error(
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
            "ACCESS_REFUSED - access to queue 'q' in vhost 'chat' refused for user 'chat'",
        );
        let why = diagnose(&denied, Phase::Declare("q"), &local);
        assert!(why.contains("set_permissions -p 'chat' chat"), "{why}");

        let unsupported = broker_error(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'q'",
        );
        let why = diagnose(&unsupported, Phase::Declare("q"), &local);
        assert!(why.contains("does not support stream queues"), "{why}");
        assert!(why.contains("enable_feature_flag stream_queue"), "{why}");
    }

    #[test]
    fn an_inequivalent_arg_refusal_yields_the_current_value() {
        let message = "PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue 'chatctl.log' in vhost '/': \
                       received none but current is the value '7D' of type 'longstr'";
        let (key, value) = inequivalent_arg(message).expect("parsed");
        assert_eq!(key, "x-max-age");
        assert_eq!(value, Some(AMQPValue::LongString("7D".into())));
        let message = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': \
                       received the value 'stream' of type 'longstr' but current is none";
        assert_eq!(inequivalent_arg(message).map(|(key, _)| key).as_deref(), Some("x-queue-type"));
    }

    #[test]
    fn rabbitmq_before_3_9_has_no_streams() {
        let server = |version: &str| Server { product: "RabbitMQ".into(), version: version.into() };
        assert!(!server("3.8.27").may_have_streams());
        assert!(server("3.10.7").may_have_streams());
        assert!(server("4.0.0").may_have_streams());
    }
}
