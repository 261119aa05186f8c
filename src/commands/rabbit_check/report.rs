//! What rabbit-check found: one line per check as it goes, or, with
//! `--json`, one object at the end for scripts. Nothing here talks to the
//! broker.

use serde::Serialize;

use super::broker::Server;

/// One check's outcome.
#[derive(Serialize, Debug)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

/// Everything the command found; printed line by line as it goes, or once as JSON.
#[derive(Serialize, Debug)]
pub(super) struct Report {
    /// False once any check failed: the exit code.
    pub(super) ok: bool,
    url: String,
    /// The broker's product and version, once the handshake told them.
    pub(super) server: Option<Server>,
    checks: Vec<Check>,
    /// How long the probe took from publish to delivery, when the round trip worked.
    pub(super) latency_ms: Option<f64>,
    /// What is known of serve's stream, once it was inspected.
    pub(super) stream: Option<StreamState>,
    error: Option<String>,
    #[serde(skip)]
    json: bool,
}

impl Report {
    /// An empty report for the (masked) URL; `json` holds the lines back.
    pub(super) fn new(url: String, json: bool) -> Report {
        Report { ok: true, url, server: None, checks: Vec::new(), latency_ms: None, stream: None, error: None, json }
    }

    /// Records a check that passed, with what it found.
    pub(super) fn pass(&mut self, name: &str, detail: String) {
        if !self.json {
            say(&format!("ok  {name}: {detail}"));
        }
        self.checks.push(Check { name: name.to_owned(), ok: true, detail });
    }

    /// Records a check that failed; the first diagnosis is the report's error.
    pub(super) fn fail(&mut self, name: &str, diagnosis: String) {
        if !self.json {
            say(&format!("FAILED  {name}: {diagnosis}"));
        }
        self.ok = false;
        self.error.get_or_insert_with(|| diagnosis.clone());
        self.checks.push(Check { name: name.to_owned(), ok: false, detail: diagnosis });
    }

    /// Prints the verdict line, or the whole report as JSON.
    pub(super) fn finish(&self) -> anyhow::Result<()> {
        if self.json {
            say(&serde_json::to_string(self)?);
        } else {
            say(&format!("rabbit-check: {}", if self.ok { "ok" } else { "FAILED" }));
        }
        Ok(())
    }
}

/// The state of serve's stream, as `--json` reports it.
#[derive(Serialize, Debug, Default)]
pub(super) struct StreamState {
    /// The stream queue's name (`--amqp-stream`).
    pub(super) name: String,
    /// False before serve's first start declares it.
    pub(super) exists: bool,
    /// `stream`, or `not a stream` when a queue of that name cannot serve as the log.
    #[serde(rename = "type")]
    pub(super) queue_type: Option<String>,
    /// Records in the stream, from its offsets (a stream's declare always says 0).
    pub(super) messages: Option<u32>,
    /// Consumers attached now: roughly the serve nodes running.
    pub(super) consumers: Option<u32>,
    /// The oldest offset retention kept; `None` for an empty stream.
    pub(super) first_offset: Option<u64>,
    /// The newest offset read.
    pub(super) last_offset: Option<u64>,
    /// False when messages were still arriving when the tail read stopped:
    /// `last_offset` is then a lower bound.
    pub(super) last_offset_exact: Option<bool>,
    /// Retention arguments (x-max-age, x-max-length-bytes, ...) when they
    /// could be read; an empty list means none are set.
    #[serde(serialize_with = "retention_map")]
    pub(super) retention: Option<Vec<(String, String)>>,
}

fn retention_map<S: serde::Serializer>(value: &Option<Vec<(String, String)>>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(pairs) => s.collect_map(pairs.iter().map(|(k, v)| (k, v))),
        None => s.serialize_none(),
    }
}

/// Prints one line; a closed stdout (`| head`) is no reason to panic, and
/// the exit code still tells the result.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
