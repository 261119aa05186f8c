//! `chatctl restore --data-dir D --from FILE`: puts a backup in place as D's
//! database, with the server stopped. The file is checked first (a chatctl
//! database at a schema version this build reads); a database already in D
//! is replaced only with `--force`, and then kept beside it, not deleted.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use super::{usage, DataDir};
use crate::control::client;
use crate::storage::backup::{self, BackupError};
use crate::storage::DB_FILE;

/// `chatctl restore`'s flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data dir to restore into; no server may be running on it.
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The backup to restore (written by `chatctl backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// Replace a database already in the data dir (it is kept as chatctl.redb.replaced-<ms>).
    #[arg(long)]
    pub force: bool,
}

/// Checks the backup, refuses while a server runs, then puts it in place.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = &args.data_dir.path;
    let running = super::runtime()?.block_on(client::server_answers(dir))?;
    if running {
        return Err(anyhow!(
            "a chatctl server is running on {} (its control socket answers); stop it (kill -TERM) and run restore again",
            dir.display()
        ));
    }
    let (version, offset) = backup::check_backup(&args.from).map_err(|e| match e {
        e @ (BackupError::NotADatabase { .. } | BackupError::NewerSchema { .. }) => usage(e.to_string()),
        other => anyhow!("{other}"),
    })?;
    let target = dir.join(DB_FILE);
    // Held until the new file is in place: a read-only open takes redb's
    // shared lock, so a server that starts meanwhile is refused instead of
    // writing into the file being replaced (and nothing is repaired or
    // written by this open).
    let _held = if target.exists() {
        match redb::ReadOnlyDatabase::open(&target) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(anyhow!(
                    "the database {} is in use by another process; stop the server on {} first",
                    target.display(),
                    dir.display()
                ))
            }
            _ if !args.force => {
                return Err(usage(format!(
                    "{} already holds a database; pass --force to replace it (the current one is kept as {DB_FILE}.replaced-<ms>), or restore into an empty --data-dir",
                    dir.display()
                )))
            }
            held => held.ok(),
        }
    } else {
        None
    };
    let kept = backup::restore(&args.from, dir)?;
    println!("Restored {} into {} (schema version {version}).", args.from.display(), dir.display());
    if let Some(kept) = kept {
        println!("The database it replaced is kept as {}.", kept.display());
    }
    match offset {
        Some(offset) => println!(
            "It is a cluster node's copy: start it with `chatctl serve --data-dir {} --amqp-url URL`; it catches up from stream offset {offset}.",
            dir.display()
        ),
        None => println!("Start the server: chatctl serve --data-dir {}", dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}
