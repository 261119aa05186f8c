//! Running the `chatctl` binary from tests: bounded in time, with no
//! standard input unless a test pipes some, and none of the developer's
//! `CHATCTL_*` variables. Each test binary uses a subset.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long any admin command may take before the test calls it hung.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Runs `chatctl ARGS` with `stdin` piped in (or no standard input at all),
/// off the runtime so the in-process server keeps serving; kills it if it
/// outlives `COMMAND_LIMIT`.
pub async fn chatctl(args: &[&str], stdin: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || run_bounded(&args, stdin.as_deref())).await.expect("the command runner")
}

pub fn run_bounded(args: &[String], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatctl"))
        .args(args)
        .env_remove("CHATCTL_DATA_DIR")
        .env_remove("CHATCTL_AMQP_URL")
        .env_remove("CHATCTL_AMQP_STREAM")
        .env_remove("CHATCTL_SUPERUSER_PASSWORD")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chatctl");
    if let Some(text) = stdin {
        // A command that refuses its arguments exits before it reads its
        // input: the pipe is then closed, which is no failure of the test.
        match child.stdin.take().expect("piped stdin").write_all(text.as_bytes()) {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {error}"),
            _ => {}
        }
    }
    let started = Instant::now();
    while child.try_wait().expect("polling chatctl").is_none() {
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let output = child.wait_with_output().expect("reaping chatctl");
            panic!("chatctl {args:?} hung for {COMMAND_LIMIT:?}; stderr: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("reading chatctl's output")
}

pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn assert_ok(output: &Output, what: &str) {
    assert_eq!(code(output), 0, "{what} failed: stdout {} stderr {}", stdout(output), stderr(output));
}

pub fn dir_arg(dir: &Path) -> String {
    dir.display().to_string()
}

/// Waits for the server to close the socket; returns (code, reason).
pub async fn closed(ws: &mut chatctl::client::ChatSocket) -> (u16, String) {
    loop {
        match ws.next_event(crate::common::WAIT).await.expect("the socket closes") {
            chatctl::client::Event::Closed { code, reason } => return (code, reason),
            chatctl::client::Event::Json(_) => continue,
        }
    }
}
