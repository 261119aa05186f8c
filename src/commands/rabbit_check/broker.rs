//! The broker being checked: the parts of --amqp-url the checks and the
//! diagnoses need, and what the broker says it is (product and version;
//! `handshake` reads it).

use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use serde::Serialize;

use super::{amqp_url, value_text};

/// The broker as --amqp-url names it, and its self-description once read.
#[derive(Debug)]
pub(super) struct Target {
    /// The parsed URL that connections are made with; never printed (it holds the password).
    pub(super) uri: AMQPUri,
    /// The URL as given, password masked: the only form ever printed.
    pub(super) masked: String,
    /// The broker's product and version once the handshake told
    /// them; the diagnoses use the version.
    pub(super) server: Option<Server>,
}

impl Target {
    /// Parses --amqp-url; the error says what is wrong with it.
    pub(super) fn parse(raw: &str) -> Result<Target, String> {
        let uri = amqp_url::parse(raw)?;
        Ok(Target { uri, masked: amqp_url::mask(raw), server: None })
    }

    /// The user the checks log in as.
    pub(super) fn user(&self) -> &str {
        &self.uri.authority.userinfo.username
    }

    /// The vhost the checks work in.
    pub(super) fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    /// Whether the broker is on this machine: RabbitMQ lets `guest` in only then.
    pub(super) fn is_loopback(&self) -> bool {
        let host = self.uri.authority.host.as_str();
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// host:port, as a person would type it.
    pub(super) fn addr(&self) -> String {
        let host = &self.uri.authority.host;
        if host.contains(':') {
            format!("[{host}]:{}", self.uri.authority.port)
        } else {
            format!("{host}:{}", self.uri.authority.port)
        }
    }
}

/// The broker's self-description from connection.start.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(super) struct Server {
    /// The broker's name for itself, e.g. `RabbitMQ`.
    pub(super) product: String,
    /// Its version, which decides whether streams are supported.
    pub(super) version: String,
}

impl Server {
    /// The product and version a connection.start carries.
    pub(super) fn from_properties(properties: &FieldTable) -> Server {
        let text = |key: &str| properties.inner().get(key).map(value_text).unwrap_or_else(|| "unknown".into());
        Server { product: text("product"), version: text("version") }
    }

    /// False only for a RabbitMQ known to predate stream queues (3.9).
    pub(super) fn may_have_streams(&self) -> bool {
        let mut parts = self.version.split('.').map(|part| part.parse::<u32>().ok());
        match (self.product.as_str(), parts.next().flatten(), parts.next().flatten()) {
            ("RabbitMQ", Some(major), Some(minor)) => (major, minor) >= (3, 9),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).expect("valid test URL")
    }

    #[test]
    fn an_ip_host_is_kept_as_written() {
        assert_eq!(target("amqp://guest:guest@10.1.2.3:5672/%2f").addr(), "10.1.2.3:5672");
        assert_eq!(target("amqp://[::1]/%2f").addr(), "[::1]:5672");
        assert_eq!(target("amqps://rabbit.example:5671/chat").vhost(), "chat");
    }

    #[test]
    fn rabbitmq_before_3_9_has_no_streams() {
        let server = |version: &str| Server { product: "RabbitMQ".into(), version: version.into() };
        assert!(!server("3.8.27").may_have_streams());
        assert!(server("3.10.7").may_have_streams());
        assert!(server("4.0.0").may_have_streams());
    }
}
