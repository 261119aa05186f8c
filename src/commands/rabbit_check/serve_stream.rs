//! The stream serve will use (`--amqp-stream`): whether it exists, that it
//! is a stream, how many messages it holds between which offsets, and its
//! retention. Read-only: it never creates the stream, and the re-declares it
//! uses to learn the arguments change nothing.

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, Queue};

use super::diagnosis::{diagnose, Failure, Phase};
use super::report::{Report, StreamState};
use super::{finish_consumer, stream_arguments, subscribe, value_text, within, Target, STEP_TIMEOUT};
use crate::log::stream;

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

/// Reports on the stream serve will use: whether it exists, that it is a
/// stream, its size, offsets and retention. Never creates it.
pub(super) async fn inspect(connection: &Connection, target: &Target, name: &str, report: &mut Report) {
    let mut state = StreamState { name: name.to_owned(), ..StreamState::default() };
    let outcome = read_state(connection, target, &mut state).await;
    report.stream = Some(state);
    match outcome {
        Ok(detail) => report.pass("stream", detail),
        Err(why) => report.fail("stream", why),
    }
}

/// Fills in `state` as far as the broker lets it: the line to print, or
/// the diagnosis of what stopped it.
async fn read_state(connection: &Connection, target: &Target, state: &mut StreamState) -> Result<String, String> {
    let name = state.name.clone();
    let failed = |failure: Failure| diagnose(&failure, Phase::Inspect(&name), target);
    let Some(queue) = declare_passively(connection, &name).await.map_err(failed)? else {
        return Ok(format!("{name} does not exist yet; serve declares it on first start"));
    };
    state.exists = true;
    state.messages = Some(queue.message_count());
    state.consumers = Some(queue.consumer_count());

    match stream_arguments_of(connection, &name).await.map_err(failed)? {
        Kind::Stream(retention) => {
            state.queue_type = Some("stream".into());
            state.retention = Some(retention);
        }
        Kind::NotStream(why) => {
            state.queue_type = Some("not a stream".into());
            return Err(format!(
                "{name} exists but is not a stream queue ({why}); serve cannot use it. Delete it \
                 (`rabbitmqctl delete_queue -p '{}' {name}`, which drops its messages) or pick \
                 another --amqp-stream",
                target.vhost()
            ));
        }
    }

    let (first, last, exact) = read_offsets(connection, &name).await.map_err(failed)?;
    state.first_offset = first;
    state.last_offset = last;
    state.last_offset_exact = last.map(|_| exact);
    // A stream's declare-ok always counts 0; its offsets are contiguous.
    if let (Some(first), Some(last)) = (first, last) {
        state.messages = last.checked_sub(first).and_then(|n| u32::try_from(n + 1).ok());
    }
    Ok(stream_detail(state))
}

/// The queue as a passive declare sees it; None when it does not exist. A
/// passive declare of a missing queue closes its channel with 404, so it
/// gets a channel of its own.
async fn declare_passively(connection: &Connection, name: &str) -> Result<Option<Queue>, Failure> {
    let passive = async {
        let channel = connection.create_channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let queue = channel.queue_declare(name.into(), options, FieldTable::default()).await?;
        let _ = channel.close(200, "inspected".into()).await;
        Ok::<_, lapin::Error>(queue)
    };
    match within(STEP_TIMEOUT, passive).await {
        Ok(queue) => Ok(Some(queue)),
        Err(failure) if failure.amqp_code() == Some(404) => Ok(None),
        Err(failure) => Err(failure),
    }
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

/// The first offset and the last one, and whether the last is exact
/// (false when the tail was still arriving at the time limit).
type Offsets = (Option<u64>, Option<u64>, bool);

/// Reads the first offset (from "first", prefetch 1) and the last one (from
/// "last", which starts at the last chunk, read until it goes quiet).
async fn read_offsets(connection: &Connection, name: &str) -> Result<Offsets, Failure> {
    let Some(first) = read_first_offset(connection, name).await? else {
        return Ok((None, None, true));
    };
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
    Ok((Some(first), last.or(Some(first)), exact))
}

/// The offset of the stream's first delivery; None when nothing came within
/// `FIRST_DELIVERY_WAIT` (an empty stream).
async fn read_first_offset(connection: &Connection, name: &str) -> Result<Option<u64>, Failure> {
    let channel = within(STEP_TIMEOUT, connection.create_channel()).await?;
    let mut consumer =
        within(STEP_TIMEOUT, subscribe(&channel, name, "chatctl.rabbit-check.first", "first", 1)).await?;
    let first = match tokio::time::timeout(FIRST_DELIVERY_WAIT, consumer.next()).await {
        Ok(Some(delivery)) => stream::offset_of(&delivery?.properties),
        Ok(None) | Err(_) => None,
    };
    finish_consumer(&channel, &consumer).await;
    Ok(first)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
