//! The round trip: a temporary stream queue of our own, a probe published
//! into it with a publisher confirm and consumed back from offset "first",
//! then the queue deleted whatever happened. It proves serve's whole path
//! (declare, publish, confirm, consume) and measures its latency.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

use super::diagnosis::{diagnose, Failure, Phase};
use super::report::Report;
use super::{finish_consumer, millis, stream_arguments, subscribe, within, Target, CONNECT_TIMEOUT, STEP_TIMEOUT};
use crate::auth::session::random_hex;
use crate::log::stream::{self, OFFSET_HEADER};

/// Declares a temporary stream, publishes a probe with confirms, consumes it
/// back from offset "first", then deletes the stream whatever happened.
pub(super) async fn round_trip(connection: &Connection, target: &Target, report: &mut Report) {
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
    let publish = within(STEP_TIMEOUT, publish_probe(channel, name, &marker, started));
    let read = within(STEP_TIMEOUT, read_probe(consumer, &marker, started));
    let (published, delivered) = publish_while_reading(publish, read).await;
    let confirmed = confirmed_after(published, publisher, target, name)?;
    let delivered = match delivered {
        Some(Ok((elapsed, offset))) => Ok((millis(elapsed), offset)),
        Some(Err(failure)) => Err(diagnose(&failure, Phase::Consume(name), target)),
        None => Err("the probe was never read back".to_owned()),
    };
    Ok((millis(confirmed), delivered))
}

/// Publishes the probe through the default exchange (mandatory, so an
/// unroutable probe comes back) and waits for its confirm.
async fn publish_probe(
    channel: &Channel,
    name: &str,
    marker: &str,
    started: Instant,
) -> lapin::Result<(Duration, Confirmation)> {
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let properties = BasicProperties::default().with_message_id(marker.into());
    let confirmation =
        channel.basic_publish("".into(), name.into(), options, marker.as_bytes(), properties).await?.await?;
    Ok((started.elapsed(), confirmation))
}

/// Reads (and acks) the temporary stream until the probe comes by: when it
/// arrived, and at which offset.
async fn read_probe(
    consumer: &mut Consumer,
    marker: &str,
    started: Instant,
) -> Result<(Duration, Option<u64>), Failure> {
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
}

/// Drives the publish and the read together until both finished, or the
/// publish failed (then the probe will not arrive: the read is dropped).
async fn publish_while_reading<P, R>(
    publish: impl Future<Output = Result<P, Failure>>,
    read: impl Future<Output = Result<R, Failure>>,
) -> (Option<Result<P, Failure>>, Option<Result<R, Failure>>) {
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
    (published, delivered)
}

/// How long the confirm took, or why the publish failed in words: nacked,
/// unroutable, held back by an alarm, or refused.
fn confirmed_after(
    published: Option<Result<(Duration, Confirmation), Failure>>,
    publisher: &Connection,
    target: &Target,
    name: &str,
) -> Result<Duration, String> {
    match published {
        Some(Ok((_, confirmation))) if confirmation.is_nack() => Err(format!(
            "RabbitMQ refused (nacked) the probe to {name}; see its log (`rabbitmq-diagnostics -q log_tail`)"
        )),
        Some(Ok((elapsed, confirmation))) => match confirmation.take_message() {
            Some(returned) => Err(format!(
                "the default exchange did not route the probe to {name} ({} {}); serve's publishes would be lost",
                returned.reply_code, returned.reply_text
            )),
            None => Ok(elapsed),
        },
        Some(Err(Failure::Timeout)) if publisher.status().blocked() => {
            Err("RabbitMQ blocked the publishing connection (connection.blocked): a memory or disk alarm \
                 is on, and serve could not publish either. See `rabbitmq-diagnostics -q alarms` and free \
                 memory or disk (or raise `vm_memory_high_watermark` / `disk_free_limit`)"
                .to_owned())
        }
        Some(Err(failure)) => Err(diagnose(&failure, Phase::Publish(name), target)),
        None => Err("the probe's publish never finished".to_owned()),
    }
}
