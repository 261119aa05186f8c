//! `chatctl migrate`: applies pending schema steps in order, each atomically.

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use super::DataDir;
use crate::storage::{migrations, SchemaCheck, Store};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// Only report: exit 1 when steps are pending, apply nothing.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::open(&args.data_dir.path, SchemaCheck::ForMigration)?;
    let pending = migrations::pending(store.db())?;
    let found = migrations::schema_version(store.db())?;
    if pending.is_empty() {
        println!("{}: schema version {found} is current; nothing to apply", store.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        println!("{}: schema version {found}; {} step(s) pending:", store.path().display(), pending.len());
        for step in &pending {
            println!("  {:>3}  {}", step.version, step.description);
        }
        println!("run `chatctl migrate --data-dir {}` to apply them", args.data_dir.path.display());
        return Ok(ExitCode::FAILURE);
    }
    for step in pending {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("  {msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("step {}", step.version));
        let report = |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        };
        migrations::apply(store.db(), step, &report)?;
        bar.finish_and_clear();
        println!("applied {:>3}  {}", step.version, step.description);
    }
    println!("{}: schema version {}", store.path().display(), migrations::CURRENT_VERSION);
    Ok(ExitCode::SUCCESS)
}
