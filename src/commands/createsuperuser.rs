//! `chatctl createsuperuser`, as Django's: prompts for a username, an
//! optional email and a hidden password twice; or, with `--no-input`, takes
//! the password from `CHATCTL_SUPERUSER_PASSWORD` or `--password-stdin`.
//! It works whether the server runs (through its control socket) or not,
//! and with `--amqp-url` into a cluster (see `target`).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;

use super::target::{self, Access, Target};
use super::{usage, ClusterArgs, DataDir};
use crate::auth::password;
use crate::control::ops::TAKEN_WHY;
use crate::control::protocol::{Command, ErrorKind, Reply, Secret};
use crate::domain::Username;

/// `chatctl createsuperuser`'s flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data dir to add the account to (through its server, if one runs).
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The new account's name (asked for when missing, unless --no-input).
    #[arg(long)]
    pub username: Option<String>,
    /// The new account's email address; optional, as in Django.
    #[arg(long)]
    pub email: Option<String>,
    /// Ask nothing: needs --username and a password from
    /// CHATCTL_SUPERUSER_PASSWORD or --password-stdin.
    #[arg(long = "no-input", alias = "noinput")]
    pub no_input: bool,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// With `--amqp-url`: create the account through the cluster's stream.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Creates the account; with `--no-input` or `--password-stdin` everything is
/// checked before the data dir is touched.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Everything a script gives is checked before the data dir is touched.
    let given = if args.no_input || args.password_stdin {
        Some(non_interactive(&args)?)
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(usage("standard input is not a terminal; use --no-input --username NAME with CHATCTL_SUPERUSER_PASSWORD or --password-stdin"));
        }
        None
    };
    super::runtime()?.block_on(async {
        let target = Target::open(&args.data_dir.path, &args.cluster, Access::WriteOrCreate).await?;
        let created = create(&target, &args, given).await;
        target.close().await;
        created
    })
}

async fn create(target: &Target, args: &Args, given: Option<(Username, String, String)>) -> anyhow::Result<ExitCode> {
    let (username, email, password) = match given {
        Some(given) => given,
        None => interactive(target, args).await?,
    };
    let command =
        Command::CreateSuperuser { username: username.as_str().to_owned(), email, password: Secret(password) };
    match target.call(command).await? {
        Reply::Error { kind: ErrorKind::Taken, .. } => {
            eprintln!("Error: the username {} is already taken ({TAKEN_WHY}); choose another.", username.as_str());
            Ok(ExitCode::FAILURE)
        }
        reply => target::done(reply),
    }
}

fn non_interactive(args: &Args) -> anyhow::Result<(Username, String, String)> {
    let Some(raw) = &args.username else {
        return Err(usage("--no-input needs --username NAME"));
    };
    let username = Username::parse(raw).map_err(|e| usage(format!("invalid --username: {e}")))?;
    let email = args.email.clone().unwrap_or_default();
    let password = if args.password_stdin {
        super::password_from_stdin()?
    } else {
        std::env::var("CHATCTL_SUPERUSER_PASSWORD")
            .map_err(|_| usage("set CHATCTL_SUPERUSER_PASSWORD or pass --password-stdin to give the password"))?
    };
    let problems = password::check_rules(&password, username.as_str(), &email);
    if !problems.is_empty() {
        return Err(usage(format!("the password was refused: {}", problems.join(" "))));
    }
    Ok((username, email, password))
}

async fn interactive(target: &Target, args: &Args) -> anyhow::Result<(Username, String, String)> {
    let username = loop {
        let raw = match &args.username {
            Some(raw) => raw.clone(),
            None => prompt("Username: ")?,
        };
        match Username::parse(&raw) {
            Ok(name) if taken(target, name.as_str()).await? => {
                eprintln!("Error: That username is already taken ({TAKEN_WHY}).");
                if args.username.is_some() {
                    bail!("the username {raw} is already taken ({TAKEN_WHY})");
                }
            }
            Ok(name) => break name,
            Err(e) if args.username.is_some() => return Err(usage(format!("invalid --username: {e}"))),
            Err(e) => eprintln!("Error: {e}."),
        }
    };
    let email = match &args.email {
        Some(email) => email.clone(),
        None => prompt("Email address (optional): ")?,
    };
    let password = loop {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password (again): ")?;
        if first != again {
            eprintln!("Error: Your passwords didn't match.");
            continue;
        }
        if first.trim().is_empty() {
            eprintln!("Error: Blank passwords aren't allowed.");
            continue;
        }
        let problems = password::check_rules(&first, username.as_str(), &email);
        if problems.is_empty() {
            break first;
        }
        for problem in problems {
            eprintln!("{problem}");
        }
    };
    Ok((username, email.trim().to_owned(), password))
}

async fn taken(target: &Target, username: &str) -> anyhow::Result<bool> {
    match target.call(Command::UserExists { username: username.to_owned(), any_case: true }).await? {
        Reply::Exists { exists } => Ok(exists),
        other => Err(target::reply_error(other)),
    }
}

fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("standard input closed");
    }
    Ok(line.trim().to_owned())
}
