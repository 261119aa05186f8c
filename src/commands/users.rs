//! `chatctl users list|deactivate|activate`: the accounts, from a shell,
//! whether the server runs or not. Deactivating ends the user's sessions
//! and closes their sockets (1008 "account deactivated").

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use super::target::{self, Access};
use super::{ClusterArgs, DataDir};
use crate::control::protocol::{Command, Reply, UserInfo};

/// `chatctl users`' subcommand.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which of list, deactivate or activate.
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// The `users` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum UsersCommand {
    /// List every account: username, email, superuser, active, created.
    List(ListArgs),
    /// Deactivate an account: it can no longer sign in, and its sessions end.
    Deactivate(NameArgs),
    /// Activate an account again.
    Activate(NameArgs),
}

/// `chatctl users list`'s flags.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// The data dir whose accounts to list; read even while a server runs.
    #[command(flatten)]
    pub data_dir: DataDir,
    /// A JSON array, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The flags of `users deactivate` and `users activate`.
#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// The account's username.
    pub username: String,
    /// The data dir whose account changes (through its server, if one runs).
    #[command(flatten)]
    pub data_dir: DataDir,
    /// With `--amqp-url`: apply the change through a stopped cluster node's stream.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs the chosen subcommand on the server or the data dir.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        match args.command {
            UsersCommand::List(list) => {
                // Reading needs no log: a stopped cluster node lists what it has applied.
                let no_cluster = ClusterArgs::none();
                match target::run_once(&list.data_dir.path, &no_cluster, Access::Read, Command::ListUsers).await? {
                    Reply::Users { users } => {
                        print_users(&users, list.json)?;
                        Ok(ExitCode::SUCCESS)
                    }
                    other => Err(target::reply_error(other)),
                }
            }
            UsersCommand::Deactivate(name) => set_active(name, false).await,
            UsersCommand::Activate(name) => set_active(name, true).await,
        }
    })
}

async fn set_active(args: NameArgs, active: bool) -> anyhow::Result<ExitCode> {
    let command = Command::SetActive { username: args.username, active };
    target::done(target::run_once(&args.data_dir.path, &args.cluster, Access::Write, command).await?)
}

fn print_users(users: &[UserInfo], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = users
            .iter()
            .map(|u| {
                serde_json::json!({
                    "username": u.username,
                    "email": u.email,
                    "is_superuser": u.is_superuser,
                    "is_active": u.is_active,
                    "created": created(u.created_at_ms),
                    "created_at_ms": u.created_at_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let width =
        |column: &str, value: fn(&UserInfo) -> usize| users.iter().map(value).max().unwrap_or(0).max(column.len());
    let name_w = width("USERNAME", |u| u.username.chars().count());
    let email_w = width("EMAIL", |u| u.email.chars().count());
    println!("{:name_w$}  {:email_w$}  {:9}  {:6}  CREATED", "USERNAME", "EMAIL", "SUPERUSER", "ACTIVE");
    for u in users {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        println!(
            "{:name_w$}  {:email_w$}  {:9}  {:6}  {}",
            u.username,
            u.email,
            yes_no(u.is_superuser),
            yes_no(u.is_active),
            created(u.created_at_ms)
        );
    }
    Ok(())
}

/// RFC 3339, UTC, to the second.
fn created(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
