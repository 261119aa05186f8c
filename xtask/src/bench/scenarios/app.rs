//! `app` (issue 11's speed part): the chat app shaped like real use.
//!
//! Thousands of users, each with a user socket (`/ws/user/`) and one open
//! conversation socket, in rooms of 2 to 50 members (many small, few big)
//! and direct conversations. Every user sends a message every few seconds,
//! each preceded by three `typing` frames over the second before it; moves
//! its read marker on its conversation socket every few seconds when new
//! messages came; and 5 % of users a minute reconnect (both sockets closed,
//! reopened a moment later, the conversation socket with `since=`).
//!
//! The measured phase runs twice on the same server and sockets: first with
//! typing and reconnects (the realistic load, whose figures are the
//! scenario's), then without them at the same message and read rates. What
//! typing and presence cost is the difference in server CPU per message.
//!
//! Accounts are made through the admin page (`POST /admin/users`, one at a
//! time: an argon2 hash each) and each signed in through `/api/login` as soon
//! as it exists (the server checks one password at a time on two cores, so
//! creating and signing in together keep both busy; only failures count
//! against the login throttle). Every membership is made
//! before the user sockets open (each conversation socket opened once and
//! closed), so each user socket's inbox already lists them all.
//!
//! Delivery checks: a conversation socket, across its reconnects, must see
//! every message of its conversation after its first history exactly once
//! and in id order (what a `since=` history recovers counts as seen); a
//! user socket, per connection, every message of each of its conversations
//! after the inbox's `latest`, exactly once and in order, up to the last it
//! saw before it closed (a connection open at the end: up to the end marker).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketRead, WebSocketWrite};
use hyper::Method;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::{finish, machine_figures, progress, single_node, Sizes, CONNECT_CONCURRENCY, PASSWORD, PUBLISHER};
use crate::bench::histogram::Histogram;
use crate::bench::report::{thousands, Latency, Report};
use crate::bench::ws::{self, Seen};
use crate::bench::{http, sys, BoxError, Env};

/// The share of users that reconnect per minute of the first phase.
const CHURN_PER_MINUTE: f64 = 0.05;
/// Typing frames before each message, spread over the second before it.
const TYPING_PER_MESSAGE: u32 = super::TYPING;
/// Accounts being created at once (one argon2 hash each, on the server's
/// blocking pool), while others are signed in.
const CREATING: usize = 1;
/// Sign-ins in flight at once: the server checks one password at a time on
/// two cores and lets a sign-in wait 10 s for its turn.
const SIGNING_IN: usize = 3;
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long everyone may take to connect before the run starts.
const CONNECT_WITHIN: Duration = Duration::from_secs(300);
/// Targets.
const FANOUT_SHARE_MIN: f64 = 0.70;
const RSS_PER_USER_MAX_KIB: f64 = 32.0;
const TYPING_SHARE_MAX: f64 = 0.15;

// ---------------------------------------------------------------------------
// Who is where

/// SplitMix64: a fixed seed gives every run the same layout.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `d` scaled by a factor uniform in [1 - spread, 1 + spread].
    fn jitter(&mut self, d: Duration, spread: f64) -> Duration {
        d.mul_f64(1.0 - spread + 2.0 * spread * self.unit())
    }
}

enum Kind {
    Room,
    /// The two users (indices), the first's name sorting first.
    Direct(usize, usize),
}

struct Conv {
    /// The `room` field of its frames: the room's name, or `dm:a:b`.
    room: String,
    kind: Kind,
    members: Vec<usize>,
    /// Users who keep this conversation's socket open.
    openers: Vec<usize>,
}

struct Layout {
    names: Vec<String>,
    convs: Vec<Conv>,
    member_of: Vec<Vec<usize>>,
    /// Each user's one open conversation.
    open: Vec<usize>,
}

impl Layout {
    fn new(users: usize, rooms: usize, room_max: usize, pairs: usize) -> Layout {
        let names: Vec<String> = (0..users).map(|i| format!("app_{i:05}")).collect();
        let mut rng = Rng(0x00C0_FFEE);
        let mut convs = Vec::new();
        let mut member_of = vec![Vec::new(); users];
        let max = room_max.min(users);
        let mut pool: Vec<usize> = (0..users).collect();
        for r in 0..rooms {
            // Many small rooms, few big ones: 2 + 48·u², 18 members on average.
            let u = rng.unit();
            let size = (2 + ((max - 2) as f64 * u * u) as usize).min(max);
            for k in 0..size {
                let j = k + rng.below(users - k);
                pool.swap(k, j);
            }
            let members = pool[..size].to_vec();
            for &m in &members {
                member_of[m].push(r);
            }
            convs.push(Conv { room: format!("app_r{r}"), kind: Kind::Room, members, openers: Vec::new() });
        }
        // Everyone is in a room at least.
        for (u, rooms_of) in member_of.iter_mut().enumerate() {
            if rooms_of.is_empty() && rooms > 0 {
                let mut r = rng.below(rooms);
                for _ in 0..100 {
                    if convs[r].members.len() < max {
                        break;
                    }
                    r = rng.below(rooms);
                }
                convs[r].members.push(u);
                rooms_of.push(r);
            }
        }
        let mut open = vec![usize::MAX; users];
        for k in 0..pairs.min(users / 2) {
            let (a, b) = (2 * k, 2 * k + 1);
            let c = convs.len();
            convs.push(Conv {
                room: format!("dm:{}:{}", names[a], names[b]),
                kind: Kind::Direct(a, b),
                members: vec![a, b],
                openers: Vec::new(),
            });
            member_of[a].push(c);
            member_of[b].push(c);
            open[a] = c;
            open[b] = c;
        }
        // Each room has someone looking at it, then everyone else picks one of theirs.
        for (r, conv) in convs.iter().enumerate().take(rooms) {
            if let Some(&m) = conv.members.iter().find(|&&m| open[m] == usize::MAX) {
                open[m] = r;
            }
        }
        for u in 0..users {
            if open[u] == usize::MAX {
                let rooms_of = &member_of[u];
                open[u] = rooms_of[rng.below(rooms_of.len())];
            }
        }
        // A room whose members all looked elsewhere takes one of them from a
        // room that others still look at.
        let mut watching = vec![0usize; convs.len()];
        for &c in &open {
            watching[c] += 1;
        }
        for r in 0..rooms {
            if watching[r] == 0 {
                let from = convs[r]
                    .members
                    .iter()
                    .copied()
                    .find(|&m| r != open[m] && watching[open[m]] > 1 && matches!(convs[open[m]].kind, Kind::Room));
                if let Some(m) = from {
                    watching[open[m]] -= 1;
                    watching[r] += 1;
                    open[m] = r;
                }
            }
        }
        for (u, &c) in open.iter().enumerate() {
            convs[c].openers.push(u);
        }
        Layout { names, convs, member_of, open }
    }

