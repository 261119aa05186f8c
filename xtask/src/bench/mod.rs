//! `cargo xtask bench [--scenario NAME] [--quick]`: starts the release
//! server as a child process per scenario, drives it with a load generator
//! written here (tokio, WebSockets over plain TCP, loopback only), and
//! reports throughput, latency, delivery correctness and the server's CPU
//! and memory; the attack scenarios (run only when named) report memory
//! and `/healthz` answers under abuse. Speed is reported, never asserted:
//! the command fails only when a scenario cannot run (a failed `chatctl
//! backup` in `backup` counts as one) or a message is lost, duplicated or
//! reordered.
//!
//! The load generator must not be a debug build, so a debug `xtask` (what
//! the cargo alias runs) builds `xtask` in release and hands the run to it.

mod histogram;
mod http;
mod load;
mod report;
mod scenarios;
mod server;
mod sys;
mod ws;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use report::{Report, Status, Summary};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every scenario run by default (and by `cargo xtask test`'s quick
/// bench), in the order they run.
pub const SCENARIOS: [&str; 8] =
    ["fanout", "latency", "durable", "connections", "login-storm", "backup", "cluster", "app"];
/// Attacks on the server, run only when named: they hold thousands of
/// connections for the server's 30 s deadlines, so even their quick sizes
/// take minutes, and what they report is memory and answers under abuse,
/// not throughput.
pub const ATTACKS: [&str; 3] = ["history-flood", "slow-bodies", "storm-memory"];

/// Internal flag: the release binary was already built by the debug xtask that started us.
const PREBUILT: &str = "--prebuilt";

pub const USAGE: &str = "usage: cargo xtask bench [--scenario NAME[,NAME...]] [--quick]\n\n\
scenarios: fanout, latency, durable, connections, login-storm, backup, cluster, app (all by default)\n\
attacks (only when named): history-flood, slow-bodies, storm-memory\n\
--quick    small sizes and short runs (CI): under a minute (the attacks: a few minutes)\n\
app compares itself with fanout when both run\n\
cluster runs when CHATCTL_BENCH_AMQP_URL or CHATCTL_TEST_AMQP_URL names a RabbitMQ\n\
CHATCTL_BENCH_LOADER_THREADS=N sets the load generator's worker threads (default: one per core)\n\
CHATCTL_BENCH_QUIET_WAIT_S=N caps each scenario's wait for an idle machine (default: 600 full, 3 quick)";

struct Options {
    scenarios: Vec<&'static str>,
    quick: bool,
    prebuilt: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options { scenarios: Vec::new(), quick: false, prebuilt: false };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                PREBUILT => options.prebuilt = true,
                "--scenario" => {
                    let names = args.next().ok_or(format!("--scenario needs a name\n\n{USAGE}"))?;
                    for name in names.split(',') {
                        let known = SCENARIOS
                            .iter()
                            .chain(&ATTACKS)
                            .find(|s| **s == name)
                            .ok_or(format!("unknown scenario `{name}`\n\n{USAGE}"))?;
                        if !options.scenarios.contains(known) {
                            options.scenarios.push(known);
                        }
                    }
                }
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
            }
        }
        if options.scenarios.is_empty() {
            options.scenarios = SCENARIOS.to_vec();
        } else {
            // Keep the canonical order: `cluster` compares itself with `fanout`.
            options.scenarios.sort_by_key(|s| SCENARIOS.iter().chain(&ATTACKS).position(|k| k == s));
        }
        Ok(options)
    }
}

/// What every scenario needs to know about the run.
pub struct Env {
    pub binary: PathBuf,
    /// `target/bench`.
    pub out: PathBuf,
    pub quick: bool,
    pub amqp_url: Option<String>,
}

/// The `bench` task. `args` are the words after `bench`.
pub fn bench(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    let root = crate::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    if !options.prebuilt {
        crate::run(&root, "cargo", &["build", "--release", "-j2", "--bin", "chatctl"], None)?;
    }
    if cfg!(debug_assertions) && !options.prebuilt {
        crate::run(&root, "cargo", &["build", "--release", "-j2", "-p", "xtask"], None)?;
        let release = target.join("release/xtask");
        let status = Command::new(&release)
            .arg("bench")
            .args(args)
            .arg(PREBUILT)
            .status()
            .map_err(|e| format!("could not run {}: {e}", release.display()))?;
        return if status.success() { Ok(()) } else { Err(format!("the bench failed ({status})")) };
    }
    let shown: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != PREBUILT).collect();
    let command = format!("cargo xtask bench {}", shown.join(" ")).trim_end().to_owned();
    run(&root, &target, &options, command)
}

/// `commit abc1234`, plus whether the server's sources differ from it.
fn server_source(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown commit (not a git checkout)".to_owned(),
        Some(commit) => {
            let changed = git(&["status", "--porcelain", "--", "src", "assets", "Cargo.toml", "Cargo.lock"])
                .is_some_and(|s| !s.is_empty());
            let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_default();
            let dirty = if changed { ", with uncommitted changes to its sources" } else { "" };
            format!("commit {commit} ({branch}){dirty}")
        }
    }
}

/// A machine with no more than this many cores busy counts as idle.
const QUIET_CORES: f64 = 0.3;
const QUIET_WAIT_FULL: Duration = Duration::from_secs(600);
const QUIET_WAIT_QUICK: Duration = Duration::from_secs(3);
/// Runs of one scenario at most while other processes keep disturbing it (full runs only).
const DISTURBED_ATTEMPTS: u32 = 3;

