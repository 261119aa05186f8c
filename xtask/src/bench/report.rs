//! What a run reports: one `Report` per scenario, printed as a table, saved
//! as JSON (`target/bench/<scenario>.json`, `summary.json`) and rendered as
//! `docs/BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::histogram::Histogram;
use super::load::Integrity;
use super::sys::Machine;

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
    Failed,
}

/// A goal from the brief and whether this run met it.
#[derive(Serialize, Clone, Debug)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram) -> Option<Latency> {
        let ms = |us: Option<u64>| us.unwrap_or(0) as f64 / 1000.0;
        (histogram.count() > 0).then(|| Latency {
            samples: histogram.count(),
            p50_ms: ms(histogram.quantile_us(0.50)),
            p99_ms: ms(histogram.quantile_us(0.99)),
            p999_ms: ms(histogram.quantile_us(0.999)),
            max_ms: ms(histogram.max_us()),
        })
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub scenario: String,
    pub status: Status,
    /// Why it failed or was skipped, or what to know about it.
    pub notes: Vec<String>,
    /// What ran: sockets, rooms, rates, duration.
    pub size: String,
    /// The scenario's own figure, as shown in the table.
    pub headline: String,
    /// Seconds from the first message sent to the last one received.
    pub measured_s: f64,
    pub sockets: u64,
    pub messages_sent: u64,
    pub messages_confirmed: u64,
    pub messages_refused: u64,
    pub messages_unanswered: u64,
    pub deliveries: u64,
    pub deliveries_expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub sockets_unfinished: u64,
    pub latency: Option<Latency>,
    pub server_cpu_s: Option<f64>,
    pub deliveries_per_server_cpu_s: Option<f64>,
    pub loader_cpu_s: Option<f64>,
    /// Scenario-specific figures (rates, sizes, counters).
    pub figures: BTreeMap<String, f64>,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            status: Status::Ok,
            notes: Vec::new(),
            size: String::new(),
            headline: String::new(),
            measured_s: 0.0,
            sockets: 0,
            messages_sent: 0,
            messages_confirmed: 0,
            messages_refused: 0,
            messages_unanswered: 0,
            deliveries: 0,
            deliveries_expected: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            sockets_unfinished: 0,
            latency: None,
            server_cpu_s: None,
            deliveries_per_server_cpu_s: None,
            loader_cpu_s: None,
            figures: BTreeMap::new(),
            targets: Vec::new(),
        }
    }

    pub fn failed(scenario: &str, size: String, error: String) -> Report {
        let mut report = Report::new(scenario);
        report.status = Status::Failed;
        report.size = size;
        report.headline = "could not run".to_owned();
        report.notes.push(error);
        report
    }

    pub fn skipped(scenario: &str, size: String, why: &str) -> Report {
        let mut report = Report::new(scenario);
        report.status = Status::Skipped;
        report.size = size;
        report.headline = "skipped".to_owned();
        report.notes.push(why.to_owned());
        report
    }

    /// Copies a run's delivery counts, latency and CPU figures.
    pub fn absorb(&mut self, integrity: &Integrity, measured_s: f64, server_cpu_s: f64, loader_cpu_s: f64) {
        self.measured_s = (measured_s * 1000.0).round() / 1000.0;
        self.sockets = integrity.sockets;
        self.messages_sent = integrity.sent;
        self.messages_confirmed = integrity.confirmed;
        self.messages_refused = integrity.refused;
        self.messages_unanswered = integrity.unanswered;
        self.deliveries = integrity.deliveries;
        self.deliveries_expected = integrity.expected;
        self.lost = integrity.lost;
        self.duplicates = integrity.duplicates;
        self.reordered = integrity.reordered;
        self.sockets_unfinished = integrity.unfinished.len() as u64;
        self.latency = Latency::of(&integrity.latency);
        self.server_cpu_s = Some((server_cpu_s * 100.0).round() / 100.0);
        self.loader_cpu_s = Some((loader_cpu_s * 100.0).round() / 100.0);
        self.deliveries_per_server_cpu_s = (server_cpu_s > 0.0).then(|| integrity.deliveries as f64 / server_cpu_s);
        if let Some(summary) = integrity.unfinished_summary() {
            self.notes.push(summary);
        }
        if integrity.error_frames > 0 {
            self.notes.push(format!("{} error frame(s) received", integrity.error_frames));
        }
        for error in integrity.write_errors.iter().take(3) {
            self.notes.push(format!("a publisher's write failed: {error}"));
        }
    }

    pub fn target(&mut self, goal: &str, measured: String, met: bool) {
        self.targets.push(Target { goal: goal.to_owned(), measured, met });
    }

    /// Lost, duplicated or reordered messages: the bench's one failure besides not running.
    pub fn broken(&self) -> bool {
        self.status == Status::Failed || self.lost > 0 || self.duplicates > 0 || self.reordered > 0
    }
}

