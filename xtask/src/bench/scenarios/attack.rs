//! What the attack scenarios (`history-flood`, `slow-bodies`,
//! `storm-memory`) share: a `/healthz` probe from an address of its own, a
//! watcher of the server's resident memory, and the slow-body client (a
//! `POST` announcing 1 MB that then sends one byte every few seconds).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::bench::http;
use crate::bench::report::Report;

/// Where the `/healthz` probe connects from: no attacking address, so the
/// per-address cap never counts it with them.
pub const PROBE_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 200));
/// How often the probe asks (one request at a time, each on a new connection).
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// A probe that takes longer than this counts as unanswered.
const PROBE_GIVE_UP: Duration = Duration::from_secs(5);
/// The bound on every `/healthz` answer during an attack.
pub const HEALTHZ_WITHIN: Duration = Duration::from_secs(1);

/// The slow client's body: it announces this much and never sends it all.
pub const SLOW_BODY_BYTES: usize = 1_000_000;

/// What the `/healthz` probe saw.
#[derive(Default)]
pub struct Probed {
    pub answered: u64,
    /// No 200 within `PROBE_GIVE_UP` (refused, failed or too slow).
    pub unanswered: u64,
    /// Answered, but later than `HEALTHZ_WITHIN`.
    pub late: u64,
    pub max: Duration,
    pub first_failure: Option<String>,
}

impl Probed {
    /// `healthz_*` figures and the target.
    pub fn record(&self, report: &mut Report) {
        let max_ms = self.max.as_secs_f64() * 1000.0;
        report.figures.insert("healthz_probes".into(), (self.answered + self.unanswered) as f64);
        report.figures.insert("healthz_max_ms".into(), (max_ms * 10.0).round() / 10.0);
        report.figures.insert("healthz_over_1s".into(), self.late as f64);
        report.figures.insert("healthz_unanswered".into(), self.unanswered as f64);
        if let Some(failure) = &self.first_failure {
            report.notes.push(format!("a /healthz probe failed: {failure}"));
        }
        let within = self.answered > 0 && self.unanswered == 0 && self.late == 0;
        report.target(
            "/healthz answers within 1 s throughout",
            format!(
                "slowest {max_ms:.1} ms over {} probes; {} late, {} unanswered",
                self.answered + self.unanswered,
                self.late,
                self.unanswered
            ),
            within,
        );
    }
}

/// Asks `GET /healthz` every `PROBE_EVERY` from `PROBE_SOURCE` until stopped.
pub struct HealthProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Probed>,
}

impl HealthProbe {
    pub fn start(addr: SocketAddr) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut seen = Probed::default();
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let answer = tokio::time::timeout(
                        PROBE_GIVE_UP,
                        http::send(addr, Some(PROBE_SOURCE), Method::GET, "/healthz", &[], Bytes::new()),
                    )
                    .await;
                    let took = asked.elapsed();
                    let failure = match answer {
                        Ok(Ok(a)) if a.status == 200 => None,
                        Ok(Ok(a)) => Some(format!("{} {}", a.status, a.text().trim())),
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some(format!("no answer within {PROBE_GIVE_UP:?}")),
                    };
                    match failure {
                        None => {
                            seen.answered += 1;
                            seen.max = seen.max.max(took);
                            seen.late += u64::from(took > HEALTHZ_WITHIN);
                        }
                        Some(failure) => {
                            seen.unanswered += 1;
                            seen.first_failure.get_or_insert(failure);
                        }
                    }
                    tokio::time::sleep(PROBE_EVERY.saturating_sub(took)).await;
                }
                seen
            }
        });
        HealthProbe { stop, task }
    }

    pub async fn finish(self) -> Probed {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// `count` client addresses in 127.0.0.0/8 holding at most `per_address`
/// connections each: connection `i` comes from `source(i)`. They start at
/// 127.0.0.1 and skip the probe's address.
pub fn source(i: usize, per_address: usize) -> IpAddr {
    let n = (i / per_address.max(1)) as u32;
    // 127.0.0.1 .. 127.0.0.199, then 127.0.1.1 .. and so on (x.x.x.0 and
    // .200 and up left alone), so 127.0.0.1..=10 are the first ten.
    let (block, host) = (n / 199, n % 199 + 1);
    IpAddr::V4(Ipv4Addr::new(127, (block / 256) as u8, (block % 256) as u8, host as u8))
}

/// How one slow-body connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server answered with this status, then closed.
    Status(u16),
    /// Closed (or reset) without a full answer.
    Closed,
    /// Still open when the client gave up on it.
    StillOpen,
    /// The TCP connection never opened.
    NoConnection,
}