    /// The socket path of conversation `c` for `user`.
    fn socket_path(&self, c: usize, user: usize) -> String {
        match self.convs[c].kind {
            Kind::Room => format!("/ws/chat/{}/", self.convs[c].room),
            Kind::Direct(a, b) => format!("/ws/direct/{}/", self.names[if user == a { b } else { a }]),
        }
    }

    fn active(&self, c: usize) -> bool {
        !self.convs[c].openers.is_empty()
    }
}

// ---------------------------------------------------------------------------
// State every user task shares

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Open the sockets, then wait.
    Connect,
    /// Send: messages, read markers, and typing while `typing` is set.
    Run,
    /// Send nothing more; say when every own message was answered.
    Stop,
    /// Each conversation's first opener sends its end marker; read until
    /// every marker arrived or the deadline passed.
    Markers(Instant),
}

struct Common {
    addr: SocketAddr,
    layout: Layout,
    rooms: HashMap<String, usize>,
    base: Instant,
    message_every: Duration,
    read_every: Duration,
    churn_down: (Duration, Duration),
    typing: AtomicBool,
    window_from_ns: AtomicU64,
    window_to_ns: AtomicU64,
    /// Live message frames received, over every socket.
    deliveries: AtomicU64,
    messages_sent: AtomicU64,
    typing_sent: AtomicU64,
    reads_sent: AtomicU64,
    reconnects: AtomicU64,
    recovered: AtomicU64,
    connect_gate: Semaphore,
    /// Users connected the first time (or failed trying).
    connected: AtomicUsize,
    /// Users quiet after `Stop` (or gone).
    quiesced: AtomicUsize,
    failed: AtomicUsize,
    changed: Notify,
    churning: Vec<AtomicBool>,
    churn: Vec<Notify>,
}