/// Everything one run produced.
#[derive(Serialize)]
pub struct Summary {
    pub date: String,
    pub command: String,
    pub mode: &'static str,
    /// The commit the server was built from, and whether its sources had uncommitted changes.
    pub server_source: String,
    pub machine: Machine,
    pub wall_s: f64,
    pub scenarios: Vec<Report>,
}

/// `12345678` → `12,345,678`.
pub fn thousands(value: f64) -> String {
    let rounded = value.round() as i128;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 {
        out.insert(0, '-');
    }
    out
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn opt_thousands(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), thousands)
}

fn targets_cell(report: &Report) -> String {
    match report.status {
        Status::Skipped => "skipped".to_owned(),
        Status::Failed => "failed".to_owned(),
        Status::Ok => {
            let met = report.targets.iter().filter(|t| t.met).count();
            format!("{met}/{} met", report.targets.len())
        }
    }
}

/// The rows of the main table, shared by the terminal and Markdown forms.
fn rows(reports: &[Report]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "scenario",
        "result",
        "lost",
        "dup",
        "reord",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "server CPU s",
        "deliveries / server CPU-s",
        "targets",
    ];
    let rows = reports
        .iter()
        .map(|r| {
            let ran = r.status == Status::Ok;
            let count = |v: u64| if ran { thousands(v as f64) } else { "-".to_owned() };
            vec![
                r.scenario.clone(),
                r.headline.clone(),
                count(r.lost),
                count(r.duplicates),
                count(r.reordered),
                opt(r.latency.as_ref().map(|l| l.p50_ms), 2),
                opt(r.latency.as_ref().map(|l| l.p99_ms), 2),
                opt(r.latency.as_ref().map(|l| l.p999_ms), 2),
                opt(r.server_cpu_s, 2),
                opt_thousands(r.deliveries_per_server_cpu_s),
                targets_cell(r),
            ]
        })
        .collect();
    (header, rows)
}

/// The table for the terminal.
pub fn table(reports: &[Report]) -> String {
    let (header, rows) = rows(reports);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i < 2 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(header.iter().map(|h| h.to_string()).collect()));
    let _ = writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for row in rows {
        let _ = writeln!(out, "{}", line(row));
    }
    out.push('\n');
    out.push_str(&details(reports, false));
    out
}

/// Targets, sizes and notes per scenario.
fn details(reports: &[Report], markdown: bool) -> String {
    let mut out = String::new();
    for r in reports {
        if markdown {
            let _ = writeln!(out, "### `{}`\n\n{}\n", r.scenario, r.size);
        } else {
            let _ = writeln!(out, "{}: {}", r.scenario, r.size);
        }
        for t in &r.targets {
            let mark = if t.met { "met" } else { "MISSED" };
            if markdown {
                let _ = writeln!(out, "- target {}: **{}** ({mark})", t.goal, t.measured);
            } else {
                let _ = writeln!(out, "  target {}: {} ({mark})", t.goal, t.measured);
            }
        }
        let mut facts = Vec::new();
        if r.status == Status::Ok {
            if r.messages_sent > 0 || r.messages_confirmed > 0 {
                facts.push(format!(
                    "{} messages sent, {} echoed, {} refused, {} unanswered; {} deliveries of {} expected over {} sockets in {:.2} s",
                    thousands(r.messages_sent as f64),
                    thousands(r.messages_confirmed as f64),
                    thousands(r.messages_refused as f64),
                    thousands(r.messages_unanswered as f64),
                    thousands(r.deliveries as f64),
                    thousands(r.deliveries_expected as f64),
                    thousands(r.sockets as f64),
                    r.measured_s
                ));
            }
            if let Some(loader) = r.loader_cpu_s {
                facts.push(format!("load generator CPU {loader:.2} s"));
            }
            let figures: Vec<String> = r.figures.iter().map(|(k, v)| format!("{k} {}", figure(*v))).collect();
            if !figures.is_empty() {
                facts.push(figures.join(", "));
            }
        }
        facts.extend(r.notes.iter().cloned());
        for fact in facts {
            if markdown {
                let _ = writeln!(out, "- {fact}");
            } else {
                let _ = writeln!(out, "  {fact}");
            }
        }
        out.push('\n');
    }
    out
}