/// One slow-body connection's fate.
#[derive(Debug, Clone, Copy)]
pub struct SlowOutcome {
    pub ending: Ending,
    /// From the TCP connection being established to the server closing it.
    pub open_for: Duration,
    /// How long the TCP connect took (the listen backlog shows here).
    pub connect: Duration,
}

/// Opens a connection from `source` (holding a place of `connecting` only
/// while it connects), sends a `POST /api/login` head that announces
/// `SLOW_BODY_BYTES`, then one byte of body every `every` (the first after
/// `first_after`) until the server closes the connection or `give_up`
/// passes since the connect.
pub async fn slow_body(
    addr: SocketAddr,
    source: IpAddr,
    connecting: Arc<Semaphore>,
    first_after: Duration,
    every: Duration,
    give_up: Duration,
) -> SlowOutcome {
    let place = connecting.acquire_owned().await;
    let started = Instant::now();
    let connected = tokio::time::timeout(give_up, http::connect_tcp(addr, Some(source))).await;
    drop(place);
    let Ok(Ok(mut stream)) = connected else {
        return SlowOutcome { ending: Ending::NoConnection, open_for: Duration::ZERO, connect: started.elapsed() };
    };
    let connected = Instant::now();
    let connect = connected - started;
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {SLOW_BODY_BYTES}\r\n\r\n"
    );
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    let mut next_byte = tokio::time::Instant::now() + first_after;
    let deadline = tokio::time::Instant::from_std(connected + give_up);
    let ending = if stream.write_all(head.as_bytes()).await.is_err() {
        Ending::Closed
    } else {
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break status_of(&answer).map_or(Ending::Closed, Ending::Status),
                    Ok(n) => answer.extend_from_slice(&buf[..n.min(4096usize.saturating_sub(answer.len()))]),
                },
                _ = tokio::time::sleep_until(next_byte) => {
                    next_byte += every;
                    if stream.write_all(b" ").await.is_err() {
                        // Reset by the server: an answer may still be in our receive buffer.
                        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read_to_end(&mut answer)).await;
                        break status_of(&answer).map_or(Ending::Closed, Ending::Status);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break Ending::StillOpen,
            }
        }
    };
    SlowOutcome { ending, open_for: connected.elapsed(), connect }
}

/// The status code of an HTTP answer whose head has arrived.
fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Runs `count` slow-body connections at once (connection `i` from
/// `source(i, per_address)`), opening at most `opening` at a time, and
/// returns every outcome once all have ended.
pub async fn slow_bodies(
    addr: SocketAddr,
    count: usize,
    per_address: usize,
    every: Duration,
    give_up: Duration,
    opening: usize,
) -> Vec<SlowOutcome> {
    let connecting = Arc::new(Semaphore::new(opening));
    let mut set = JoinSet::new();
    for i in 0..count {
        // Spread the trickled bytes over the interval instead of sending them in waves.
        let first_after = every.mul_f64((i % 97) as f64 / 97.0);
        set.spawn(slow_body(addr, source(i, per_address), connecting.clone(), first_after, every, give_up));
    }
    let mut outcomes = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        if let Ok(outcome) = joined {
            outcomes.push(outcome);
        }
    }
    outcomes
}

/// Counts of each ending, for notes: `408 × 640, 503 × 4,360`.
pub fn endings(outcomes: &[SlowOutcome]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for o in outcomes {
        let name = match o.ending {
            Ending::Status(code) => code.to_string(),
            Ending::Closed => "closed without an answer".to_owned(),
            Ending::StillOpen => "still open".to_owned(),
            Ending::NoConnection => "no connection".to_owned(),
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
        .iter()
        .map(|(name, n)| format!("{name} × {}", crate::bench::report::thousands(*n as f64)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Samples the server's resident memory every `every` until stopped.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssWatch {
    pub fn start(pid: u32, every: Duration) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(crate::bench::sys::rss_kib(pid).unwrap_or(0));
                    tokio::time::sleep(every).await;
                }
                peak
            }
        });
        RssWatch { stop, task }
    }

    /// The highest RSS sampled, in KiB.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// KiB as `12.3 MB` (10^6 bytes), the unit the figures use.
pub fn mb(kib: f64) -> String {
    format!("{:.1} MB", kib * 1024.0 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_fill_addresses_in_order_and_skip_the_probe() {
        assert_eq!(source(0, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source(64 * 10 - 1, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)));
        assert_eq!(source(198, 1), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 199)));
        assert_eq!(source(199, 1), IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)));
        assert!((0..100_000).all(|i| source(i, 1) != PROBE_SOURCE));
    }

    #[test]
    fn reads_the_status_of_an_answer() {
        assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout\r\n\r\n"), Some(408));
        assert_eq!(status_of(b"HTTP/1.1 5"), None);
        assert_eq!(status_of(b""), None);
    }
}
