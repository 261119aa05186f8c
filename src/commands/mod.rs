//! One module per subcommand. Each has an `Args` (clap) and a `run`.

pub mod backup;
pub mod changepassword;
pub mod createsuperuser;
pub mod migrate;
pub mod rabbit_check;
pub mod restore;
pub mod serve;
pub mod smoke_test;
pub mod target;
pub mod users;

use std::path::PathBuf;

/// The data dir flag every command that opens the database takes.
#[derive(clap::Args, Debug, Clone)]
pub struct DataDir {
    /// Where chatctl keeps its database (chatctl.redb).
    #[arg(long = "data-dir", env = "CHATCTL_DATA_DIR", default_value = "./chatctl-data")]
    pub path: PathBuf,
}

/// A multi-threaded tokio runtime for the commands that serve or connect.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// A mistake in how the command was called (a missing flag, an unknown
/// user, a refused password): exit code 2, as usage errors have.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand: `Err(usage("..."))?`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// 2 for usage and not-found errors, 1 for everything else.
pub fn exit_code_of(error: &anyhow::Error) -> std::process::ExitCode {
    if error.downcast_ref::<UsageError>().is_some() {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// The cluster flags of the admin commands: with them, a command run on a
/// stopped cluster node's data dir (or a fresh one) applies its write
/// through the cluster's stream, as `serve --amqp-url` would.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// RabbitMQ of the cluster, when no server runs on the data dir (as `serve --amqp-url`).
    #[arg(long, env = "CHATCTL_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// The stream queue holding the cluster's log (as `serve --amqp-stream`).
    #[arg(long, env = "CHATCTL_AMQP_STREAM", default_value = crate::log::stream::DEFAULT_STREAM)]
    pub amqp_stream: String,
}

impl ClusterArgs {
    /// For the commands that only read: a stopped cluster node's data dir
    /// is read as it is, with no log.
    pub fn none() -> ClusterArgs {
        ClusterArgs { amqp_url: None, amqp_stream: String::new() }
    }

    /// The cluster a write goes through, when `--amqp-url` is given; `None` means a single node.
    pub fn config(&self) -> Option<crate::log::cluster::ClusterConfig> {
        self.amqp_url.as_ref().map(|url| crate::log::cluster::ClusterConfig {
            url: url.clone(),
            stream: self.amqp_stream.clone(),
            max_age: None,
            max_bytes: None,
        })
    }
}

/// Reads the first line of standard input, for `--password-stdin`.
pub fn password_from_stdin() -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("reading the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(usage("standard input held no password: write it on the first line"));
    }
    Ok(password)
}
