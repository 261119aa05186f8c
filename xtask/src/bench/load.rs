//! The load itself: publishers that send as fast as a window of
//! unacknowledged messages allows (or at a fixed rate), receivers that
//! record every message id they see and its end-to-end time, and the check
//! that every receiver saw every message whose sender got an echo, once and
//! in order. Every loop ends by itself: on the room's end marker, or at a
//! deadline.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode};
use tokio::sync::Semaphore;

use super::histogram::Histogram;
use super::ws::{classify, client_frame, message_text, Seen, Ws, MARKER_CLIENT_ID, MARKER_TEXT};

/// No single write may take longer than this: a server that stopped reading
/// ends the publisher instead of hanging the bench.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// State every task of one run shares: the clock that send times are
/// measured on, a live delivery count for the progress bar, and an optional
/// window of send times (the login storm) whose latencies are kept apart.
pub struct Shared {
    base: Instant,
    pub deliveries: AtomicU64,
    window_from_ns: AtomicU64,
    window_to_ns: AtomicU64,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            base: Instant::now(),
            deliveries: AtomicU64::new(0),
            window_from_ns: AtomicU64::new(u64::MAX),
            window_to_ns: AtomicU64::new(u64::MAX),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Messages sent from now on count in the window's latency...
    pub fn open_window(&self) {
        self.window_from_ns.store(self.now_ns(), Ordering::Relaxed);
    }

    /// ...until now.
    pub fn close_window(&self) {
        self.window_to_ns.store(self.now_ns(), Ordering::Relaxed);
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window_from_ns.load(Ordering::Relaxed) && sent_ns <= self.window_to_ns.load(Ordering::Relaxed)
    }
}

/// How one socket's reading ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It saw its room's end marker: everything before it was delivered.
    Marker,
    /// The drain deadline passed first.
    Deadline,
    /// The server closed it (code and reason), e.g. 1008 "slow consumer".
    Closed(u16, String),
    /// A read or write failed.
    Failed(String),
}

/// What one socket saw.
pub struct Tally {
    /// Message ids in arrival order.
    pub ids: Vec<u64>,
    pub latency: Histogram,
    /// Latency of messages sent inside the shared window (login storm).
    pub window_latency: Histogram,
    pub last_at: Option<Instant>,
    pub error_frames: u64,
    pub end: End,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ids: Vec::new(),
            latency: Histogram::default(),
            window_latency: Histogram::default(),
            last_at: None,
            error_frames: 0,
            end: End::Deadline,
        }
    }

    fn message(&mut self, shared: &Shared, id: u64, sent_ns: Option<u64>) {
        self.ids.push(id);
        self.last_at = Some(Instant::now());
        shared.deliveries.fetch_add(1, Ordering::Relaxed);
        if let Some(sent) = sent_ns {
            let us = shared.now_ns().saturating_sub(sent) / 1000;
            self.latency.record(us);
            if shared.in_window(sent) {
                self.window_latency.record(us);
            }
        }
    }

    fn closed(&mut self, payload: &[u8]) {
        let code = if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
        self.end = End::Closed(code, String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned());
    }
}

/// Keeps a socket open until the run's figures are taken, so that closing
/// thousands of sockets is not part of what is measured.
pub struct Held(#[allow(dead_code)] Box<dyn std::any::Any + Send>);

/// When a socket stops reading. One timer for the whole run: a timeout per
/// frame would register and cancel a timer for every message, load-generator
/// work that the server's figures would pay for on a shared machine.
struct Deadline(std::pin::Pin<Box<tokio::time::Sleep>>);

impl Deadline {
    fn at(at: Instant) -> Deadline {
        Deadline(Box::pin(tokio::time::sleep_until(at.into())))
    }

    /// The frame `read` gives; None once the deadline passed, or after a
    /// read error, which ends `tally`.
    async fn frame<'f, E: std::fmt::Display>(
        &mut self,
        tally: &mut Tally,
        read: impl std::future::Future<Output = Result<Frame<'f>, E>>,
    ) -> Option<Frame<'f>> {
        tokio::select! {
            biased;
            read = read => match read {
                Ok(frame) => Some(frame),
                Err(error) => {
                    tally.end = End::Failed(error.to_string());
                    None
                }
            },
            _ = self.0.as_mut() => None,
        }
    }
}

/// Reads one receiving socket until its room's end marker or `deadline`.
pub async fn receive(mut ws: Ws, shared: Arc<Shared>, deadline: Instant) -> (Tally, Held) {
    let mut tally = Tally::new();
    let mut deadline = Deadline::at(deadline);
    loop {
        let Some(frame) = deadline.frame(&mut tally, ws.read_frame()).await else { break };
        match frame.opcode {
            OpCode::Text => match classify(&frame.payload) {
                Seen::Message { id, sent_ns, marker, .. } => {
                    tally.message(&shared, id, sent_ns);
                    if marker {
                        tally.end = End::Marker;
                        break;
                    }
                }
                Seen::Error { .. } => tally.error_frames += 1,
                Seen::History | Seen::Other => {}
            },
            OpCode::Close => {
                tally.closed(&frame.payload);
                break;
            }
            _ => {}
        }
    }
    (tally, Held(Box::new(ws)))
}

