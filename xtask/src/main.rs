//! Project tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! - `test`: everything CI checks, in order: formatting, clippy, the test
//!   suite, then `chatctl smoke-test` on the release build (and its two-node
//!   form when `CHATCTL_TEST_AMQP_URL` names a broker), then the quick
//!   bench. `.ci/run` installs what the tests need and then runs exactly this.
//! - `bench`: load scenarios against the release server; see `bench/mod.rs`.
//! - `fuzz`: a short run of each cargo-fuzz target in `fuzz/`; see `fuzz.rs`.
//!   Never part of `test`.

mod bench;
mod fuzz;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
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

const USAGE: &str = "usage: cargo xtask <task>\n\ntasks:\n  test    fmt check, clippy, the test suite, smoke-test on the release build, and the quick bench\n  bench   load scenarios against the release build (cargo xtask bench --help)\n  fuzz    30 s of each cargo-fuzz target in fuzz/; needs cargo-fuzz (cargo xtask fuzz --help)";

fn test() -> Result<(), String> {
    let root = workspace_root();
    let jobs = "-j2";
    let mut tally = Tally::default();
    run(&root, "cargo", &["fmt", "--all", "--", "--check"], None)?;
    run(&root, "cargo", &["clippy", jobs, "--workspace", "--all-targets", "--", "-D", "warnings"], None)?;
    let suite = run(&root, "cargo", &["test", jobs, "--workspace"], Some(&mut tally));
    let build = suite.and_then(|_| run(&root, "cargo", &["build", jobs, "--release", "--bin", "chatctl"], None));
    let binary = root.join("target/release/chatctl");
    let smoke = build.and_then(|_| {
        let binary = binary.to_str().ok_or("the target path is not UTF-8")?;
        run(&root, binary, &["smoke-test"], Some(&mut tally))?;
        // The two-node smoke test needs a broker: CI provides one.
        match std::env::var("CHATCTL_TEST_AMQP_URL") {
            Ok(url) if !url.is_empty() => run(&root, binary, &["smoke-test", "--amqp-url", &url], Some(&mut tally)),
            _ => {
                eprintln!("SKIPPED smoke-test --amqp-url: set CHATCTL_TEST_AMQP_URL to run the two-node smoke test");
                Ok(())
            }
        }
    });
    // Last, so CI exercises the bench: it fails only on a scenario that could
    // not run or a message lost, duplicated or reordered, never on speed.
    let bench = smoke.and_then(|_| bench::bench(&["--quick".to_owned()]));
    // One closing line for the whole run: tests of the suite plus smoke-test checks.
    println!("\nxtask: {} passed, {} failed", tally.passed, tally.failed);
    bench
}

/// Test counts read from the runners' own summary lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Reads `test result: ok. 3 passed; 0 failed; ...` (cargo test) and
    /// `smoke-test: 13 passed, 0 failed`.
    fn read(&mut self, line: &str) {
        let words: Vec<&str> =
            line.split(|c: char| c.is_whitespace() || c == ';' || c == ',').filter(|w| !w.is_empty()).collect();
        for pair in words.windows(2) {
            match (pair[0].parse::<u64>(), pair[1]) {
                (Ok(n), "passed") => self.passed += n,
                (Ok(n), "failed") => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Runs a step, echoing it and its duration; a failing step stops the task.
/// With a tally, the step's standard output is passed through and counted.
fn run(dir: &Path, program: &str, args: &[&str], tally: Option<&mut Tally>) -> Result<(), String> {
    let shown = format!("{program} {}", args.join(" "));
    eprintln!("\n==> {shown}");
    let started = Instant::now();
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    let status = match tally {
        None => command.status(),
        Some(tally) => command.stdout(Stdio::piped()).spawn().and_then(|mut child| {
            let stdout = child.stdout.take().expect("stdout is piped");
            for line in BufReader::new(stdout).lines() {
                let line = line?;
                println!("{line}");
                tally.read(&line);
            }
            child.wait()
        }),
    }
    .map_err(|e| format!("could not run `{shown}`: {e}"))?;
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
