//! What a failed broker operation means for the deployment, in words, with
//! the command that fixes it. The same AMQP code means different things in
//! different phases (403 at connect is a password, at declare a permission),
//! so every diagnosis takes the phase it happened in.

use lapin::uri::AMQPScheme;
use lapin::ErrorKind;

use super::broker::Target;
use super::{CONNECT_TIMEOUT, STEP_TIMEOUT};

/// What went wrong with one broker operation.
#[derive(Debug)]
pub(super) enum Failure {
    /// lapin's error: its AMQP reply code, when there is one, decides the diagnosis.
    Broker(lapin::Error),
    /// The TCP connection failed before AMQP began.
    Io(std::io::Error),
    /// No answer within `CONNECT_TIMEOUT` or `STEP_TIMEOUT`.
    Timeout,
    /// Already a diagnosis, printed as it is.
    Other(String),
}

impl From<lapin::Error> for Failure {
    fn from(error: lapin::Error) -> Failure {
        Failure::Broker(error)
    }
}

impl Failure {
    /// The AMQP reply code, when the broker closed a channel or the connection.
    pub(super) fn amqp_code(&self) -> Option<u16> {
        match self {
            Failure::Broker(error) => match error.kind() {
                ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The broker's own words with that code.
    pub(super) fn amqp_message(&self) -> Option<String> {
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
pub(super) enum Phase<'a> {
    /// Reaching the broker: TCP and the AMQP handshake.
    Connect,
    /// Declaring the probe's stream queue: where a broker without streams fails.
    Declare(&'a str),
    /// Publishing the probe with confirms.
    Publish(&'a str),
    /// Reading the probe back from the stream.
    Consume(&'a str),
    /// Removing the probe's queue again.
    Delete(&'a str),
    /// Looking at serve's own stream, without changing it.
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
pub(super) fn diagnose(failure: &Failure, phase: Phase<'_>, target: &Target) -> String {
    if let Some(error) = failure.io_error() {
        return network_failed(error, phase, target);
    }
    match failure {
        Failure::Timeout => return no_answer(phase, target),
        Failure::Other(why) => return why.clone(),
        Failure::Io(_) | Failure::Broker(_) => {}
    }
    match (failure.amqp_code(), failure.amqp_message()) {
        (Some(code), Some(message)) => refused(code, &message, phase, target),
        _ => {
            let error = match failure {
                Failure::Broker(error) => error.to_string(),
                _ => "unknown error".into(),
            };
            match phase {
                Phase::Connect => format!(
                    "the AMQP handshake with {} failed: {error}. Check the URL and the broker log \
                     (`rabbitmq-diagnostics -q log_tail`).",
                    target.addr()
                ),
                _ => format!("{} failed: {error}", phase.doing()),
            }
        }
    }
}

/// The network failed: nothing listens, the name does not resolve, TLS
/// failed, or an open connection dropped.
fn network_failed(error: &std::io::Error, phase: Phase<'_>, target: &Target) -> String {
    use std::io::ErrorKind as Io;
    let addr = target.addr();
    let reason = match error.kind() {
        Io::ConnectionRefused => "connection refused".to_owned(),
        _ => error.to_string(),
    };
    let tls = target.uri.scheme == AMQPScheme::AMQPS;
    match phase {
        Phase::Connect if error.kind() == Io::ConnectionRefused => format!(
            "cannot reach RabbitMQ at {addr}: connection refused. Is it running? Start it with \
             `rabbitmq-server -detached` (or `systemctl start rabbitmq-server`), then check with \
             `rabbitmq-diagnostics -q ping`."
        ),
        Phase::Connect if reason.contains("lookup address") => {
            format!("cannot resolve the host {}: {reason}. Check the host name in the URL.", target.uri.authority.host)
        }
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
    }
}

/// The broker did not answer in time: unreachable at connect, alarmed after.
fn no_answer(phase: Phase<'_>, target: &Target) -> String {
    match phase {
        Phase::Connect => format!(
            "no answer from RabbitMQ at {} within {} s. Check the host and port (AMQP listens on 5672, \
             TLS on 5671), firewalls, and `rabbitmq-diagnostics -q ping` on the broker.",
            target.addr(),
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
    }
}

/// The broker refused with an AMQP reply code and its own words.
fn refused(code: u16, message: &str, phase: Phase<'_>, target: &Target) -> String {
    let (user, vhost) = (target.user(), target.vhost());
    let grant = format!("`rabbitmqctl set_permissions -p '{vhost}' {user} '.*' '.*' '.*'`");
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
        (406 | 540 | 541, Phase::Declare(_)) => no_streams(message, target),
        (320, _) => format!(
            "RabbitMQ closed the connection while {} ({message}): it is shutting down or an operator closed it",
            phase.doing()
        ),
        (_, Phase::Connect) => format!("RabbitMQ at {} refused the connection: {code} {message}", target.addr()),
        (_, phase) => format!("RabbitMQ refused {}: {code} {message}", phase.doing()),
    }
}

/// A declare of a stream queue was refused: this broker has no streams.
fn no_streams(message: &str, target: &Target) -> String {
    let version = match &target.server {
        Some(server) if !server.may_have_streams() => format!(" ({} {})", server.product, server.version),
        _ => String::new(),
    };
    format!(
        "this RabbitMQ{version} does not support stream queues (needs 3.9+ with the stream feature flag: \
         `rabbitmqctl enable_feature_flag stream_queue`); it said: {message}"
    )
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
}
