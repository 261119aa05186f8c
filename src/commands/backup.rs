//! `chatctl backup --data-dir D --to FILE`: a consistent copy of the
//! database while the server runs (it takes one read transaction, which
//! does not block its writer) or while it is stopped. With a server, this
//! process creates the temp file next to FILE and hands it to the server
//! over the control socket, so a sandboxed service (systemd's
//! ProtectSystem, PrivateTmp) need not reach FILE's directory. A cluster
//! node's copy carries its stream offset, so it can seed a new node.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;

use super::target::{self, Access, Target, BACKUP_ANSWER};
use super::{usage, ClusterArgs, DataDir};
use crate::control::client;
use crate::control::protocol::{Command, Reply};
use crate::storage::backup::{names_the_database, BackupError, BackupSummary, PendingBackup};
use crate::storage::DB_FILE;

/// `chatctl backup`'s flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data dir to copy; a server running on it makes the copy itself.
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The file to write (mode 0600); its directory must exist.
    #[arg(long)]
    pub to: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Copies the database through the running server if one answers, else from the
/// file directly; refuses a target that is the database itself.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let to = std::path::absolute(&args.to).map_err(|e| usage(format!("--to {}: {e}", args.to.display())))?;
    check_target(&to, &args.data_dir.path, args.force)?;
    super::runtime()?.block_on(async {
        let target = Target::open(&args.data_dir.path, &ClusterArgs::none(), Access::Read).await?;
        let written = match &target {
            Target::Server(data_dir) => through_server(data_dir, &to, args.force).await,
            Target::Local { .. } => {
                let command = Command::Backup { to: to.clone(), overwrite: args.force, attached: false };
                match target.call(command).await? {
                    Reply::BackedUp { summary } => Ok(summary),
                    other => Err(target::reply_error(other)),
                }
            }
        };
        target.close().await;
        let summary = written?;
        let offset = summary
            .stream_next_offset
            .map(|o| format!("; a cluster node's copy, resuming at stream offset {o}"))
            .unwrap_or_default();
        println!(
            "Backed up {} to {}: {} tables, {} rows, {} bytes{offset}.",
            args.data_dir.path.display(),
            summary.path.display(),
            summary.tables,
            summary.rows,
            summary.bytes
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Refuses, before anything is written, a FILE that cannot or must not be written.
fn check_target(to: &Path, data_dir: &Path, force: bool) -> anyhow::Result<()> {
    if to.is_dir() {
        return Err(usage(format!(
            "--to {} is a directory; name the backup file, e.g. {}/chatctl.redb",
            to.display(),
            to.display()
        )));
    }
    if !to.parent().is_some_and(Path::is_dir) {
        return Err(usage(format!("the directory of --to {} does not exist; create it first", to.display())));
    }
    if names_the_database(&data_dir.join(DB_FILE), to) {
        return Err(usage(format!("{} is the live database itself; write the backup to another file", to.display())));
    }
    if !force && to.exists() {
        return Err(usage(BackupError::Exists(to.to_path_buf()).to_string()));
    }
    Ok(())
}

/// The server copies into a temp file this process made next to `to`;
/// this process then puts it in place.
async fn through_server(data_dir: &Path, to: &Path, force: bool) -> anyhow::Result<BackupSummary> {
    let pending = PendingBackup::create(to)?; // removed again on any failure
    let command = Command::Backup { to: to.to_path_buf(), overwrite: force, attached: true };
    let reply = client::call_with_file(data_dir, command, &pending.file, BACKUP_ANSWER).await?;
    let summary = match reply {
        Reply::BackedUp { summary } => summary,
        other => return Err(target::reply_error(other)),
    };
    let to_owned = to.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || pending.publish(&to_owned, force))
        .await
        .map_err(|_| anyhow!("putting the backup in place failed unexpectedly"))?
        .map_err(|e| match e {
            e @ BackupError::Exists(_) => usage(e.to_string()),
            other => anyhow!("{other}"),
        })?;
    Ok(BackupSummary { path: to.to_path_buf(), bytes, ..summary })
}
