//! The `chatctl` command line: parses and dispatches, nothing else.

use std::process::ExitCode;

use chatctl::commands::{createsuperuser, migrate, rabbit_check, serve, smoke_test};
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
    /// Create an administrator account.
    Createsuperuser(createsuperuser::Args),
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
        Command::SmokeTest(args) => smoke_test::run(args),
        Command::RabbitCheck(args) => rabbit_check::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chatctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
