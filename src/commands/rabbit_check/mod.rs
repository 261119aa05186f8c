//! `chatctl rabbit-check`: proves, against the real broker, that `serve
//! --amqp-url` will work there. It connects, round-trips a probe message
//! through a temporary stream queue and reads the state of serve's stream.
//! It changes nothing it did not create, and deletes what it created.
//!
//! This file holds the flags and the order of the checks; each step lives in
//! its own module:
//! - `broker`: the broker being checked (the URL's parts, what it says it is);
//! - `handshake`: reading the broker's product and version from a handshake of our own;
//! - `round_trip`: the probe through a temporary stream queue;
//! - `serve_stream`: serve's own stream (exists, is a stream, offsets, retention);
//! - `diagnosis`: what a failure means, in words, with the fix;
//! - `report`: each check's outcome, printed as lines or as one JSON object.

mod broker;
mod diagnosis;
mod handshake;
mod report;
mod round_trip;
mod serve_stream;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPScheme;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

use crate::log::amqp_url;
use crate::log::stream::{DEFAULT_STREAM, OFFSET_HEADER};
use broker::Target;
use diagnosis::{diagnose, Failure, Phase};
use report::Report;

/// Where `serve` and this check look for RabbitMQ when no URL is given.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `chatctl rabbit-check`'s flags: the same URL and stream as `serve`'s.
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

/// Runs every check and prints the report; exits 1 when any check failed.
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
        match tokio::time::timeout(CONNECT_TIMEOUT, handshake::read_server(&target)).await {
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

    round_trip::round_trip(&connection, &target, report).await;
    if let Some(why) = stream_name_problem(&args.amqp_stream) {
        report.fail("stream", why);
    } else if connection.status().connected() {
        serve_stream::inspect(&connection, &target, &args.amqp_stream, report).await;
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

/// Runs one broker operation with a time limit.
async fn within<T, E: Into<Failure>>(limit: Duration, work: impl Future<Output = Result<T, E>>) -> Result<T, Failure> {
    match tokio::time::timeout(limit, work).await {
        Ok(outcome) => outcome.map_err(Into::into),
        Err(_) => Err(Failure::Timeout),
    }
}

/// A duration as the report prints it.
fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_serve_cannot_declare_are_refused() {
        assert!(stream_name_problem(DEFAULT_STREAM).is_none());
        assert!(stream_name_problem("").is_some());
        assert!(stream_name_problem("amq.log").is_some());
        assert!(stream_name_problem(&"x".repeat(256)).is_some());
    }
}
