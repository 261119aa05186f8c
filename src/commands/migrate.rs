//! `chatctl migrate`: applies pending schema steps in order, each atomically.
//! On a data dir without a database, `migrate` creates one at the current
//! version (as `serve` would) and says so; `migrate --check` creates nothing.

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use super::DataDir;
use crate::storage::{files, migrations, SchemaCheck, Store, DB_FILE};

/// `chatctl migrate`'s flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data dir whose database to migrate (the server must be stopped).
    #[command(flatten)]
    pub data_dir: DataDir,
    /// Only report: exit 1 when steps are pending, 2 when there is no
    /// database; apply and create nothing.
    #[arg(long)]
    pub check: bool,
}

/// Exit status of `--check` when there is no database to check.
const NO_DATABASE: u8 = 2;

/// Applies the pending steps, or with `--check` only reports them; the exit
/// code says which case held.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = &args.data_dir.path;
    let db_path = dir.join(DB_FILE);
    // An unreadable path counts as present: opening it then says what is wrong.
    let existed = db_path.try_exists().unwrap_or(true);
    if !existed && args.check {
        // A check changes nothing, not even by creating an empty database.
        eprintln!(
            "no database at {}; nothing to check. Point --data-dir at an existing data dir, \
             or create a new database with `chatctl migrate --data-dir {}` (serve also creates one)",
            db_path.display(),
            dir.display()
        );
        return Ok(ExitCode::from(NO_DATABASE));
    }
    let store = Store::open(dir, SchemaCheck::ForMigration)?;
    for loose in files::loose_permissions(dir) {
        eprintln!("chatctl migrate: warning: {loose}");
    }
    if !existed {
        println!(
            "{}: no database was here; created one at schema version {}",
            store.path().display(),
            migrations::CURRENT_VERSION
        );
        return Ok(ExitCode::SUCCESS);
    }
    let db = store.db()?;
    let pending = migrations::pending(&db)?;
    let found = migrations::schema_version(&db)?;
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
        migrations::apply(&db, step, &report)?;
        bar.finish_and_clear();
        println!("applied {:>3}  {}", step.version, step.description);
    }
    for (name, holder) in store.case_twins()? {
        println!(
            "note: the users {name} and {holder} differ only in case; both are kept and sign in as written, \
             and no new account can take either name in any case"
        );
    }
    println!("{}: schema version {}", store.path().display(), migrations::CURRENT_VERSION);
    Ok(ExitCode::SUCCESS)
}