/// A figure with sensible precision.
fn figure(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        thousands(v)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `docs/BENCHMARKS.md`.
pub fn markdown(summary: &Summary) -> String {
    let (header, rows) = rows(&summary.scenarios);
    let mut out = String::new();
    let m = &summary.machine;
    let _ = write!(
        out,
        "# chatctl benchmarks\n\n\
         <!-- Generated by `cargo xtask bench` (xtask/src/bench/); edit the generator, not this file. -->\n\n\
         - command: `{}`\n- date: {}\n- server: {}\n- machine: {} cores ({}), {:.1} GiB memory, Linux {}\n\
         - wall time of the whole run: {:.0} s\n\n",
        summary.command,
        summary.date,
        summary.server_source,
        m.cores,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        summary.wall_s
    );
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().enumerate().map(|(i, _)| if i < 2 { "---" } else { "---:" }).collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push_str("\n## Per scenario\n\n");
    out.push_str(&details(&summary.scenarios, true));
    out.push_str(HOW_TO_READ);
    out
}

const HOW_TO_READ: &str = "## How to read this\n\n\
- Everything runs on one machine: the server (`target/release/chatctl serve --message-rate 0`, a fresh data dir \
per scenario) and the load generator (`xtask`, built in release, tokio with one worker per core) share its cores. \
Figures are what this machine reached with both on it, not the server's ceiling. Loopback TCP is processed \
mostly in softirq, charged to no process: `kernel_softirq_cpu_s` shows it apart from the server's CPU.\n\
- Each scenario waits (up to 10 minutes; 3 s with `--quick`) for an idle machine before it starts, and \
`other_processes_cpu_s` is what anything else used during the run; a note says DISTURBED when that passed 10 % \
of the machine. `loader_timer_lag_p99_ms` is how late a 1 ms timer in the load generator fired (the \
tokio timer's 1 ms granularity included): when it is high the cores were saturated and latency figures \
include waiting for a core, on the server's side and the generator's.\n\
- A **delivery** is one message frame arriving at one socket (the sender's echo included). Rates divide by the \
time from the first message sent to the last one received.\n\
- **lost**: a message whose sender got its echo (so it was stored and given an id) that a socket of its room never \
saw, counted per socket. **dup**: extra copies of an id on one socket. **reord**: arrivals whose id is lower than \
the previous one on the same socket. Any of these above zero makes the bench exit non-zero.\n\
- **p50/p99/p999** are end-to-end: the publisher's clock when it wrote the frame to the clock when a receiver read \
it, both in the load generator's process, over every delivery. Log-linear histogram, about 2 % resolution.\n\
- **server CPU s** is user + system time of the server process(es) during the measured phase, from \
`/proc/<pid>/stat`; deliveries per server CPU-second is how much fan-out one core-second buys.\n\
- `fanout`, `durable` and `cluster` send flat out with 64 messages in flight per publisher, so their latencies are \
mostly time spent queued behind that window; `latency`, `login-storm` and `backup` send at a fixed rate and are the \
ones to read for latency.\n\
- `backup` first stores a history (200,000 messages; 5,000 with `--quick`) in rooms of its own, then runs the \
`latency` load while `chatctl backup` copies the running server's database through its control socket, back to back \
for 10 s: `chat_p99_during_ms` is over messages sent while backups ran, `chat_p99_outside_ms` over the rest, and \
the backups' own process CPU is counted apart (`backup_client_cpu_s`). A failed backup fails the bench.\n\
- The targets are goals, not assertions: the bench reports them and passes whatever the speed. `--quick` sizes \
are too small to compare with them.\n\
- `cluster` uses two nodes and the RabbitMQ broker on this same machine; its server CPU is both nodes' (the \
broker's is listed apart). It runs only when `CHATCTL_BENCH_AMQP_URL` or `CHATCTL_TEST_AMQP_URL` names a broker.\n\
- `app` is the chat app shaped like real use: users with a user socket and one conversation socket each, rooms of \
2 to 50 members and direct conversations, a message per user every 5 s after three `typing` frames, read markers, \
5 % of users a minute reconnecting (the conversation socket with `since=`). Accounts are made on the admin page and \
signed in a few at a time. Its row is the first phase's (typing and reconnects); the same load then runs without \
typing and reconnects, and the difference in server CPU per message is `typing_presence_cpu_share`. Its \
deliveries count user sockets too, and compare with `fanout`'s per server CPU-second of the same run. RSS per user \
is the growth over the signed-in server before any socket, divided by the users connected. A user socket is checked \
per connection (every message after its inbox's `latest`, once and in order, up to the last it saw before a \
reconnect); a conversation socket over the whole run, `since=` recoveries included.
- `history-flood`, `slow-bodies` and `storm-memory` are attacks, run only when named with `--scenario`: the server \
keeps its per-address connection cap (64), `/healthz` is asked every 100 ms from 127.0.0.200, and memory is the \
server's resident set (`VmRSS`; peaks from `VmHWM` or 100 ms samples).\n";

/// Writes `<dir>/<scenario>.json` for each report and `<dir>/summary.json`.
pub fn write_json(dir: &Path, summary: &Summary) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for report in &summary.scenarios {
        let path = dir.join(format!("{}.json", report.scenario));
        let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        std::fs::write(&path, json + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let path = dir.join("summary.json");
    let json = serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?;
    std::fs::write(&path, json + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}