/// How long a scenario waits for an idle machine: `CHATCTL_BENCH_QUIET_WAIT_S`
/// when set (on a machine others keep busy, waiting longer only delays the
/// run; the report still says the machine was not idle), else the mode's default.
fn quiet_wait(quick: bool) -> Duration {
    std::env::var("CHATCTL_BENCH_QUIET_WAIT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(if quick { QUIET_WAIT_QUICK } else { QUIET_WAIT_FULL })
}

/// Waits (up to `max`) for a second in which the machine is nearly idle;
/// returns the busy cores seen last if it never was.
fn wait_for_quiet(max: Duration) -> Option<f64> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let before = sys::MachineCpu::read();
        std::thread::sleep(Duration::from_millis(500));
        let used = sys::MachineCpu::read().since(before);
        let busy = (used.busy + used.softirq) / 0.5;
        if busy <= QUIET_CORES {
            return None;
        }
        if started.elapsed() >= max {
            return Some(busy);
        }
        if !told {
            eprintln!("    waiting for the machine to be idle ({busy:.2} cores busy; up to {max:?})");
            told = true;
        }
    }
}

fn run(root: &Path, target: &Path, options: &Options, command: String) -> Result<(), String> {
    let started = Instant::now();
    // Now, right after the build: the sources may change while the bench runs.
    let server_source = server_source(root);
    let open_files = sys::raise_open_files();
    let amqp_url = ["CHATCTL_BENCH_AMQP_URL", "CHATCTL_TEST_AMQP_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|url| !url.is_empty());
    let env = Env { binary: target.join("release/chatctl"), out: target.join("bench"), quick: options.quick, amqp_url };
    if !env.binary.exists() {
        return Err(format!("{} is missing: build it with cargo build --release --bin chatctl", env.binary.display()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("CHATCTL_BENCH_LOADER_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        )
        .enable_all()
        .build()
        .map_err(|e| format!("starting the load generator's runtime: {e}"))?;
    let mode = if options.quick { "quick" } else { "full" };
    eprintln!("\n==> bench ({mode}): {} (open-file limit {open_files})", options.scenarios.join(", "));

    let mut reports: Vec<Report> = Vec::new();
    for name in &options.scenarios {
        eprintln!("\n--> {name}");
        let scenario_started = Instant::now();
        let fanout = reports.iter().find(|r| r.scenario == "fanout" && r.status == Status::Ok).cloned();
        // Another build or test run on the machine distorts every figure:
        // start on an idle machine, and run again a scenario that was disturbed.
        let attempts = if options.quick { 1 } else { DISTURBED_ATTEMPTS };
        let mut attempt = 1;
        let report = loop {
            let busy = wait_for_quiet(quiet_wait(options.quick));
            let mut report = scenarios::run(name, &env, &runtime, fanout.as_ref());
            if let Some(busy) = busy {
                report.notes.push(format!("the machine was not idle before the run ({busy:.2} cores busy)"));
            }
            let disturbed = report.notes.iter().any(|n| n.starts_with("DISTURBED"));
            if !disturbed || attempt >= attempts || report.status != Status::Ok {
                if attempt > 1 {
                    report.notes.push(format!("attempt {attempt}: earlier attempts were disturbed"));
                }
                break report;
            }
            eprintln!("    disturbed by other processes: running {name} again");
            attempt += 1;
        };
        eprintln!("--> {name}: {} ({:.1} s)", report.headline, scenario_started.elapsed().as_secs_f64());
        for note in &report.notes {
            eprintln!("    {note}");
        }
        reports.push(report);
    }
    drop(runtime);

    let summary = Summary {
        date: sys::utc_now(),
        command,
        mode,
        server_source,
        machine: sys::Machine::read(),
        wall_s: started.elapsed().as_secs_f64(),
        scenarios: reports,
    };
    println!("\n{}", report::table(&summary.scenarios));
    report::write_json(&env.out, &summary)?;
    // Only a full run of every scenario speaks for the project; others stay in target/.
    let complete = !options.quick && SCENARIOS.iter().all(|s| options.scenarios.contains(s));
    let doc = if complete { root.join("docs/BENCHMARKS.md") } else { env.out.join("BENCHMARKS.md") };
    let mut text = report::markdown(&summary);
    // What was tried, with before/after figures, is kept by hand and
    // carried into every generated copy.
    if let Ok(attempts) = std::fs::read_to_string(root.join("docs/benchmark-attempts.md")) {
        text.push('\n');
        text.push_str(&attempts);
    }
    std::fs::write(&doc, text).map_err(|e| format!("writing {}: {e}", doc.display()))?;
    eprintln!(
        "==> bench: figures in {}/<scenario>.json and summary.json; table in {} ({:.0} s)",
        env.out.display(),
        doc.display(),
        summary.wall_s
    );

    let broken: Vec<String> = summary
        .scenarios
        .iter()
        .filter(|r| r.broken())
        .map(|r| match r.status {
            Status::Failed => format!("{} could not run", r.scenario),
            _ => format!(
                "{} lost {} / duplicated {} / reordered {} message deliveries",
                r.scenario, r.lost, r.duplicates, r.reordered
            ),
        })
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("bench: {}", broken.join("; ")))
    }
}
