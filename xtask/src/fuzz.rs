//! `cargo xtask fuzz`: a short run of every cargo-fuzz target in `fuzz/`
//! (docs/FUZZING.md), 30 seconds each unless told otherwise. Not part of
//! `test`: it needs cargo-fuzz, which this task never installs, and builds
//! the library again with sanitizer flags.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [TARGET...]\n\n\
Runs each cargo-fuzz target of fuzz/ (every one unless some are named) for N seconds\n\
(default 30), with fuzz/seeds/<target> as seeds and fuzz/corpus/<target> kept between runs.\n\
Needs cargo-fuzz (cargo install cargo-fuzz); sets RUSTC_BOOTSTRAP=1 for its nightly flags.";

const INSTALL: &str =
    "cargo-fuzz is not installed: install it with `cargo install cargo-fuzz`, then run `cargo xtask fuzz` again";

pub fn fuzz(args: &[String]) -> Result<(), String> {
    let Some((seconds, named)) = parse_args(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let root = crate::workspace_root();
    let known = list_targets(&root)?;
    let chosen = if named.is_empty() { known.clone() } else { named };
    if let Some(unknown) = chosen.iter().find(|t| !known.contains(t)) {
        return Err(format!("no fuzz target `{unknown}`; the targets are: {}", known.join(", ")));
    }
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    for target in &chosen {
        match run_target(&root, target, seconds) {
            Ok(done) => summary.push(format!("{target}: ok: {done}")),
            Err(why) => {
                summary.push(format!("{target}: FAILED: {why}"));
                failed.push(target.as_str());
            }
        }
    }
    println!("\nxtask fuzz, {seconds} s per target:");
    for line in &summary {
        println!("  {line}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} found a failing input; it is saved under fuzz/artifacts/<target>/ (`cargo fuzz run <target> <file>` replays it)",
            failed.join(", ")
        ))
    }
}

/// `None` for `--help`; else the seconds per target and the targets named.
fn parse_args(args: &[String]) -> Result<Option<(u64, Vec<String>)>, String> {
    let mut seconds = 30;
    let mut named = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seconds" => Some(args.next().ok_or(format!("--seconds needs a number\n\n{USAGE}"))?.as_str()),
            other => other.strip_prefix("--seconds="),
        };
        match value {
            Some(raw) => {
                seconds = raw
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or(format!("--seconds takes a whole number of seconds above 0, not `{raw}`"))?;
            }
            None if arg.starts_with('-') => return Err(format!("unknown option `{arg}`\n\n{USAGE}")),
            None => named.push(arg.clone()),
        }
    }
    Ok(Some((seconds, named)))
}

/// The targets `fuzz/Cargo.toml` declares, as `cargo fuzz list` reads them;
/// also how a missing cargo-fuzz is noticed.
fn list_targets(root: &Path) -> Result<Vec<String>, String> {
    let output = Command::new("cargo").args(["fuzz", "list"]).current_dir(root).stderr(Stdio::null()).output();
    match output {
        Ok(output) if output.status.success() => Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        _ if !cargo_fuzz_installed() => Err(INSTALL.to_owned()),
        _ => Err("`cargo fuzz list` failed: run it in the repository root to see why".to_owned()),
    }
}

fn cargo_fuzz_installed() -> bool {
    let probe = Command::new("cargo").args(["fuzz", "--version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    probe.is_ok_and(|status| status.success())
}

/// Builds and runs one target; on success, libFuzzer's closing figures
/// (runs, coverage, corpus, speed).
fn run_target(root: &Path, target: &str, seconds: u64) -> Result<String, String> {
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("could not create {}: {e}", corpus.display()))?;
    let seeds = root.join("fuzz/seeds").join(target);
    let mut args = vec!["fuzz".into(), "run".into(), target.into(), corpus.display().to_string()];
    if seeds.is_dir() {
        args.push(seeds.display().to_string());
    }
    args.extend(["--".into(), format!("-max_total_time={seconds}")]);
    let shown = format!("RUSTC_BOOTSTRAP=1 cargo {}", args.join(" "));
    eprintln!("\n==> {shown}");
    let started = Instant::now();
    // cargo-fuzz passes -Z flags (sanitizers, coverage): this lets the
    // stable toolchain take them.
    let mut child = Command::new("cargo")
        .args(&args)
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run `{shown}`: {e}"))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut done = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.map_err(|e| format!("reading `{shown}`: {e}"))?;
        // libFuzzer reports every new input: keep the pulses, not those.
        if line.starts_with('#') && (line.contains("\tNEW ") || line.contains("\tREDUCE ")) {
            continue;
        }
        if let Some((_, figures)) = line.split_once("\tDONE ") {
            let runs = line.split_once('\t').map_or("", |(runs, _)| runs.trim_start_matches('#'));
            done = Some(format!("{runs} runs, {}", figures.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
        eprintln!("{line}");
    }
    let status = child.wait().map_err(|e| format!("`{shown}`: {e}"))?;
    eprintln!("==> {shown}: {status} in {:.0?}", started.elapsed());
    match (status.success(), done) {
        (true, Some(done)) => Ok(done),
        (true, None) => Ok("finished".to_owned()),
        (false, _) => Err(format!("`{shown}` exited with {status}")),
    }
}
