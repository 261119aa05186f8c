//! Project tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! - `test`: everything CI checks, in order: formatting, clippy, the test
//!   suite, then `chatctl smoke-test` on the release build. `.ci/run`
//!   installs what the tests need and then runs exactly this.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>\n\ntasks:\n  test    fmt check, clippy, the test suite, and smoke-test on the release build";

fn test() -> Result<(), String> {
    let root = workspace_root();
    let jobs = "-j2";
    run(&root, "cargo", &["fmt", "--all", "--", "--check"])?;
    run(&root, "cargo", &["clippy", jobs, "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    run(&root, "cargo", &["test", jobs, "--workspace"])?;
    run(&root, "cargo", &["build", jobs, "--release", "--bin", "chatctl"])?;
    let binary = root.join("target/release/chatctl");
    run(&root, binary.to_str().ok_or("the target path is not UTF-8")?, &["smoke-test"])?;
    Ok(())
}

/// Runs a step, echoing it and its duration; a failing step stops the task.
fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let shown = format!("{program} {}", args.join(" "));
    eprintln!("\n==> {shown}");
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    eprintln!("==> {shown}: {status} in {:.0?}", started.elapsed());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}
