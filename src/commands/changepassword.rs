//! `chatctl changepassword USERNAME`, as Django's: asks for the new password
//! twice (hidden, only on a terminal), or takes it from the first line of
//! standard input with `--password-stdin`. Every session of the user ends,
//! so their open sockets close with 1008 "signed out".

use std::io::IsTerminal;
use std::process::ExitCode;

use super::target::{self, Access, Target};
use super::{usage, ClusterArgs, DataDir};
use crate::control::protocol::{Command, ErrorKind, Reply, Secret};

/// `chatctl changepassword`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The account whose password to set.
    pub username: String,
    /// The data dir whose account changes (through its server, if one runs).
    #[command(flatten)]
    pub data_dir: DataDir,
    /// Read the new password from the first line of standard input (for scripts).
    #[arg(long)]
    pub password_stdin: bool,
    /// With `--amqp-url`: apply the change through a stopped cluster node's stream.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Django gives up after this many refused tries.
const ATTEMPTS: usize = 3;

/// Sets the password, asking on the terminal unless `--password-stdin`;
/// refuses to prompt when standard input is not a terminal.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let piped = if args.password_stdin {
        Some(super::password_from_stdin()?)
    } else if !std::io::stdin().is_terminal() {
        return Err(usage(
            "standard input is not a terminal, so there is nobody to ask; pass --password-stdin and write the new password on its first line",
        ));
    } else {
        None
    };
    super::runtime()?.block_on(async {
        let target = Target::open(&args.data_dir.path, &args.cluster, Access::Write).await?;
        let changed = change(&target, &args.username, piped).await;
        target.close().await;
        changed
    })
}

async fn change(target: &Target, username: &str, piped: Option<String>) -> anyhow::Result<ExitCode> {
    let set = |password: String| Command::SetPassword { username: username.to_owned(), password: Secret(password) };
    if let Some(password) = piped {
        return target::done(target.call(set(password)).await?);
    }
    match target.call(Command::UserExists { username: username.to_owned(), any_case: false }).await? {
        Reply::Exists { exists: true } => {}
        Reply::Exists { exists: false } => {
            return Err(usage(format!("there is no user named {username:?}; `chatctl users list` shows who exists")))
        }
        other => return Err(target::reply_error(other)),
    }
    eprintln!("Changing password for user '{username}'");
    for _ in 0..ATTEMPTS {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password (again): ")?;
        if first != again {
            eprintln!("Passwords do not match. Please try again.");
            continue;
        }
        match target.call(set(first)).await? {
            // The rules are checked where the change is applied: say why and ask again.
            Reply::Error { kind: ErrorKind::Invalid, message } => eprintln!("{message}"),
            reply => return target::done(reply),
        }
    }
    Err(usage(format!("too many attempts; the password of {username} was not changed")))
}