/// How a publisher sends.
#[derive(Clone)]
pub struct Plan {
    /// Messages sent and not yet echoed (or refused), at most.
    pub window: usize,
    /// Messages per second; None: as fast as the window allows.
    pub rate_per_s: Option<f64>,
    /// No new message after this...
    pub stop_at: Instant,
    /// ...unless this is set (a side load still runs), up to `hard_stop`.
    pub hold: Option<Arc<AtomicBool>>,
    pub hard_stop: Instant,
    pub max_messages: u64,
    /// Reading stops here whatever happened (drain deadline).
    pub deadline: Instant,
}

/// What one publisher did, and what its own socket saw.
pub struct Published {
    pub tally: Tally,
    pub sent: u64,
    /// Ids of the echoes this publisher got, the end marker's included.
    pub confirmed: Vec<u64>,
    /// Messages answered with an error frame instead of an echo.
    pub refused: u64,
    pub write_error: Option<String>,
}

/// Sends messages per `plan`, then the end marker, and reads its own socket
/// (echoes and everything else of the room) until the marker's echo. A
/// paced publisher starts `phase` into its period, so that publishers of
/// different rooms do not all send in the same instant.
pub async fn publish(ws: Ws, shared: Arc<Shared>, plan: Plan, phase: Duration) -> (Published, Held) {
    let (mut reader, mut writer) = ws.split(|stream| stream.into_split());
    let window = Semaphore::new(plan.window);

    let send = async {
        let mut sent = 0u64;
        let mut error = None;
        let mut ticker = plan.rate_per_s.map(|rate| {
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticker
        });
        loop {
            let now = Instant::now();
            let holding = plan.hold.as_ref().is_some_and(|h| h.load(Ordering::Relaxed));
            if sent >= plan.max_messages || now >= plan.hard_stop || (now >= plan.stop_at && !holding) {
                break;
            }
            if let Some(ticker) = ticker.as_mut() {
                ticker.tick().await;
            }
            match tokio::time::timeout(Duration::from_millis(100), window.acquire()).await {
                Ok(Ok(permit)) => permit.forget(),
                _ => continue,
            }
            let frame = client_frame(&message_text(shared.now_ns()), &sent.to_string());
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_frame(frame)).await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => {
                    error = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    error = Some("a write took over 10 s".to_owned());
                    break;
                }
            }
        }
        if error.is_none() {
            // Sent after every message on this socket, so its id follows theirs.
            let frame = client_frame(MARKER_TEXT, MARKER_CLIENT_ID);
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_frame(frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error = Some(e.to_string()),
                Err(_) => error = Some("writing the end marker took over 10 s".to_owned()),
            }
        }
        (sent, error)
    };

    let read = async {
        let mut tally = Tally::new();
        let mut confirmed = Vec::new();
        let mut refused = 0u64;
        // Pongs are not owed: the runs are shorter than the server's ping interval.
        let mut obliged = |_: Frame<'_>| std::future::ready(Ok::<(), Infallible>(()));
        let mut deadline = Deadline::at(plan.deadline);
        loop {
            let Some(frame) = deadline.frame(&mut tally, reader.read_frame(&mut obliged)).await else { break };
            match frame.opcode {
                OpCode::Text => match classify(&frame.payload) {
                    Seen::Message { id, sent_ns, marker, client_id } => {
                        tally.message(&shared, id, sent_ns);
                        if client_id.is_some() {
                            confirmed.push(id);
                            if marker {
                                tally.end = End::Marker;
                                break;
                            }
                            window.add_permits(1);
                        }
                    }
                    Seen::Error { client_id } => {
                        tally.error_frames += 1;
                        if client_id == Some(MARKER_CLIENT_ID.as_bytes()) {
                            tally.end = End::Failed("the end marker was refused".to_owned());
                            break;
                        }
                        if client_id.is_some() {
                            refused += 1;
                            window.add_permits(1);
                        }
                    }
                    Seen::History | Seen::Other => {}
                },
                OpCode::Close => {
                    tally.closed(&frame.payload);
                    break;
                }
                _ => {}
            }
        }
        (tally, confirmed, refused)
    };

    let ((sent, write_error), (tally, confirmed, refused)) = tokio::join!(send, read);
    (Published { tally, sent, confirmed, refused, write_error }, Held(Box::new((reader, writer))))
}

/// One room's sockets, opened and subscribed.
pub struct RoomLoad {
    pub publisher: Option<Ws>,
    pub receivers: Vec<Ws>,
}

/// One room's outcome.
pub struct RoomResult {
    pub published: Option<Published>,
    pub receivers: Vec<Tally>,
}

