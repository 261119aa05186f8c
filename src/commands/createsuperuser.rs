//! `chatctl createsuperuser`, as Django's: prompts for a username, an
//! optional email and a hidden password twice; or, with `--no-input`, takes
//! the password from `CHATCTL_SUPERUSER_PASSWORD` or `--password-stdin`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::DataDir;
use crate::auth::password;
use crate::domain::Username;
use crate::storage::{now_ms, SchemaCheck, StorageError, Store, UserRecord};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDir,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    /// Ask nothing: needs --username and a password from
    /// CHATCTL_SUPERUSER_PASSWORD or --password-stdin.
    #[arg(long = "no-input", alias = "noinput")]
    pub no_input: bool,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::open(&args.data_dir.path, SchemaCheck::RequireCurrent)?;
    if store.stream_next_offset()?.is_some() {
        // An account written here would reach no other node.
        bail!(
            "{} belongs to a cluster node: accounts must go through the cluster's log. \
             Create them on a running node's /admin page (or its first-run /setup page)",
            args.data_dir.path.display()
        );
    }
    let (username, email, password) = if args.no_input || args.password_stdin {
        non_interactive(&args)?
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("standard input is not a terminal; use --no-input --username NAME with CHATCTL_SUPERUSER_PASSWORD or --password-stdin");
        }
        interactive(&store, &args)?
    };
    let hash = password::hash(&password);
    let record = UserRecord {
        username: username.as_str().to_owned(),
        email,
        password_hash: hash,
        is_superuser: true,
        is_active: true,
        created_at_ms: now_ms(),
    };
    match store.create_user(&record) {
        Ok(()) => {
            println!("Superuser {} created.", username.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Err(StorageError::UsernameTaken) => {
            eprintln!("Error: the username {} is already taken; choose another.", username.as_str());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}

fn non_interactive(args: &Args) -> anyhow::Result<(Username, String, String)> {
    let Some(raw) = &args.username else {
        bail!("--no-input needs --username NAME");
    };
    let username = Username::parse(raw).map_err(|e| anyhow::anyhow!("invalid --username: {e}"))?;
    let email = args.email.clone().unwrap_or_default();
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        std::env::var("CHATCTL_SUPERUSER_PASSWORD").map_err(|_| {
            anyhow::anyhow!("set CHATCTL_SUPERUSER_PASSWORD or pass --password-stdin to give the password")
        })?
    };
    let problems = password::check_rules(&password, username.as_str(), &email);
    if !problems.is_empty() {
        bail!("the password was refused: {}", problems.join(" "));
    }
    Ok((username, email, password))
}

fn interactive(store: &Store, args: &Args) -> anyhow::Result<(Username, String, String)> {
    let username = loop {
        let raw = match &args.username {
            Some(raw) => raw.clone(),
            None => prompt("Username: ")?,
        };
        match Username::parse(&raw) {
            Ok(name) if store.user(name.as_str())?.is_some() => {
                eprintln!("Error: That username is already taken.");
                if args.username.is_some() {
                    bail!("the username {raw} is already taken");
                }
            }
            Ok(name) => break name,
            Err(e) if args.username.is_some() => bail!("invalid --username: {e}"),
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

fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("standard input closed");
    }
    Ok(line.trim().to_owned())
}
