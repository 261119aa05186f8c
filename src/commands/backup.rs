//! `chatctl backup --data-dir D --to FILE`: a consistent copy of the
//! database while the server runs (it takes one read transaction, which
//! does not block its writer) or while it is stopped. A cluster node's copy
//! carries its stream offset, so it can seed a new node.

use std::path::PathBuf;
use std::process::ExitCode;

use super::target::{self, Access};
use super::{usage, ClusterArgs, DataDir};
use crate::control::protocol::{Command, Reply};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The file to write (mode 0600); its directory must exist.
    #[arg(long)]
    pub to: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The server resolves paths from its own working directory: send an absolute one.
    let to = std::path::absolute(&args.to).map_err(|e| usage(format!("--to {}: {e}", args.to.display())))?;
    if to.is_dir() {
        return Err(usage(format!(
            "--to {} is a directory; name the backup file, e.g. {}/chatctl.redb",
            to.display(),
            to.display()
        )));
    }
    let command = Command::Backup { to, overwrite: args.force };
    let no_cluster = ClusterArgs::none();
    super::runtime()?.block_on(async {
        match target::run_once(&args.data_dir.path, &no_cluster, Access::Read, command).await? {
            Reply::BackedUp { summary } => {
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
            }
            other => Err(target::reply_error(other)),
        }
    })
}
