//! `--amqp-url`: parsed for lapin, and masked for anything printed. Shared
//! by `serve` and `rabbit-check`, so both connect to the same place.

use std::str::FromStr;

use lapin::uri::AMQPUri;

const EXPECTED: &str =
    "expected amqp://USER:PASSWORD@HOST:5672/VHOST, or amqps://…:5671/… for TLS (the vhost `/` is written %2f)";

/// Parses an AMQP URL. The error names what is wrong, never the password.
pub fn parse(raw: &str) -> Result<AMQPUri, String> {
    let masked = mask(raw);
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!("--amqp-url is empty; {EXPECTED}"));
    }
    let mut uri = AMQPUri::from_str(raw).map_err(|error| {
        let why = if error.contains(raw) { "it has no host".to_owned() } else { url_error(&error) };
        format!("invalid --amqp-url {masked}: {why}; {EXPECTED}")
    })?;
    // amq-protocol's parser keeps only domain names and turns an IP address
    // into "localhost": use the host exactly as written.
    uri.authority.host =
        literal_host(raw).ok_or_else(|| format!("invalid --amqp-url {masked}: it has no host; {EXPECTED}"))?;
    if uri.vhost.len() > 255 {
        return Err(format!("invalid --amqp-url {masked}: the vhost is longer than 255 bytes"));
    }
    Ok(uri)
}

/// Words for the errors of the `url` crate and amq-protocol's URI parser.
fn url_error(error: &str) -> String {
    let error = error.to_ascii_lowercase();
    if error.contains("relative url without a base") {
        "it has no scheme (amqp:// or amqps://)".into()
    } else if let Some(scheme) = error.strip_prefix("invalid amqp scheme: ") {
        format!("the scheme is `{scheme}`, but RabbitMQ URLs start with amqp:// (or amqps:// for TLS)")
    } else if error.contains("invalid port") {
        "the port is not a number from 1 to 65535".into()
    } else if error.contains("empty host") {
        "it has no host".into()
    } else if error.contains("invalid digit") || error.contains("number too large") {
        format!("a numeric query parameter (heartbeat, frame_max, channel_max, connection_timeout) is wrong: {error}")
    } else {
        error
    }
}

/// The host between `@` (or `://`) and the port or path, brackets removed.
fn literal_host(raw: &str) -> Option<String> {
    let rest = raw.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(host, _)| host)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// The URL with any password replaced by `****`, even when it does not parse.
pub fn mask(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), raw),
    };
    // The last '@' before the query ends the user info, even when the
    // password holds an unencoded '/' or '@'.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return raw.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}{user}:****{}", &rest[at..]),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_the_password_and_keeps_the_rest() {
        assert_eq!(mask("amqp://guest:guest@127.0.0.1:5672/%2f"), "amqp://guest:****@127.0.0.1:5672/%2f");
        assert_eq!(mask("amqp://u:p%40ss/w@host/v?heartbeat=5"), "amqp://u:****@host/v?heartbeat=5");
        assert_eq!(mask("amqp://u:p@ss@host"), "amqp://u:****@host");
        assert_eq!(mask("amqp://user@host/v"), "amqp://user@host/v");
        assert_eq!(mask("amqp://host:5672/%2f"), "amqp://host:5672/%2f");
        assert_eq!(mask("u:secret@host"), "u:****@host");
    }

    #[test]
    fn invalid_urls_are_explained_without_the_password() {
        for (url, says) in [
            ("http://u:hunter2@host/%2f", "amqp://"),
            ("amqp://u:hunter2@host:99999/%2f", "port"),
            ("127.0.0.1:5672", "no scheme"),
            ("amqp:guest:hunter2@host", "no host"),
            ("", "empty"),
        ] {
            let why = parse(url).expect_err(url);
            assert!(why.contains(says), "{url}: {why}");
            assert!(!why.contains("hunter2"), "{url}: {why}");
        }
    }

    #[test]
    fn amqps_means_tls_on_port_5671_unless_written() {
        use lapin::uri::AMQPScheme;
        let uri = parse("amqps://u:p@rabbit.example/%2f").unwrap();
        assert_eq!((uri.scheme, uri.authority.port, uri.vhost.as_str()), (AMQPScheme::AMQPS, 5671, "/"));
        assert_eq!(uri.authority.host, "rabbit.example");
        let uri = parse("AMQPS://u:p@10.0.0.5:15671/chat").unwrap();
        assert_eq!((uri.scheme, uri.authority.port), (AMQPScheme::AMQPS, 15671));
        assert_eq!(uri.authority.host, "10.0.0.5");
        assert_eq!(parse("amqp://u:p@rabbit.example/%2f").unwrap().scheme, AMQPScheme::AMQP);
    }

    #[test]
    fn ip_hosts_are_kept_as_written() {
        assert_eq!(parse("amqp://u:p@10.0.0.5:5673/%2f").unwrap().authority.host, "10.0.0.5");
        assert_eq!(parse("amqp://u:p@[::1]:5672/%2f").unwrap().authority.host, "::1");
        let uri = parse("amqp://u:p@rabbit.internal/chat").unwrap();
        assert_eq!(
            (uri.authority.host.as_str(), uri.authority.port, uri.vhost.as_str()),
            ("rabbit.internal", 5672, "chat")
        );
    }
}