impl Common {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window_from_ns.load(Ordering::Relaxed) && sent_ns <= self.window_to_ns.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------
// Reading a socket

type Rd = WebSocketRead<OwnedReadHalf>;
type Wr = WebSocketWrite<OwnedWriteHalf>;

/// What a reader shares with its user's task while it runs.
#[derive(Default)]
struct Live {
    /// The newest message id seen on the conversation socket.
    last_id: AtomicU64,
    /// Own messages answered: echoed or refused.
    answered: AtomicU64,
}

/// What one socket's reader saw during one connection.
#[derive(Default)]
struct Read {
    /// (conversation, id) of every live message frame, in arrival order.
    seen: Vec<(usize, u64)>,
    /// Ids of this user's own messages (its echoes, `client_id` set).
    confirmed: Vec<u64>,
    refused: u64,
    error_frames: u64,
    first_error: Option<String>,
    latency: Histogram,
    window_latency: Histogram,
    /// Conversations whose end marker arrived.
    markers: Vec<usize>,
    /// Every marker it waits for arrived.
    done: bool,
    /// Why it ended otherwise (a close from the server, a failed read).
    ended: Option<String>,
    /// Message frames of conversations the bench does not know.
    foreign: u64,
}

async fn read_socket(
    mut rd: Rd,
    conv: Option<usize>,
    needed: Vec<usize>,
    common: Arc<Common>,
    live: Arc<Live>,
    pongs: mpsc::UnboundedSender<Frame<'static>>,
    mut stop: oneshot::Receiver<()>,
) -> Read {
    let mut out = Read::default();
    // Pongs (and a close's answer) go out through the user task's writer.
    let mut obliged = |frame: Frame<'_>| {
        let _ = pongs.send(Frame::new(true, frame.opcode, None, Payload::Owned(frame.payload.to_vec())));
        std::future::ready(Ok::<(), std::convert::Infallible>(()))
    };
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut stop => break,
            frame = rd.read_frame(&mut obliged) => frame,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                out.ended = Some(format!("read failed: {error}"));
                break;
            }
        };
        match frame.opcode {
            OpCode::Text => match ws::classify(&frame.payload) {
                Seen::Message { id, sent_ns, marker, client_id } => {
                    let c = match conv {
                        Some(c) => Some(c),
                        None => ws::string_field(&frame.payload, br#""room":""#)
                            .and_then(|room| std::str::from_utf8(room).ok())
                            .and_then(|room| common.rooms.get(room).copied()),
                    };
                    let Some(c) = c else {
                        out.foreign += 1;
                        continue;
                    };
                    common.deliveries.fetch_add(1, Ordering::Relaxed);
                    out.seen.push((c, id));
                    if let Some(sent) = sent_ns {
                        let us = common.now_ns().saturating_sub(sent) / 1000;
                        out.latency.record(us);
                        if common.in_window(sent) {
                            out.window_latency.record(us);
                        }
                    }
                    if conv.is_some() {
                        live.last_id.fetch_max(id, Ordering::Relaxed);
                        if client_id.is_some() {
                            out.confirmed.push(id);
                            live.answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if marker {
                        out.markers.push(c);
                        if needed.iter().all(|n| out.markers.contains(n)) {
                            out.done = true;
                            break;
                        }
                    }
                }
                Seen::Error { client_id } => {
                    out.error_frames += 1;
                    if out.first_error.is_none() {
                        out.first_error = Some(String::from_utf8_lossy(&frame.payload).into_owned());
                    }
                    if client_id.is_some() {
                        out.refused += 1;
                        live.answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Seen::History | Seen::Other => {}
            },
            OpCode::Close => {
                let p = &frame.payload;
                let code = if p.len() >= 2 { u16::from_be_bytes([p[0], p[1]]) } else { 1005 };
                out.ended =
                    Some(format!("closed by the server: {code} {}", String::from_utf8_lossy(&p[2.min(p.len())..])));
                break;
            }
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------
// One user

struct Plan {
    index: usize,
    cookie: Arc<str>,
    conv: usize,
    conv_path: String,
    /// Active conversations of this user: their end markers end its user socket.
    needed: Vec<usize>,
    marker_sender: bool,
}

/// One connection of a user socket.
struct UserSession {
    /// Each conversation's `latest` id in the inbox (absent: none yet).
    base: HashMap<usize, u64>,
    seen: Vec<(usize, u64)>,
    /// Open until the end (else closed by a reconnect).
    last: bool,
}

#[derive(Default)]
struct Outcome {
    /// Conversation-socket ids over every connection: recovered by `since=` and live.
    conv_ids: Vec<u64>,
    /// The newest id of the first history: later ones are expected.
    conv_base: u64,
    sessions: Vec<UserSession>,
    confirmed: Vec<u64>,
    sent: u64,
    refused: u64,
    error_frames: u64,
    first_error: Option<String>,
    foreign: u64,
    latency: Histogram,
    window_latency: Histogram,
    problems: Vec<String>,
}

impl Outcome {
    fn absorb(&mut self, read: &Read) {
        self.refused += read.refused;
        self.error_frames += read.error_frames;
        self.foreign += read.foreign;
        if self.first_error.is_none() {
            self.first_error.clone_from(&read.first_error);
        }
        self.latency.merge(&read.latency);
        self.window_latency.merge(&read.window_latency);
    }
}

/// A user's two open sockets.
struct Session {
    user_wr: Wr,
    conv_wr: Wr,
    user_pongs: mpsc::UnboundedReceiver<Frame<'static>>,
    conv_pongs: mpsc::UnboundedReceiver<Frame<'static>>,
    user_stop: oneshot::Sender<()>,
    conv_stop: oneshot::Sender<()>,
    user_reader: tokio::task::JoinHandle<Read>,
    conv_reader: tokio::task::JoinHandle<Read>,
    base: HashMap<usize, u64>,
}

/// Each conversation's `latest` id in an `inbox` frame.
fn inbox_baselines(payload: &[u8], rooms: &HashMap<String, usize>) -> Result<HashMap<usize, u64>, BoxError> {
    let inbox: serde_json::Value = serde_json::from_slice(payload)?;
    if inbox["type"] != "inbox" {
        return Err("the user socket's first frame was not `inbox`".into());
    }
    let mut base = HashMap::new();
    for conversation in inbox["conversations"].as_array().ok_or("an inbox without `conversations`")? {
        let Some(&c) = conversation["room"].as_str().and_then(|r| rooms.get(r)) else { continue };
        if let Some(id) = conversation["latest"]["id"].as_str().and_then(|s| s.parse::<u64>().ok()) {
            base.insert(c, id);
        }
    }
    Ok(base)
}

/// The message ids of a `history` frame, and whether it said there were more.
fn history_ids(payload: &[u8]) -> Result<(Vec<u64>, bool), BoxError> {
    let history: serde_json::Value = serde_json::from_slice(payload)?;
    if history["type"] != "history" {
        return Err("the conversation socket's first frame was not `history`".into());
    }
    let ids = history["messages"]
        .as_array()
        .ok_or("a history without `messages`")?
        .iter()
        .filter_map(|m| m["id"].as_str().and_then(|s| s.parse::<u64>().ok()))
        .collect();
    Ok((ids, history["more"].as_bool().unwrap_or(false)))
}

async fn open_session(
    plan: &Plan,
    common: &Arc<Common>,
    since: Option<u64>,
    out: &mut Outcome,
    live: &Arc<Live>,
) -> Result<Session, BoxError> {
    let slot = common.connect_gate.acquire().await?;
    let (user_ws, inbox) = ws::open_first(common.addr, None, "/ws/user/", &plan.cookie).await?;
    let base = inbox_baselines(&inbox, &common.rooms)?;
    let path = match since {
        Some(id) => format!("{}?since={id}", plan.conv_path),
        None => plan.conv_path.clone(),
    };
    let (conv_ws, history) = ws::open_first(common.addr, None, &path, &plan.cookie).await?;
    drop(slot);
    let (ids, more) = history_ids(&history)?;
    if let Some(&newest) = ids.last() {
        live.last_id.fetch_max(newest, Ordering::Relaxed);
    }
    match since {
        None => out.conv_base = ids.last().copied().unwrap_or(0),
        Some(_) => {
            common.recovered.fetch_add(ids.len() as u64, Ordering::Relaxed);
            out.conv_ids.extend(ids);
            if more {
                out.problems.push("a since= history said there was more than it held".to_owned());
            }
        }
    }
    let (user_rd, user_wr) = user_ws.split(|s| s.into_split());
    let (conv_rd, conv_wr) = conv_ws.split(|s| s.into_split());
    let (user_pong_tx, user_pongs) = mpsc::unbounded_channel();
    let (conv_pong_tx, conv_pongs) = mpsc::unbounded_channel();
    let (user_stop, user_stop_rx) = oneshot::channel();
    let (conv_stop, conv_stop_rx) = oneshot::channel();
    let user_reader = tokio::spawn(read_socket(
        user_rd,
        None,
        plan.needed.clone(),
        common.clone(),
        Arc::new(Live::default()),
        user_pong_tx,
        user_stop_rx,
    ));
    let conv_reader = tokio::spawn(read_socket(
        conv_rd,
        Some(plan.conv),
        if common.layout.active(plan.conv) { vec![plan.conv] } else { Vec::new() },
        common.clone(),
        live.clone(),
        conv_pong_tx,
        conv_stop_rx,
    ));
    Ok(Session { user_wr, conv_wr, user_pongs, conv_pongs, user_stop, conv_stop, user_reader, conv_reader, base })
}

async fn write(wr: &mut Wr, frame: Frame<'_>) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_frame(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("a write failed: {e}")),
        Err(_) => Err("a write took over 10 s".to_owned()),
    }
}

fn text_frame(json: String) -> Frame<'static> {
    Frame::text(Payload::Owned(json.into_bytes()))
}

/// How a connection ended.
enum Ended {
    /// Told to reconnect.
    Churn,
    /// The run is over (or the connection failed).
    Finished,
}

/// Closes a session (if `closing`, with close frames first) and keeps what its readers saw.
async fn end_session(mut s: Session, last: bool, closing: bool, out: &mut Outcome) {
    if closing {
        let _ = write(&mut s.user_wr, Frame::close(1000, b"")).await;
        let _ = write(&mut s.conv_wr, Frame::close(1000, b"")).await;
    }
    let _ = s.user_stop.send(());
    let _ = s.conv_stop.send(());
    let user = s.user_reader.await.unwrap_or_default();
    let conv = s.conv_reader.await.unwrap_or_default();
    out.absorb(&user);
    out.absorb(&conv);
    out.confirmed.extend_from_slice(&conv.confirmed);
    out.conv_ids.extend(conv.seen.iter().map(|(_, id)| *id));
    if last {
        if !user.done {
            out.problems.push(format!(
                "user socket: {}",
                user.ended.clone().unwrap_or_else(|| "not every end marker before the deadline".to_owned())
            ));
        }
        if !conv.done && !conv.markers.is_empty() {
            out.problems.push("conversation socket: its end marker came, but not as awaited".to_owned());
        } else if !conv.done {
            out.problems.push(format!(
                "conversation socket: {}",
                conv.ended.clone().unwrap_or_else(|| "no end marker before the deadline".to_owned())
            ));
        }
    }
    out.sessions.push(UserSession { base: s.base, seen: user.seen, last });
}

async fn user_life(plan: Plan, common: Arc<Common>, mut phase: watch::Receiver<Phase>) -> Outcome {
    let mut out = Outcome::default();
    let mut rng = Rng(0x5EED ^ (plan.index as u64).wrapping_mul(0x9E37_79B9));
    let live = Arc::new(Live::default());
    let mut since = None;
    let mut counted_connected = false;
    let mut quiesced = false;
    let mut marker_sent = false;
    // The message schedule: one every `message_every` (±20 %), the first at a random offset.
    let mut next_msg: Option<Instant> = None;
    let mut next_read: Option<Instant> = None;
    let mut typed = 0u32;
    let mut last_read = 0u64;
    'sessions: loop {
        let mut s = match open_session(&plan, &common, since, &mut out, &live).await {
            Ok(s) => s,
            Err(error) => {
                out.problems.push(format!("connecting: {error}"));
                common.failed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        if !counted_connected {
            counted_connected = true;
            common.connected.fetch_add(1, Ordering::Relaxed);
            common.changed.notify_waiters();
        } else {
            common.reconnects.fetch_add(1, Ordering::Relaxed);
            common.churning[plan.index].store(false, Ordering::Relaxed);
        }
        let ended = loop {
            let now = Instant::now();
            let current = *phase.borrow_and_update();
            // The next thing to send, while running.
            let mut action: Option<(Instant, u8)> = None;
            if current == Phase::Run {
                let msg_at = *next_msg.get_or_insert_with(|| now + common.message_every.mul_f64(rng.unit()));
                let read_at = *next_read.get_or_insert_with(|| now + common.read_every.mul_f64(rng.unit()));
                action = Some((msg_at, 0));
                if common.typing.load(Ordering::Relaxed) && typed < TYPING_PER_MESSAGE {
                    let typing_at =
                        (msg_at - Duration::from_secs(1)) + Duration::from_secs(1) * typed / TYPING_PER_MESSAGE;
                    if typing_at < msg_at {
                        action = Some((typing_at, 1));
                    }
                }
                if read_at < action.map_or(read_at, |a| a.0) {
                    action = Some((read_at, 2));
                }
            }
            if current == Phase::Stop && !quiesced {
                // Every own message answered before saying so (a few seconds at most).
                let until = now + WRITE_TIMEOUT;
                while live.answered.load(Ordering::Relaxed) < out.sent && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                quiesced = true;
                common.quiesced.fetch_add(1, Ordering::Relaxed);
                common.changed.notify_waiters();
            }
            let mut deadline = None;
            if let Phase::Markers(until) = current {
                if plan.marker_sender && !marker_sent {
                    marker_sent = true;
                    let frame = ws::client_frame(ws::MARKER_TEXT, ws::MARKER_CLIENT_ID);
                    if let Err(error) = write(&mut s.conv_wr, frame).await {
                        out.problems.push(format!("sending the end marker: {error}"));
                    }
                }
                if s.user_reader.is_finished() && s.conv_reader.is_finished() {
                    break Ended::Finished;
                }
                deadline = Some(until.min(now + Duration::from_millis(50)));
                if now >= until {
                    break Ended::Finished;
                }
            }
            let wake = action.map(|a| a.0).or(deadline);
            tokio::select! {
                _ = async { tokio::time::sleep_until(wake.unwrap_or(now).into()).await }, if wake.is_some() => {
                    let Some((_, what)) = action else { continue };
                    let result = match what {
                        0 => {
                            next_msg = Some(next_msg.unwrap_or(now) + rng.jitter(common.message_every, 0.2));
                            typed = 0;
                            let text = ws::message_text(common.now_ns());
                            let frame = ws::client_frame(&text, &out.sent.to_string());
                            out.sent += 1;
                            common.messages_sent.fetch_add(1, Ordering::Relaxed);
                            write(&mut s.conv_wr, frame).await
                        }
                        1 => {
                            typed += 1;
                            common.typing_sent.fetch_add(1, Ordering::Relaxed);
                            write(&mut s.conv_wr, text_frame(r#"{"type":"typing"}"#.to_owned())).await
                        }
                        _ => {
                            next_read = Some(next_read.unwrap_or(now) + rng.jitter(common.read_every, 0.2));
                            let newest = live.last_id.load(Ordering::Relaxed);
                            if newest > last_read {
                                last_read = newest;
                                common.reads_sent.fetch_add(1, Ordering::Relaxed);
                                write(&mut s.conv_wr, text_frame(format!(r#"{{"type":"read","up_to":"{newest}"}}"#))).await
                            } else {
                                Ok(())
                            }
                        }
                    };
                    if let Err(error) = result {
                        out.problems.push(error);
                        break Ended::Finished;
                    }
                }
                Some(pong) = s.user_pongs.recv() => {
                    let _ = write(&mut s.user_wr, pong).await;
                }
                Some(pong) = s.conv_pongs.recv() => {
                    let _ = write(&mut s.conv_wr, pong).await;
                }
                _ = common.churn[plan.index].notified(), if current == Phase::Run => break Ended::Churn,
                changed = phase.changed() => {
                    if changed.is_err() {
                        break Ended::Finished;
                    }
                }
            }
        };
        match ended {
            Ended::Finished => {
                end_session(s, true, false, &mut out).await;
                break 'sessions;
            }
            Ended::Churn => {
                // Own messages answered first, as a client that closes a tab after sending.
                let until = Instant::now() + Duration::from_secs(2);
                while live.answered.load(Ordering::Relaxed) < out.sent && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                end_session(s, false, true, &mut out).await;
                let (low, high) = common.churn_down;
                tokio::time::sleep(low + (high - low).mul_f64(rng.unit())).await;
                since = Some(live.last_id.load(Ordering::Relaxed));
            }
        }
    }
    if !counted_connected {
        common.connected.fetch_add(1, Ordering::Relaxed);
    }
    if !quiesced {
        common.quiesced.fetch_add(1, Ordering::Relaxed);
    }
    common.changed.notify_waiters();
    out
}

// ---------------------------------------------------------------------------
// Setup: accounts, sessions, memberships

/// The `csrf_token` of a signed-in page.
fn csrf_of(page: &str) -> Option<String> {
    let at = page.find(r#"name="csrf_token" value=""#)? + r#"name="csrf_token" value=""#.len();
    Some(page[at..].split('"').next()?.to_owned())
}

/// Creates the accounts through the admin page, then signs each in; the
/// session cookies, in `names` order.
async fn accounts(addr: SocketAddr, names: &[String]) -> Result<Vec<Arc<str>>, BoxError> {
    let admin = http::session(addr, PUBLISHER, PASSWORD).await?;
    let page = http::get(addr, "/admin", Some(&admin)).await?;
    let csrf = csrf_of(&page.text()).ok_or_else(|| format!("/admin answered {} without a csrf_token", page.status))?;
    let cookie_header = format!("chatctl_session={admin}");
    // Each account is signed in as soon as it exists: creating (argon2 on
    // the blocking pool) and signing in (one password check at a time) then
    // keep both cores busy instead of one phase after the other.
    let bar = progress(names.len() as u64, "  accounts {bar:30} {pos}/{len} created and signed in");
    let creating = Arc::new(Semaphore::new(CREATING));
    let signing_in = Arc::new(Semaphore::new(SIGNING_IN));
    let mut set = JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let body = format!(
            "csrf_token={}&username={}&email=&password={}",
            http::form_encode(&csrf),
            http::form_encode(name),
            http::form_encode(PASSWORD)
        );
        let (creating, signing_in) = (creating.clone(), signing_in.clone());
        let (cookie, name) = (cookie_header.clone(), name.clone());
        set.spawn(async move {
            let slot = creating.acquire_owned().await?;
            let headers = [("content-type", "application/x-www-form-urlencoded"), ("cookie", cookie.as_str())];
            let answer = http::send(addr, None, Method::POST, "/admin/users", &headers, Bytes::from(body)).await?;
            if answer.status != 303 {
                return Err(format!("creating {name} answered {}", answer.status).into());
            }
            drop(slot);
            let _slot = signing_in.acquire_owned().await?;
            Ok::<_, BoxError>((i, http::session(addr, &name, PASSWORD).await?))
        });
    }
    let mut cookies: Vec<Option<Arc<str>>> = vec![None; names.len()];
    while let Some(joined) = set.join_next().await {
        let (i, cookie) = joined??;
        cookies[i] = Some(cookie.into());
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(cookies.into_iter().map(|c| c.expect("every user signed in")).collect())
}

/// Makes every membership: each user opens each of their conversations once.
async fn join_all(addr: SocketAddr, layout: &Layout, cookies: &[Arc<str>]) -> Result<usize, BoxError> {
    let specs: Vec<(String, Arc<str>)> = layout
        .member_of
        .iter()
        .enumerate()
        .flat_map(|(u, convs)| convs.iter().map(move |&c| (u, c)))
        .map(|(u, c)| (layout.socket_path(c, u), cookies[u].clone()))
        .collect();
    let total = specs.len();
    let bar = progress(total as u64, "  joining {bar:30} {pos}/{len} memberships");
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    for (path, cookie) in specs {
        let gate = gate.clone();
        set.spawn(async move {
            let _slot = gate.acquire_owned().await;
            let socket = ws::open(addr, None, &path, &cookie).await.map_err(|e| format!("{path}: {e}"))?;
            drop(socket);
            Ok::<_, BoxError>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(total)
}

// ---------------------------------------------------------------------------
// Checks

#[derive(Default)]
struct Tally {
    expected: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
}

impl Tally {
    /// `seen` (arrival order) against `expected` (ascending).
    fn add(&mut self, seen: &[u64], expected: &[u64], base: u64) {
        self.reordered += seen.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        let mut unique = seen.to_vec();
        unique.sort_unstable();
        unique.dedup();
        self.duplicates += (seen.len() - unique.len()) as u64;
        // Shown in the inbox or the first history, and live again.
        self.duplicates += unique.iter().filter(|&&id| id <= base).count() as u64;
        self.expected += expected.len() as u64;
        self.lost += expected.iter().filter(|id| unique.binary_search(id).is_err()).count() as u64;
    }
}

/// The confirmed ids of `all` (ascending) in `(low, high]`.
fn between(all: &[u64], low: u64, high: u64) -> &[u64] {
    let from = all.partition_point(|&id| id <= low);
    let to = all.partition_point(|&id| id <= high);
    &all[from..to.max(from)]
}

// ---------------------------------------------------------------------------
// The scenario

/// Figures of one phase.
struct PhaseFigures {
    seconds: f64,
    server_cpu_s: f64,
    loader_cpu_s: f64,
    machine: sys::MachineCpu,
    deliveries: u64,
    messages: u64,
    typing: u64,
    reads: u64,
    metrics: HashMap<String, f64>,
}

struct Snapshot {
    at: Instant,
    cpu: f64,
    loader: f64,
    machine: sys::MachineCpu,
    deliveries: u64,
    messages: u64,
    typing: u64,
    reads: u64,
    metrics: HashMap<String, f64>,
}

async fn snapshot(server: &super::Server, common: &Common) -> Result<Snapshot, BoxError> {
    Ok(Snapshot {
        at: Instant::now(),
        cpu: server.cpu_seconds()?,
        loader: sys::own_cpu_seconds(),
        machine: sys::MachineCpu::read(),
        deliveries: common.deliveries.load(Ordering::Relaxed),
        messages: common.messages_sent.load(Ordering::Relaxed),
        typing: common.typing_sent.load(Ordering::Relaxed),
        reads: common.reads_sent.load(Ordering::Relaxed),
        metrics: http::metrics(common.addr).await?,
    })
}

fn between_snapshots(a: &Snapshot, b: &Snapshot) -> PhaseFigures {
    let metrics = b.metrics.iter().map(|(k, v)| (k.clone(), v - a.metrics.get(k).copied().unwrap_or(0.0))).collect();
    PhaseFigures {
        seconds: (b.at - a.at).as_secs_f64(),
        server_cpu_s: b.cpu - a.cpu,
        loader_cpu_s: b.loader - a.loader,
        machine: b.machine.since(a.machine),
        deliveries: b.deliveries - a.deliveries,
        messages: b.messages - a.messages,
        typing: b.typing - a.typing,
        reads: b.reads - a.reads,
        metrics,
    }
}

/// Waits until `count()` reaches `n`, or `within` passes.
async fn wait_for(common: &Common, n: usize, within: Duration, count: impl Fn(&Common) -> usize) -> bool {
    let until = Instant::now() + within;
    loop {
        let notified = common.changed.notified();
        if count(common) >= n {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
}

pub(super) async fn app_scenario(env: &Env, sizes: &Sizes, fanout: Option<&super::Report>) -> Result<Report, BoxError> {
    let n = sizes.app_users;
    // Each side holds two sockets per user, and the joining pass opens 64 more at once.
    super::enough_open_files(2 * n + 2 * CONNECT_CONCURRENCY)?;
    let layout = Layout::new(n, sizes.app_rooms, sizes.app_room_max, sizes.app_direct_pairs);
    let mut server = single_node(env, "app", &[]).await?;
    let addr = server.addr;

    let setup = Instant::now();
    let cookies = accounts(addr, &layout.names).await?;
    let accounts_s = setup.elapsed().as_secs_f64();
    // The argon2 work's memory (19 MiB per check) goes back to the OS a
    // second after it is freed (jemalloc's decay): read the base after that.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rss_base = server.rss_kib()?;
    let memberships = join_all(addr, &layout, &cookies).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_joined = server.rss_kib()?;

    let rooms: HashMap<String, usize> =
        layout.convs.iter().enumerate().map(|(c, conv)| (conv.room.clone(), c)).collect();
    let plans: Vec<Plan> = (0..n)
        .map(|u| {
            let c = layout.open[u];
            Plan {
                index: u,
                cookie: cookies[u].clone(),
                conv: c,
                conv_path: layout.socket_path(c, u),
                needed: layout.member_of[u].iter().copied().filter(|&m| layout.active(m)).collect(),
                marker_sender: layout.convs[c].openers.first() == Some(&u),
            }
        })
        .collect();
    let active = (0..layout.convs.len()).filter(|&c| layout.active(c)).count();
    let room_sizes: Vec<usize> =
        layout.convs.iter().filter(|c| matches!(c.kind, Kind::Room)).map(|c| c.members.len()).collect();
    let common = Arc::new(Common {
        addr,
        layout,
        rooms,
        base: Instant::now(),
        message_every: sizes.app_message_every,
        read_every: sizes.app_read_every,
        churn_down: sizes.app_churn_down,
        typing: AtomicBool::new(false),
        window_from_ns: AtomicU64::new(u64::MAX),
        window_to_ns: AtomicU64::new(u64::MAX),
        deliveries: AtomicU64::new(0),
        messages_sent: AtomicU64::new(0),
        typing_sent: AtomicU64::new(0),
        reads_sent: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        recovered: AtomicU64::new(0),
        connect_gate: Semaphore::new(CONNECT_CONCURRENCY),
        connected: AtomicUsize::new(0),
        quiesced: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        changed: Notify::new(),
        churning: (0..n).map(|_| AtomicBool::new(false)).collect(),
        churn: (0..n).map(|_| Notify::new()).collect(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connect);
    let tasks: Vec<_> =
        plans.into_iter().map(|plan| tokio::spawn(user_life(plan, common.clone(), phase_rx.clone()))).collect();
    let connecting = Instant::now();
    if !wait_for(&common, n, CONNECT_WITHIN, |c| c.connected.load(Ordering::Relaxed)).await {
        return Err(format!(
            "{} of {n} users connected within {CONNECT_WITHIN:?}",
            common.connected.load(Ordering::Relaxed)
        )
        .into());
    }
    let failed = common.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let _ = phase_tx.send(Phase::Markers(Instant::now()));
        let mut why = String::new();
        for task in tasks {
            if let Ok(out) = task.await {
                if let Some(problem) = out.problems.first() {
                    why = problem.clone();
                    break;
                }
            }
        }
        return Err(format!("{failed} of {n} users could not connect: {why}").into());
    }
    let connect_s = connecting.elapsed().as_secs_f64();
    let setup_s = setup.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = server.rss_kib()?;

    // Phase A: the realistic load, typing and reconnects included.
    let bar =
        progress((sizes.app_run + sizes.app_plain_run).as_millis() as u64, "  running {bar:30} {elapsed:>4} {msg}");
    let ticker = {
        let (bar, common) = (bar.clone(), common.clone());
        let started = Instant::now();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(format!(
                    "{} deliveries, {} reconnects",
                    thousands(common.deliveries.load(Ordering::Relaxed) as f64),
                    common.reconnects.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let a_start = snapshot(&server, &common).await?;
    common.typing.store(true, Ordering::Relaxed);
    common.window_from_ns.store(common.now_ns(), Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Run);
    // Reconnects at even intervals over the phase, none in its last stretch
    // so that each is back before the phase ends.
    let minutes = sizes.app_run.as_secs_f64() / 60.0;
    let churns = ((n as f64 * CHURN_PER_MINUTE * minutes).round() as usize).max(2);
    let churn_span = sizes.app_run.saturating_sub(sizes.app_churn_down.1 + Duration::from_secs(1));
    let mut rng = Rng(0xC4_0211);
    let run_started = Instant::now();
    let mut churned = 0;
    for k in 0..churns {
        let at = run_started + churn_span.mul_f64((k as f64 + 0.5) / churns as f64);
        tokio::time::sleep_until(at.into()).await;
        for _ in 0..20 {
            let u = rng.below(n);
            if !common.churning[u].swap(true, Ordering::Relaxed) {
                common.churn[u].notify_one();
                churned += 1;
                break;
            }
        }
    }
    tokio::time::sleep_until((run_started + sizes.app_run).into()).await;
    let a_end = snapshot(&server, &common).await?;
    let rss_loaded = server.rss_kib()?;
    let sockets_open_loaded = a_end.metrics.get("websockets_open").copied().unwrap_or(0.0);

    // Phase B: the same messages and read markers, no typing, no reconnects.
    common.typing.store(false, Ordering::Relaxed);
    common.window_to_ns.store(common.now_ns(), Ordering::Relaxed);
    tokio::time::sleep(sizes.app_plain_run).await;
    let b_end = snapshot(&server, &common).await?;
    ticker.abort();
    bar.finish_and_clear();

    // The end: everyone quiet, then one end marker per conversation.
    let _ = phase_tx.send(Phase::Stop);
    if !wait_for(&common, n, Duration::from_secs(30), |c| c.quiesced.load(Ordering::Relaxed)).await {
        return Err("users did not stop sending within 30 s".into());
    }
    let _ = phase_tx.send(Phase::Markers(Instant::now() + sizes.drain));
    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(task.await.map_err(|e| format!("a user task failed: {e}"))?);
    }
    let server_counters_end = http::metrics(addr).await?;
    server.check_running()?;

    // Delivery checks.
    let layout = &common.layout;
    let mut confirmed: Vec<Vec<u64>> = vec![Vec::new(); layout.convs.len()];
    for (u, out) in outcomes.iter().enumerate() {
        confirmed[layout.open[u]].extend_from_slice(&out.confirmed);
    }
    for ids in &mut confirmed {
        ids.sort_unstable();
        ids.dedup();
    }
    let mut tally = Tally::default();
    let mut latency = Histogram::default();
    let mut window_latency = Histogram::default();
    let (mut sent, mut refused, mut error_frames, mut foreign) = (0, 0, 0, 0);
    let mut problems: std::collections::BTreeMap<String, usize> = Default::default();
    let mut first_error = None;
    let mut user_socket_sessions = 0;
    for (u, out) in outcomes.iter().enumerate() {
        let c = layout.open[u];
        tally.add(&out.conv_ids, between(&confirmed[c], out.conv_base, u64::MAX), out.conv_base);
        for session in &out.sessions {
            user_socket_sessions += 1;
            for &m in &layout.member_of[u] {
                let seen: Vec<u64> = session.seen.iter().filter(|(c, _)| *c == m).map(|(_, id)| *id).collect();
                let base = session.base.get(&m).copied().unwrap_or(0);
                let high = if session.last { u64::MAX } else { seen.iter().copied().max().unwrap_or(base) };
                tally.add(&seen, between(&confirmed[m], base, high), base);
            }
        }
        latency.merge(&out.latency);
        window_latency.merge(&out.window_latency);
        sent += out.sent;
        refused += out.refused;
        error_frames += out.error_frames;
        foreign += out.foreign;
        if first_error.is_none() {
            first_error.clone_from(&out.first_error);
        }
        for problem in &out.problems {
            *problems.entry(problem.clone()).or_default() += 1;
        }
    }
    let confirmed_total: u64 = confirmed.iter().map(|ids| ids.len() as u64).sum();
    let markers = active as u64;

    // Figures.
    let a = between_snapshots(&a_start, &a_end);
    let b = between_snapshots(&a_end, &b_end);
    let mut report = Report::new("app");
    report.measured_s = (a.seconds * 1000.0).round() / 1000.0;
    report.sockets = 2 * n as u64;
    report.messages_sent = sent + markers;
    report.messages_confirmed = confirmed_total.saturating_sub(markers);
    report.messages_refused = refused;
    report.messages_unanswered = sent.saturating_sub(confirmed_total.saturating_sub(markers) + refused);
    report.deliveries = common.deliveries.load(Ordering::Relaxed);
    report.deliveries_expected = tally.expected;
    report.lost = tally.lost;
    report.duplicates = tally.duplicates;
    report.reordered = tally.reordered;
    report.sockets_unfinished = problems.values().sum::<usize>() as u64;
    // The table's latency is the realistic phase's; the whole run's is a figure.
    report.latency = Latency::of(&window_latency);
    report.server_cpu_s = Some((a.server_cpu_s * 100.0).round() / 100.0);
    report.loader_cpu_s = Some((a.loader_cpu_s * 100.0).round() / 100.0);
    let per_cpu_a = a.deliveries as f64 / a.server_cpu_s.max(1e-9);
    let per_cpu_b = b.deliveries as f64 / b.server_cpu_s.max(1e-9);
    report.deliveries_per_server_cpu_s = Some(per_cpu_a);
    let own = a.server_cpu_s + a.loader_cpu_s;
    machine_figures(&mut report, a.seconds, a.machine, own);
    let round = |v: f64, d: i32| (v * 10f64.powi(d)).round() / 10f64.powi(d);
    let f = &mut report.figures;
    f.insert("users".into(), n as f64);
    f.insert("conversations_active".into(), active as f64);
    f.insert("rooms".into(), room_sizes.len() as f64);
    f.insert(
        "room_members_mean".into(),
        round(room_sizes.iter().sum::<usize>() as f64 / room_sizes.len().max(1) as f64, 1),
    );
    f.insert("memberships".into(), memberships as f64);
    f.insert("setup_accounts_s".into(), round(accounts_s, 1));
    f.insert("setup_connect_s".into(), round(connect_s, 1));
    f.insert("setup_total_s".into(), round(setup_s, 1));
    f.insert("a_deliveries_per_s".into(), (a.deliveries as f64 / a.seconds).round());
    f.insert("a_messages_per_s".into(), round(a.messages as f64 / a.seconds, 1));
    f.insert("a_typing_frames_per_s".into(), round(a.typing as f64 / a.seconds, 1));
    f.insert("a_read_markers_per_s".into(), round(a.reads as f64 / a.seconds, 1));
    f.insert("a_server_cpu_s".into(), round(a.server_cpu_s, 2));
    f.insert("b_server_cpu_s".into(), round(b.server_cpu_s, 2));
    f.insert("b_seconds".into(), round(b.seconds, 2));
    f.insert("b_deliveries_per_server_cpu_s".into(), per_cpu_b.round());
    f.insert("reconnects".into(), common.reconnects.load(Ordering::Relaxed) as f64);
    f.insert("reconnects_asked".into(), churned as f64);
    f.insert("recovered_by_since".into(), common.recovered.load(Ordering::Relaxed) as f64);
    f.insert("user_socket_connections".into(), user_socket_sessions as f64);
    let counter = |p: &PhaseFigures, name: &str| p.metrics.get(name).copied().unwrap_or(0.0);
    f.insert("a_typing_forwarded".into(), counter(&a, "typing_forwarded_total"));
    f.insert("a_typing_dropped".into(), counter(&a, "typing_dropped_total"));
    f.insert("a_presence_changes".into(), counter(&a, "presence_changes_total"));
    f.insert("b_presence_changes".into(), counter(&b, "presence_changes_total"));
    f.insert("a_server_deliveries_counted".into(), counter(&a, "deliveries_total"));
    f.insert("a_storage_commits".into(), counter(&a, "storage_commits_total"));
    f.insert("a_messages_stored".into(), counter(&a, "messages_stored_total"));
    f.insert(
        "slow_consumer_drops".into(),
        server_counters_end.get("slow_consumer_drops_total").copied().unwrap_or(0.0),
    );
    if let Some(all) = Latency::of(&latency) {
        f.insert("p99_whole_run_ms".into(), all.p99_ms);
    }
    // Memory: growth over the signed-in server before any socket, per user (two sockets each).
    let users_loaded = (sockets_open_loaded / 2.0).max(1.0);
    let per_user_connected = (rss_connected as f64 - rss_base as f64) / n as f64;
    let per_user_loaded = (rss_loaded as f64 - rss_base as f64) / users_loaded;
    f.insert("rss_base_kib".into(), rss_base as f64);
    f.insert("rss_after_joining_kib".into(), rss_joined as f64);
    f.insert("rss_connected_kib".into(), rss_connected as f64);
    f.insert("rss_per_user_sockets_only_kib".into(), round((rss_connected as f64 - rss_joined as f64) / n as f64, 2));
    f.insert("rss_end_of_a_kib".into(), rss_loaded as f64);
    f.insert("rss_per_user_connected_kib".into(), round(per_user_connected, 2));
    f.insert("rss_per_user_under_load_kib".into(), round(per_user_loaded, 2));
    // Typing and presence: CPU per message with them (A) and without (B).
    let per_msg_a = a.server_cpu_s / (a.messages as f64).max(1.0);
    let per_msg_b = b.server_cpu_s / (b.messages as f64).max(1.0);
    let share = if per_msg_a > 0.0 { (per_msg_a - per_msg_b) / per_msg_a } else { 0.0 };
    f.insert("a_server_cpu_ms_per_message".into(), round(per_msg_a * 1000.0, 3));
    f.insert("b_server_cpu_ms_per_message".into(), round(per_msg_b * 1000.0, 3));
    f.insert("typing_presence_cpu_share".into(), round(share, 3));
    if foreign > 0 {
        report.notes.push(format!("{foreign} message frame(s) of conversations the bench does not know"));
    }
    if error_frames > 0 {
        report
            .notes
            .push(format!("{error_frames} error frame(s) received; the first: {}", first_error.unwrap_or_default()));
    }
    for (problem, count) in problems.iter().take(5) {
        report.notes.push(format!("{count} user(s): {problem}"));
    }
    report.notes.push(format!(
        "typing and presence share: server CPU per message sent in phase A (typing, {:.0} reconnects a minute) against \
         phase B (same messages and read markers, no typing, no reconnects): {:.3} vs {:.3} ms",
        CHURN_PER_MINUTE * 100.0 * n as f64 / 100.0,
        per_msg_a * 1000.0,
        per_msg_b * 1000.0
    ));
    report.notes.push(
        "a user socket is checked per connection: every message of its conversations after the inbox's `latest`, \
         once and in order, up to the last one it saw before a reconnect closed it (to the end marker otherwise)"
            .to_owned(),
    );

    let fanout_per_cpu = fanout.and_then(|r| r.deliveries_per_server_cpu_s);
    let ratio = fanout_per_cpu.map(|f| per_cpu_a / f);
    let ratio_text = ratio.map_or_else(String::new, |r| format!(" ({:.0} % of fanout)", r * 100.0));
    report.headline = format!(
        "{} deliveries/server CPU-s{ratio_text}; {:.1} KiB/user; typing+presence {:.0} % of CPU",
        thousands(per_cpu_a),
        per_user_loaded,
        share * 100.0
    );
    match (fanout_per_cpu, ratio) {
        (Some(fanout), Some(ratio)) => {
            report.figures.insert("ratio_to_fanout_per_cpu".into(), round(ratio, 3));
            report.target(
                "≥ 70 % of `fanout`'s deliveries per server CPU-second",
                format!("{:.0} % ({} vs {} per CPU-s)", ratio * 100.0, thousands(per_cpu_a), thousands(fanout)),
                ratio >= FANOUT_SHARE_MIN,
            );
        }
        _ => report.target(
            "≥ 70 % of `fanout`'s deliveries per server CPU-second",
            format!(
                "comparison unavailable: `fanout` did not run in this invocation ({} per CPU-s)",
                thousands(per_cpu_a)
            ),
            false,
        ),
    }
    report.target(
        "RSS ≤ 32 KiB per connected user (two sockets)",
        format!("{per_user_loaded:.1} KiB under load ({per_user_connected:.1} KiB connected, before the load)"),
        per_user_loaded <= RSS_PER_USER_MAX_KIB,
    );
    report.target(
        "typing and presence < 15 % of server CPU",
        format!(
            "{:.1} % ({:.3} vs {:.3} ms of server CPU per message)",
            share * 100.0,
            per_msg_a * 1000.0,
            per_msg_b * 1000.0
        ),
        share < TYPING_SHARE_MAX,
    );
    report.target(
        "0 lost, duplicated or reordered",
        format!("{} / {} / {}", tally.lost, tally.duplicates, tally.reordered),
        tally.lost == 0 && tally.duplicates == 0 && tally.reordered == 0,
    );
    drop(outcomes);
    finish(&mut server, &mut report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_gives_everyone_a_room_and_every_room_a_watcher() {
        let layout = Layout::new(2000, 300, 50, 100);
        assert!(layout.member_of.iter().all(|m| !m.is_empty()));
        assert!(layout.convs.iter().take(300).all(|c| (2..=50).contains(&c.members.len())));
        assert!(layout.convs.iter().all(|c| !c.openers.is_empty()));
        for (u, &c) in layout.open.iter().enumerate() {
            assert!(layout.member_of[u].contains(&c));
        }
        assert_eq!(layout.convs[300].room, "dm:app_00000:app_00001");
        assert_eq!(layout.socket_path(300, 1), "/ws/direct/app_00000/");
    }

    #[test]
    fn tallies_count_lost_duplicated_and_reordered() {
        let mut tally = Tally::default();
        tally.add(&[3, 5, 4, 5], &[3, 4, 5, 6], 2);
        assert_eq!((tally.expected, tally.lost, tally.duplicates, tally.reordered), (4, 1, 1, 1));
        assert_eq!(between(&[1, 2, 3, 4], 1, 3), &[2, 3]);
        assert_eq!(between(&[1, 2, 3, 4], 4, 2), &[] as &[u64]);
    }
}
