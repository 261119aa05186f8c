//! `chatctl smoke-test`: proves, over real HTTP and WebSockets, that two
//! users can chat. With no arguments it starts a server in-process on a
//! random loopback port with a temporary data dir; with `--url` it runs the
//! checks that fit against a running deployment, as two existing users.
//!
//! - `checks`: the checks that work against any deployment, as two users;
//! - `local`: the in-process single node, plus a direct conversation and a restart;
//! - `cluster`: two nodes in-process through one RabbitMQ (`--amqp-url`).

mod checks;
mod cluster;
mod local;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Client;
use crate::storage::{now_ms, UserRecord};

/// `chatctl smoke-test`'s flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A running chatctl (http://host:port or https://host:port) to check
    /// instead of a temporary one.
    #[arg(long, env = "CHATCTL_SMOKE_URL")]
    pub url: Option<String>,
    /// With --url: two existing accounts, each as NAME:PASSWORD.
    #[arg(long = "user", env = "CHATCTL_SMOKE_USERS", value_delimiter = ',')]
    pub users: Vec<String>,
    /// With an https:// --url: a PEM CA certificate to trust besides the
    /// system's (repeat for more; the variable takes a comma-separated list).
    #[arg(long = "ca-cert", env = "CHATCTL_SMOKE_CA_CERT", value_delimiter = ',', requires = "url")]
    pub ca_certs: Vec<PathBuf>,
    /// Run two nodes in-process through this RabbitMQ instead of one node.
    #[arg(long, conflicts_with = "url")]
    pub amqp_url: Option<String>,
}

/// How long a check waits for a frame or an answer that should come.
const WAIT: Duration = Duration::from_secs(10);
/// How long one check may take in all before it counts as failed.
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// Runs the checks against a temporary server, `--url`, or two nodes through
/// `--amqp-url`; exits 1 when any check failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async move {
        let mut report = Report::default();
        match &args.url {
            Some(url) => {
                let [a, b] = args.users.as_slice() else {
                    bail!("--url needs two accounts: --user alice:PASSWORD --user bob:PASSWORD");
                };
                let a = Account::parse(a)?;
                let b = Account::parse(b)?;
                let mut roots = Vec::new();
                for path in &args.ca_certs {
                    roots.extend(crate::http::tls::load_ca_certs(path)?);
                }
                let client = Client::with_roots(url, roots)?;
                if checks::shared_checks(&mut report, [&client, &client], &a, &b).await.is_none() {
                    println!("skipped the remaining checks: they build on the one that failed");
                }
            }
            None => match &args.amqp_url {
                Some(amqp_url) => cluster::run(&mut report, amqp_url).await?,
                None => local::run(&mut report).await?,
            },
        }
        println!("smoke-test: {} passed, {} failed", report.passed, report.failed);
        Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

/// A user name and password.
#[derive(Clone)]
struct Account {
    name: String,
    password: String,
}

impl Account {
    /// alice, bob and carol, with random passwords.
    fn smoke_users() -> Vec<Account> {
        ["alice", "bob", "carol"]
            .iter()
            .map(|name| Account {
                name: (*name).to_owned(),
                password: format!("{name}-smoke-{}", crate::auth::session::random_hex::<6>()),
            })
            .collect()
    }

    /// A new, active, non-admin account record (hashing takes a moment).
    fn record(&self) -> UserRecord {
        UserRecord {
            username: crate::domain::Username::parse(&self.name).expect("smoke-test account names are valid"),
            email: String::new(),
            password_hash: crate::auth::password::hash(&self.password),
            is_superuser: false,
            is_active: true,
            created_at_ms: now_ms(),
        }
    }

    fn parse(raw: &str) -> anyhow::Result<Account> {
        let (name, password) = raw.split_once(':').ok_or_else(|| anyhow!("--user takes NAME:PASSWORD"))?;
        Ok(Account { name: name.to_owned(), password: password.to_owned() })
    }
}

/// Counts checks and prints one line each (a spinner while it runs, when
/// stderr is a terminal).
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    async fn check<T>(&mut self, name: &str, work: impl Future<Output = anyhow::Result<T>>) -> Option<T> {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(name.to_owned());
        spinner.enable_steady_tick(Duration::from_millis(100));
        let outcome = match tokio::time::timeout(STEP_LIMIT, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow!("did not finish within {STEP_LIMIT:?}")),
        };
        spinner.finish_and_clear();
        match outcome {
            Ok(value) => {
                self.passed += 1;
                println!("ok      {name}");
                Some(value)
            }
            Err(error) => {
                self.failed += 1;
                println!("FAILED  {name}: {error:#}");
                None
            }
        }
    }
}
