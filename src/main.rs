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
