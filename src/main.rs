//! The `chatctl` command line: parses and dispatches, nothing else.

use std::process::ExitCode;

use chatctl::commands::{
    self, backup, changepassword, createsuperuser, migrate, rabbit_check, restore, serve, smoke_test, users,
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chatctl", version = chatctl::VERSION, about = "A real-time chat server in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the chat over HTTP and WebSockets.
    Serve(serve::Args),
    /// Apply pending database schema steps.
    Migrate(migrate::Args),
    /// Create an administrator account (the server may be running).
    Createsuperuser(createsuperuser::Args),
    /// Set a user's password and end all of their sessions.
    Changepassword(changepassword::Args),
    /// List, deactivate or activate accounts.
    Users(users::Args),
    /// Write a consistent copy of the database, while the server runs or not.
    Backup(backup::Args),
    /// Put a backup in place as a data dir's database (server stopped).
    Restore(restore::Args),
    /// Check, for real, that two users can chat (on a temporary server or --url).
    SmokeTest(smoke_test::Args),
    /// Check that RabbitMQ is reachable and lets serve use its stream (--amqp-url).
    RabbitCheck(rabbit_check::Args),
}

/// jemalloc, not the system's malloc, because it gives memory back. Under
/// glibc's malloc four rounds of 9,000 slow connections left the server at
/// 913 MB long after the connections were gone (freed memory stayed in its
/// arenas); under jemalloc it was back to 29 MB within a second of each
/// round (`storm-memory` in docs/benchmark-attempts.md). mimalloc, tried
/// first, kept half of it: it purges only when a thread allocates again.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it starts (the `MALLOC_CONF`
/// variable, spelled `_RJEM_MALLOC_CONF` for this prefixed build, still
/// overrides them). A background thread purges on a timer, so memory goes
/// back even when the server has gone idle after an attack; freed pages
/// are returned (dirty) within a second and not kept as "muzzy" pages.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Createsuperuser(args) => createsuperuser::run(args),
        Command::Changepassword(args) => changepassword::run(args),
        Command::Users(args) => users::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => restore::run(args),
        Command::SmokeTest(args) => smoke_test::run(args),
        Command::RabbitCheck(args) => rabbit_check::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chatctl: {error:#}");
            commands::exit_code_of(&error)
        }
    }
}