/// Runs every room at once and waits for all of them.
pub async fn run_rooms(rooms: Vec<RoomLoad>, shared: &Arc<Shared>, plan: &Plan) -> (Vec<RoomResult>, Vec<Held>) {
    let mut handles = Vec::new();
    let count = rooms.len().max(1) as f64;
    for (index, room) in rooms.into_iter().enumerate() {
        let phase = plan.rate_per_s.map_or(Duration::ZERO, |rate| Duration::from_secs_f64(index as f64 / count / rate));
        let publisher = room.publisher.map(|ws| tokio::spawn(publish(ws, shared.clone(), plan.clone(), phase)));
        let receivers: Vec<_> =
            room.receivers.into_iter().map(|ws| tokio::spawn(receive(ws, shared.clone(), plan.deadline))).collect();
        handles.push((publisher, receivers));
    }
    let mut results = Vec::new();
    let mut held = Vec::new();
    for (publisher, receivers) in handles {
        let published = match publisher {
            Some(handle) => {
                let (published, h) = handle.await.expect("publisher task panicked");
                held.push(h);
                Some(published)
            }
            None => None,
        };
        let mut tallies = Vec::new();
        for handle in receivers {
            let (tally, h) = handle.await.expect("receiver task panicked");
            held.push(h);
            tallies.push(tally);
        }
        results.push(RoomResult { published, receivers: tallies });
    }
    (results, held)
}

/// Delivery correctness and timing over a run's rooms.
#[derive(Default)]
pub struct Integrity {
    pub sockets: u64,
    pub sent: u64,
    /// Echoed messages (the end markers not counted).
    pub confirmed: u64,
    pub refused: u64,
    /// Sent, neither echoed nor refused.
    pub unanswered: u64,
    /// Message frames received, over all sockets.
    pub deliveries: u64,
    /// Confirmed message × socket of its room pairs.
    pub expected: u64,
    /// Confirmed messages a socket of their room never saw.
    pub lost: u64,
    /// Ids a socket saw more than once (extra copies).
    pub duplicates: u64,
    /// Arrivals whose id is lower than the one before on the same socket.
    pub reordered: u64,
    /// Sockets that did not reach their room's end marker, and why.
    pub unfinished: Vec<String>,
    pub error_frames: u64,
    pub latency: Histogram,
    pub window_latency: Histogram,
    pub last_delivery: Option<Instant>,
    pub write_errors: Vec<String>,
}

impl Integrity {
    pub fn of(results: &[RoomResult]) -> Integrity {
        let mut out = Integrity::default();
        for room in results {
            let mut confirmed = room.published.as_ref().map(|p| p.confirmed.clone()).unwrap_or_default();
            confirmed.sort_unstable();
            confirmed.dedup();
            if let Some(published) = &room.published {
                let echoed = published.confirmed.len() as u64
                    - u64::from(published.tally.end == End::Marker && !published.confirmed.is_empty());
                out.sent += published.sent;
                out.confirmed += echoed;
                out.refused += published.refused;
                out.unanswered += published.sent.saturating_sub(echoed + published.refused);
                if let Some(error) = &published.write_error {
                    out.write_errors.push(error.clone());
                }
            }
            let tallies = room.published.as_ref().map(|p| &p.tally).into_iter().chain(room.receivers.iter());
            for tally in tallies {
                out.add_socket(tally, &confirmed);
            }
        }
        out
    }

    fn add_socket(&mut self, tally: &Tally, confirmed: &[u64]) {
        self.sockets += 1;
        self.deliveries += tally.ids.len() as u64;
        self.error_frames += tally.error_frames;
        self.reordered += tally.ids.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        let mut seen = tally.ids.clone();
        seen.sort_unstable();
        seen.dedup();
        self.duplicates += (tally.ids.len() - seen.len()) as u64;
        self.expected += confirmed.len() as u64;
        self.lost += confirmed.iter().filter(|id| seen.binary_search(id).is_err()).count() as u64;
        self.latency.merge(&tally.latency);
        self.window_latency.merge(&tally.window_latency);
        self.last_delivery = self.last_delivery.max(tally.last_at);
        if tally.end != End::Marker && self.unfinished.len() < 1_000_000 {
            self.unfinished.push(match &tally.end {
                End::Marker => unreachable!(),
                End::Deadline => "no end marker before the deadline".to_owned(),
                End::Closed(code, reason) => format!("closed by the server: {code} {reason}"),
                End::Failed(error) => format!("failed: {error}"),
            });
        }
    }

    /// The most common reasons sockets did not finish, with counts.
    pub fn unfinished_summary(&self) -> Option<String> {
        if self.unfinished.is_empty() {
            return None;
        }
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for reason in &self.unfinished {
            *counts.entry(reason.as_str()).or_default() += 1;
        }
        Some(counts.iter().map(|(r, n)| format!("{n} socket(s) {r}")).collect::<Vec<_>>().join("; "))
    }
}
