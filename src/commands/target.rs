//! Where an admin command runs its operation: the server running on the
//! data dir (through its control socket), or, when none answers, the data
//! dir itself, opened by this process with its log started as `serve` would
//! (the embedded writer, or with --amqp-url this node's place in the
//! cluster's stream). Either way `control::ops` does the work.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;

use super::{usage, ClusterArgs};
use crate::control::client;
use crate::control::ops;
use crate::control::protocol::{Command, ErrorKind, Reply};
use crate::startup::{self, Core, StartError};
use crate::storage::{SchemaCheck, StorageError, Store, DB_FILE};

/// What the command needs from a data dir no server holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Only reads (list, backup): the store, no log.
    Read,
    /// Writes through the log; the data dir must already hold a database.
    Write,
    /// Writes, and an empty data dir is fine (createsuperuser makes the first account).
    WriteOrCreate,
}

/// The data dir an admin command works on, reached one way or the other.
pub enum Target {
    /// A server answers on the data dir's control socket.
    Server(PathBuf),
    /// This process opened the data dir.
    Local {
        /// For reads; the core's store when there is one.
        store: Store,
        /// The log writes go through; `None` for `Access::Read`.
        core: Option<Core>,
    },
}

/// How long a request to a running server may take (a write waits at most
/// 10 s for the log, a password hash takes well under a second).
const SERVER_ANSWER: Duration = Duration::from_secs(60);
/// A backup of a large database takes as long as copying it.
pub const BACKUP_ANSWER: Duration = Duration::from_secs(6 * 3600);
/// How long an unreachable broker is waited for.
const BROKER_PATIENCE: Duration = Duration::from_secs(30);

impl Target {
    /// The server on `data_dir` if one answers its control socket, else the data dir
    /// opened here (with a log when `access` writes); errors say what to fix.
    pub async fn open(data_dir: &Path, cluster: &ClusterArgs, access: Access) -> anyhow::Result<Target> {
        if client::server_answers(data_dir).await? {
            return Ok(Target::Server(data_dir.to_path_buf()));
        }
        if access != Access::WriteOrCreate && !data_dir.join(DB_FILE).is_file() {
            return Err(usage(format!(
                "there is no chatctl database in {} (and no server answers on its control socket); check --data-dir (or CHATCTL_DATA_DIR)",
                data_dir.display()
            )));
        }
        if access == Access::Read {
            let dir = data_dir.to_path_buf();
            let store = tokio::task::spawn_blocking(move || Store::open(&dir, SchemaCheck::RequireCurrent))
                .await?
                .map_err(|e| open_error(e, data_dir))?;
            return Ok(Target::Local { store, core: None });
        }
        let cluster_config = cluster.config();
        let clustered = cluster_config.is_some();
        let core = startup::open_core(data_dir.to_path_buf(), cluster_config).await.map_err(|e| match e {
            StartError::Storage(e) => open_error(e, data_dir),
            StartError::ClusterDataDir(dir) => usage(format!(
                "{} belongs to a cluster node and no server answers on its control socket. Start the node \
                 (`chatctl serve --amqp-url URL --data-dir {}`) and run this again, or pass --amqp-url URL \
                 (or CHATCTL_AMQP_URL) to apply the change through the cluster's log from here",
                dir.display(),
                dir.display()
            )),
            StartError::SingleNodeDataDir(dir) => usage(format!(
                "{} holds a single node's data, not a cluster node's: run this without --amqp-url (and unset CHATCTL_AMQP_URL)",
                dir.display()
            )),
            StartError::AmqpUrl(reason) => usage(reason),
            other => anyhow!("{other}"),
        })?;
        if clustered {
            eprintln!("Connecting to the cluster's log and catching up on the stream…");
            if let Err(reason) = core.wait_ready(BROKER_PATIENCE, |why| eprintln!("  still waiting: {why}")).await {
                core.close().await;
                return Err(anyhow!(
                    "the cluster's log is not usable ({reason}); nothing was changed. Check --amqp-url with `chatctl rabbit-check`"
                ));
            }
        }
        Ok(Target::Local { store: core.store.clone(), core: Some(core) })
    }

    /// Runs `command` wherever the target is; a backup to a server may take hours.
    pub async fn call(&self, command: Command) -> anyhow::Result<Reply> {
        match self {
            Target::Server(data_dir) => {
                let within = if matches!(command, Command::Backup { .. }) { BACKUP_ANSWER } else { SERVER_ANSWER };
                Ok(client::call(data_dir, command, within).await?)
            }
            Target::Local { store, core } => Ok(ops::execute(store, core.as_ref().map(|c| &c.log), command).await),
        }
    }

    /// Lets a local log finish and releases the database.
    pub async fn close(self) {
        if let Target::Local { store, core } = self {
            drop(store);
            if let Some(core) = core {
                core.close().await;
            }
        }
    }
}

fn open_error(error: StorageError, data_dir: &Path) -> anyhow::Error {
    match error {
        StorageError::Locked { path } => anyhow!(
            "the database {} is held by another process, but no chatctl server answers on {}/control.sock. \
             A server that is starting or stopping holds it for a few seconds: run this again shortly. \
             If it stays held, another program (or a chatctl from before the control socket) has it open: stop that and retry",
            path.display(),
            data_dir.display()
        ),
        other => anyhow!("{other}"),
    }
}

/// Runs one command on the data dir and closes it again.
pub async fn run_once(
    data_dir: &Path,
    cluster: &ClusterArgs,
    access: Access,
    command: Command,
) -> anyhow::Result<Reply> {
    let target = Target::open(data_dir, cluster, access).await?;
    let reply = target.call(command).await;
    target.close().await;
    reply
}

/// Prints `Done`'s message, or turns an error reply into the error the
/// command exits with (2 for usage and not-found errors).
pub fn done(reply: Reply) -> anyhow::Result<std::process::ExitCode> {
    match reply {
        Reply::Done { message } => {
            println!("{message}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        other => Err(reply_error(other)),
    }
}

/// The error an unexpected or failed reply stands for.
pub fn reply_error(reply: Reply) -> anyhow::Error {
    match reply {
        Reply::Error { kind: ErrorKind::NotFound | ErrorKind::Invalid | ErrorKind::BadRequest, message } => {
            usage(message)
        }
        Reply::Error { message, .. } => anyhow!(message),
        other => anyhow!("the server answered {other:?}, which this command does not expect"),
    }
}
