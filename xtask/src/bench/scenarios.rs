//! The scenarios. Each starts its own server(s), signs in, opens its
//! sockets, runs one measured phase (`measure`) and turns what it saw into
//! a `Report` with its own figure and targets. The attack scenarios
//! (`history-flood`, `slow-bodies`, `storm-memory`) run only when named.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::histogram::Histogram;
use super::http;
use super::load::{run_rooms, Held, Integrity, Plan, RoomLoad, RoomResult, Shared};
use super::report::{thousands, Latency, Report, Status};
use super::server::{Launch, Server, PASSWORD};
use super::ws::{self, Ws};
use super::{BoxError, Env};

mod app;
mod attack;
mod backup;
mod history_flood;
mod slow_bodies;
mod storm_memory;
use app::app_scenario;
use backup::backup_scenario;
use history_flood::history_flood_scenario;
use slow_bodies::slow_bodies_scenario;
use storm_memory::storm_memory_scenario;

/// The account that publishes, and the one every receiving socket uses (a
/// user may hold many sockets: one sign-in serves them all, so argon2 does
/// not dominate the setup).
const PUBLISHER: &str = "bench_pub";
const RECEIVER: &str = "bench_rx";
/// Unacknowledged messages a flat-out publisher may have.
const WINDOW: usize = 64;
/// Sockets being opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// The login throttle allows 5 attempts per username and 20 per client
/// address per 15 minutes: the storm stays under both.
const STORM_LOGINS_PER_USER: usize = 4;
const STORM_LOGINS_PER_ADDRESS: usize = 10;
/// Backups the `backup` scenario runs at the least, however long they take.
const MIN_BACKUPS: usize = 3;
/// How long one backup may take before the scenario gives up on it.
const BACKUP_WITHIN: Duration = Duration::from_secs(300);
/// How long a server may take to answer `/readyz` 200.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Run sizes: the brief's full sizes, or `--quick`'s.
struct Sizes {
    quick: bool,
    fanout_rooms: usize,
    fanout_per_room: usize,
    fanout_run: Duration,
    latency_rooms: usize,
    latency_sockets: usize,
    latency_rate: f64,
    latency_run: Duration,
    durable_publishers: usize,
    durable_run: Duration,
    connections: usize,
    connections_per_room: usize,
    storm_logins: usize,
    storm_after: Duration,
    /// Messages stored before `backup` measures, so that a backup has a history to copy.
    backup_history: usize,
    backup_fill_publishers: usize,
    /// The longest the fill may take.
    backup_fill_max: Duration,
    /// When the backups start, into the `latency` load.
    backup_after: Duration,
    /// How long backups run back to back (at least `MIN_BACKUPS` of them).
    backup_for: Duration,
    /// How long receivers wait for stragglers after sending stops.
    drain: Duration,
    /// How long a side load (the login storm) may hold the run open.
    hold_max: Duration,
    /// `history-flood`: the room's messages, each of `flood_chars` emoji.
    flood_messages: usize,
    flood_chars: usize,
    /// Sockets the one user opens with `?since=0`, and how long they stay unread.
    flood_sockets: usize,
    flood_hold: Duration,
    /// How long after the sockets close the RSS is read again.
    flood_settle: Duration,
    /// `slow-bodies`: connections at once, and the addresses they come from.
    slow_connections: usize,
    slow_addresses: usize,
    /// One body byte this often (`slow-bodies` and `storm-memory`).
    slow_every: Duration,
    /// When the client stops waiting for the server to close a slow connection.
    slow_give_up: Duration,
    /// `storm-memory`: rounds of `memory_connections` slow connections.
    memory_rounds: usize,
    memory_connections: usize,
    /// How long after the last round the settled RSS is read.
    memory_settle: Duration,
    /// `app`: users (each with a user socket and one conversation socket),
    /// rooms of 2 to `app_room_max` members, and pairs of users in a direct
    /// conversation.
    app_users: usize,
    app_rooms: usize,
    app_room_max: usize,
    app_direct_pairs: usize,
    /// Each user sends a message this often (±20 %), and moves its read marker this often.
    app_message_every: Duration,
    app_read_every: Duration,
    /// The phase with typing and reconnects, then the one without.
    app_run: Duration,
    app_plain_run: Duration,
    /// How long a reconnecting user stays away: between these.
    app_churn_down: (Duration, Duration),
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        let pick = |full, quick_size| if quick { quick_size } else { full };
        let secs = |full: u64, quick_ms: u64| {
            if quick {
                Duration::from_millis(quick_ms)
            } else {
                Duration::from_secs(full)
            }
        };
        Sizes {
            quick,
            fanout_rooms: 4,
            fanout_per_room: pick(250, 25),
            fanout_run: secs(20, 3000),
            latency_rooms: 10,
            latency_sockets: pick(1000, 100),
            latency_rate: 100.0,
            latency_run: secs(20, 2000),
            durable_publishers: pick(200, 20),
            durable_run: secs(20, 3000),
            connections: pick(10_000, 500),
            connections_per_room: 100,
            storm_logins: pick(200, 20),
            storm_after: secs(2, 500),
            backup_history: pick(200_000, 5_000),
            backup_fill_publishers: pick(200, 20),
            backup_fill_max: secs(120, 20_000),
            backup_after: secs(2, 500),
            backup_for: secs(10, 2000),
            drain: secs(15, 5000),
            hold_max: secs(60, 20_000),
            flood_messages: pick(1000, 100),
            flood_chars: 4096,
            flood_sockets: 100,
            flood_hold: secs(20, 3000),
            flood_settle: secs(5, 2000),
            slow_connections: pick(5000, 500),
            slow_addresses: 10,
            // The server's 30 s body deadline sets these, whatever the size.
            slow_every: Duration::from_secs(3),
            slow_give_up: Duration::from_secs(60),
            memory_rounds: pick(4, 2),
            memory_connections: pick(9000, 1000),
            memory_settle: secs(30, 5000),
            app_users: pick(2000, 100),
            app_rooms: pick(300, 15),
            app_room_max: 50,
            app_direct_pairs: pick(100, 5),
            app_message_every: Duration::from_secs(5),
            app_read_every: Duration::from_secs(5),
            app_run: secs(60, 8000),
            app_plain_run: secs(30, 4000),
            app_churn_down: (secs(0, 200), secs(8, 1000)),
        }
    }

    fn describe(&self, scenario: &str) -> String {
        let s = |d: Duration| format!("{} s", d.as_secs_f64());
        match scenario {
            "fanout" => format!(
                "{} rooms × {} sockets, one publisher per room, window {WINDOW}, {}",
                self.fanout_rooms,
                self.fanout_per_room,
                s(self.fanout_run)
            ),
            "latency" => format!(
                "{} sockets in {} rooms, {} publishers at {} msgs/s each, {}",
                self.latency_sockets,
                self.latency_rooms,
                self.latency_rooms,
                self.latency_rate,
                s(self.latency_run)
            ),
            "durable" => format!(
                "{} publishers in {} rooms of 1, window {WINDOW} each, {}",
                self.durable_publishers,
                self.durable_publishers,
                s(self.durable_run)
            ),
            "connections" => format!(
                "{} idle signed-in sockets in rooms of {}",
                self.connections, self.connections_per_room
            ),
            "login-storm" => format!(
                "{} concurrent logins ({} users, {} source addresses) {} into the `latency` load ({} sockets, {} rooms, {} msgs/s per room, {})",
                self.storm_logins,
                self.storm_logins.div_ceil(STORM_LOGINS_PER_USER),
                self.storm_logins.div_ceil(STORM_LOGINS_PER_ADDRESS),
                s(self.storm_after),
                self.latency_sockets,
                self.latency_rooms,
                self.latency_rate,
                s(self.latency_run)
            ),
            "backup" => format!(
                "`chatctl backup` back to back for {} (at least {MIN_BACKUPS}), {} into the `latency` load ({} sockets, {} rooms, {} msgs/s per room, {}), over a history of {} messages",
                s(self.backup_for),
                s(self.backup_after),
                self.latency_sockets,
                self.latency_rooms,
                self.latency_rate,
                s(self.latency_run),
                thousands(self.backup_history as f64)
            ),
            "cluster" => format!(
                "`fanout` ({} rooms × {} sockets, {}) with each room's sockets split over 2 nodes sharing one RabbitMQ stream",
                self.fanout_rooms,
                self.fanout_per_room,
                s(self.fanout_run)
            ),
            "history-flood" => format!(
                "a room of {} messages of {} emoji; one user opens {} sockets to it with ?since=0 from one address \
                 (per-address cap {}) and never reads, for {}",
                thousands(self.flood_messages as f64),
                thousands(self.flood_chars as f64),
                self.flood_sockets,
                super::server::DEFAULT_PER_ADDRESS_CAP,
                s(self.flood_hold)
            ),
            "slow-bodies" => format!(
                "{} POSTs at once from {} addresses (per-address cap {}), each announcing a 1 MB body and sending one byte every {}",
                thousands(self.slow_connections as f64),
                self.slow_addresses,
                super::server::DEFAULT_PER_ADDRESS_CAP,
                s(self.slow_every)
            ),
            "storm-memory" => format!(
                "{} rounds of {} slow-body connections at once (all admitted), then {} idle",
                self.memory_rounds,
                thousands(self.memory_connections as f64),
                s(self.memory_settle)
            ),
            "app" => format!(
                "{} users, each with a user socket and one conversation socket, in {} rooms of 2 to {} members and {} direct \
                 conversations; a message per user every {} (±20 %), each after {TYPING} typing frames over the second \
                 before it; read markers every {}; {} s with typing and 5 % of users reconnecting a minute (away {}–{}), \
                 then {} s without either",
                thousands(self.app_users as f64),
                self.app_rooms,
                self.app_room_max,
                self.app_direct_pairs,
                s(self.app_message_every),
                s(self.app_read_every),
                self.app_run.as_secs_f64(),
                s(self.app_churn_down.0),
                s(self.app_churn_down.1),
                self.app_plain_run.as_secs_f64()
            ),
            _ => String::new(),
        }
    }
}

/// Typing frames before each message in `app`.
const TYPING: u32 = 3;

/// Runs one scenario; every failure becomes a `failed` report.
pub fn run(name: &str, env: &Env, runtime: &tokio::runtime::Runtime, fanout: Option<&Report>) -> Report {
    let sizes = Sizes::new(env.quick);
    let size = sizes.describe(name);
    let result = match name {
        "fanout" => runtime.block_on(fanout_scenario(env, &sizes)),
        "latency" => runtime.block_on(latency_scenario(env, &sizes)),
        "durable" => runtime.block_on(durable_scenario(env, &sizes)),
        "connections" => runtime.block_on(connections_scenario(env, &sizes)),
        "login-storm" => runtime.block_on(login_storm_scenario(env, &sizes)),
        "backup" => runtime.block_on(backup_scenario(env, &sizes)),
        "history-flood" => runtime.block_on(history_flood_scenario(env, &sizes)),
        "slow-bodies" => runtime.block_on(slow_bodies_scenario(env, &sizes)),
        "storm-memory" => runtime.block_on(storm_memory_scenario(env, &sizes)),
        "app" => runtime.block_on(app_scenario(env, &sizes, fanout)),
        "cluster" => match &env.amqp_url {
            Some(url) => runtime.block_on(cluster_scenario(env, &sizes, url, fanout)),
            None => {
                return Report::skipped(name, size, "no broker: set CHATCTL_BENCH_AMQP_URL (or CHATCTL_TEST_AMQP_URL)")
            }
        },
        other => Err(format!("unknown scenario {other}").into()),
    };
    match result {
        Ok(mut report) => {
            report.size = size;
            if sizes.quick {
                report.notes.push("quick sizes: the targets are for the full sizes".to_owned());
            }
            report
        }
        Err(error) => Report::failed(name, size, error.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Servers and sockets

/// A single node with the publisher, receiver and `extra` accounts, ready,
/// without the per-address connection cap.
async fn single_node(env: &Env, scenario: &str, extra: &[String]) -> Result<Server, BoxError> {
    single_node_capped(env, scenario, extra, 0).await
}

/// `single_node` with `--max-connections-per-address per_address_cap`.
async fn single_node_capped(
    env: &Env,
    scenario: &str,
    extra: &[String],
    per_address_cap: u32,
) -> Result<Server, BoxError> {
    let mut accounts = vec![PUBLISHER.to_owned(), RECEIVER.to_owned()];
    accounts.extend_from_slice(extra);
    let mut server = Server::start(Launch {
        binary: &env.binary,
        log: env.out.join("logs").join(format!("{scenario}.log")),
        accounts: &accounts,
        cluster: None,
        per_address_cap,
    })?;
    ready(&mut server).await?;
    Ok(server)
}

async fn ready(server: &mut Server) -> Result<(), BoxError> {
    if let Err(error) = http::wait_ready(server.addr, READY_WITHIN).await {
        server.check_running()?;
        return Err(format!("{error}: {}", server.log_tail()).into());
    }
    Ok(())
}

/// Stops the server and notes anything but a clean exit.
fn finish(server: &mut Server, report: &mut Report) {
    let how = server.stop();
    if !how.contains("exit status: 0") {
        report.notes.push(format!("server at {} {how}", server.addr));
    }
}

/// One socket to open.
struct Spec {
    addr: SocketAddr,
    path: String,
    cookie: Arc<str>,
}

fn room_path(room: &str) -> String {
    format!("/ws/chat/{room}/")
}

/// Opens every socket (a bounded number at once), each subscribed when
/// this returns; the result is in `specs` order.
async fn open_all(specs: Vec<Spec>, label: &str) -> Result<(Vec<Ws>, Duration), BoxError> {
    let started = Instant::now();
    let bar = progress(specs.len() as u64, &format!("  {label} {{bar:30}} {{pos}}/{{len}} sockets"));
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    let total = specs.len();
    for (index, spec) in specs.into_iter().enumerate() {
        let gate = gate.clone();
        set.spawn(async move {
            let _slot = gate.acquire_owned().await;
            (index, ws::open(spec.addr, None, &spec.path, &spec.cookie).await)
        });
    }
    let mut sockets: Vec<Option<Ws>> = (0..total).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (index, opened) = joined?;
        match opened {
            Ok(ws) => sockets[index] = Some(ws),
            Err(error) => {
                bar.finish_and_clear();
                set.abort_all();
                return Err(format!("opening socket {} of {total}: {error}", index + 1).into());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((sockets.into_iter().map(|s| s.expect("every socket opened")).collect(), started.elapsed()))
}

/// Sockets for `rooms` rooms of `per_room`: socket 0 of each room is its
/// publisher (`publisher` cookie), the rest receive (`receiver` cookie).
/// `node` picks the server of socket `j` of room `r`.
fn layout(
    rooms: usize,
    per_room: usize,
    prefix: &str,
    nodes: &[(SocketAddr, Arc<str>, Arc<str>)],
    node: impl Fn(usize, usize) -> usize,
) -> Vec<Spec> {
    let mut specs = Vec::with_capacity(rooms * per_room);
    for r in 0..rooms {
        for j in 0..per_room {
            let (addr, publisher, receiver) = &nodes[node(r, j)];
            let cookie = if j == 0 { publisher.clone() } else { receiver.clone() };
            specs.push(Spec { addr: *addr, path: room_path(&format!("{prefix}{r}")), cookie });
        }
    }
    specs
}

/// Cuts `layout`'s sockets back into rooms.
fn into_rooms(sockets: Vec<Ws>, per_room: usize) -> Vec<RoomLoad> {
    let mut rooms = Vec::new();
    let mut sockets = sockets.into_iter();
    loop {
        let mut members: Vec<Ws> = sockets.by_ref().take(per_room).collect();
        if members.is_empty() {
            return rooms;
        }
        let publisher = members.remove(0);
        rooms.push(RoomLoad { publisher: Some(publisher), receivers: members });
    }
}

fn progress(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

// ---------------------------------------------------------------------------
// The measured phase

/// How the publishers of one run send.
struct Load {
    window: usize,
    rate_per_s: Option<f64>,
    run: Duration,
    max_messages: u64,
    /// Keeps publishers sending past `run` while set, up to `hold_max` more.
    hold: Option<Arc<AtomicBool>>,
    hold_max: Duration,
    drain: Duration,
}

/// A measured run: what the sockets saw, and what it cost the server(s).
struct Measured {
    results: Vec<RoomResult>,
    integrity: Integrity,
    /// First message sent to last one received.
    measured_s: f64,
    server_cpu_s: f64,
    loader_cpu_s: f64,
    /// The whole measured phase, draining included.
    phase_s: f64,
    /// CPU the whole machine used, all processes, and softirq.
    machine: super::sys::MachineCpu,
    /// How late a 1 ms timer in the load generator fired: how crowded the cores were.
    timer_lag: Histogram,
    /// The sockets, still open: close them after the figures are taken.
    held: Vec<Held>,
}

/// Runs `rooms` under `load` while `side` (e.g. the login storm) runs too.
async fn measure<F: Future>(
    servers: &mut [&mut Server],
    rooms: Vec<RoomLoad>,
    load: Load,
    side: F,
) -> Result<(Measured, F::Output), BoxError> {
    let shared = Shared::new();
    measure_with(servers, rooms, load, &shared, side).await
}

async fn measure_with<F: Future>(
    servers: &mut [&mut Server],
    rooms: Vec<RoomLoad>,
    load: Load,
    shared: &Arc<Shared>,
    side: F,
) -> Result<(Measured, F::Output), BoxError> {
    let cpu = |servers: &[&mut Server]| -> Result<f64, BoxError> {
        servers.iter().map(|s| s.cpu_seconds()).sum::<Result<f64, BoxError>>()
    };
    let cpu_before = cpu(servers)?;
    let loader_before = super::sys::own_cpu_seconds();
    let machine_before = super::sys::MachineCpu::read();
    let started = Instant::now();
    let stop_at = started + load.run;
    let hard_stop = if load.hold.is_some() { stop_at + load.hold_max } else { stop_at };
    let plan = Plan {
        window: load.window,
        rate_per_s: load.rate_per_s,
        stop_at,
        hold: load.hold.clone(),
        hard_stop,
        max_messages: load.max_messages,
        deadline: hard_stop + load.drain,
    };
    let bar = progress(load.run.as_millis() as u64, "  running {bar:30} {elapsed:>4} {msg}");
    let ticker = {
        let (bar, shared) = (bar.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(format!("{} deliveries", thousands(shared.deliveries.load(Ordering::Relaxed) as f64)));
            }
        })
    };
    let done = Arc::new(AtomicBool::new(false));
    let probe = {
        let (done, deadline) = (done.clone(), plan.deadline);
        tokio::spawn(async move {
            let mut lag = Histogram::default();
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let asked = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                lag.record(asked.elapsed().saturating_sub(Duration::from_millis(1)).as_micros() as u64);
            }
            lag
        })
    };
    let ((results, held), side_output) = tokio::join!(run_rooms(rooms, shared, &plan), side);
    done.store(true, Ordering::Relaxed);
    ticker.abort();
    bar.finish_and_clear();
    let ended = Instant::now();
    let server_cpu_s = cpu(servers)? - cpu_before;
    let loader_cpu_s = super::sys::own_cpu_seconds() - loader_before;
    let machine = super::sys::MachineCpu::read().since(machine_before);
    let timer_lag = probe.await.unwrap_or_default();
    for server in servers.iter_mut() {
        server.check_running()?;
    }
    let integrity = Integrity::of(&results);
    let last = integrity.last_delivery.unwrap_or(ended).max(started);
    let measured_s = (last - started).as_secs_f64().max(1e-3);
    let phase_s = (ended - started).as_secs_f64();
    Ok((
        Measured { results, integrity, measured_s, phase_s, server_cpu_s, loader_cpu_s, machine, timer_lag, held },
        side_output,
    ))
}

/// A report with the run's delivery, latency and CPU figures; `broker_cpu_s`
/// is CPU of a process besides the servers and the load generator that the
/// scenario accounts for (the local RabbitMQ).
fn report_of(scenario: &str, measured: &Measured, broker_cpu_s: f64) -> Report {
    let mut report = Report::new(scenario);
    report.absorb(&measured.integrity, measured.measured_s, measured.server_cpu_s, measured.loader_cpu_s);
    let own = measured.server_cpu_s + measured.loader_cpu_s + broker_cpu_s;
    machine_figures(&mut report, measured.phase_s, measured.machine, own);
    if let Some(lag) = measured.timer_lag.quantile_us(0.99) {
        report.figures.insert("loader_timer_lag_p99_ms".into(), lag as f64 / 1000.0);
    }
    report
}

/// What the whole machine did during a phase of `phase_s` seconds in which
/// the bench's own processes used `own_cpu_s`: anything else busy distorts
/// the figures, and the report says so.
fn machine_figures(report: &mut Report, phase_s: f64, machine: super::sys::MachineCpu, own_cpu_s: f64) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let available = phase_s * cores;
    let other = (machine.busy - own_cpu_s).max(0.0);
    let round = |v: f64| (v * 100.0).round() / 100.0;
    report.figures.insert("machine_busy_pct".into(), round((machine.busy + machine.softirq) / available * 100.0));
    report.figures.insert("kernel_softirq_cpu_s".into(), round(machine.softirq));
    report.figures.insert("other_processes_cpu_s".into(), round(other));
    report.notes.retain(|n| !n.starts_with("DISTURBED"));
    if other > 0.1 * available && other > 0.2 {
        report.notes.push(format!(
            "DISTURBED: other processes used {other:.1} of the {available:.1} CPU-seconds available during the run"
        ));
    }
}

fn counter(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    name: &str,
) -> f64 {
    after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
}

fn fmt_ms(value: f64) -> String {
    format!("{value:.2} ms")
}

// ---------------------------------------------------------------------------
// fanout

async fn fanout_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    let mut server = single_node(env, "fanout", &[]).await?;
    let addr = server.addr;
    let nodes = [(
        addr,
        http::session(addr, PUBLISHER, PASSWORD).await?.into(),
        http::session(addr, RECEIVER, PASSWORD).await?.into(),
    )];
    let specs = layout(sizes.fanout_rooms, sizes.fanout_per_room, "fanout", &nodes, |_, _| 0);
    let (sockets, _) = open_all(specs, "connecting").await?;
    let before = http::metrics(addr).await?;
    let load = fanout_load(sizes);
    let (mut measured, ()) =
        measure(&mut [&mut server], into_rooms(sockets, sizes.fanout_per_room), load, async {}).await?;
    let after = http::metrics(addr).await?;
    measured.held.clear(); // closes the sockets, now that the figures are taken

    let mut report = report_of("fanout", &measured, 0.0);
    let m = &measured.integrity;
    let per_s = m.deliveries as f64 / measured.measured_s;
    report.headline = format!("{} deliveries/s", thousands(per_s));
    report.figures.insert("deliveries_per_s".into(), per_s.round());
    report.figures.insert("messages_per_s".into(), (m.confirmed as f64 / measured.measured_s).round());
    report.figures.insert("server_deliveries_counted".into(), counter(&before, &after, "deliveries_total"));
    report.figures.insert("server_slow_consumer_drops".into(), counter(&before, &after, "slow_consumer_drops_total"));
    let per_cpu = report.deliveries_per_server_cpu_s.unwrap_or(0.0);
    report.target("≥ 200,000 deliveries/s", format!("{} /s", thousands(per_s)), per_s >= 200_000.0);
    report.target("0 lost", thousands(m.lost as f64), m.lost == 0);
    report.target(
        "≥ 250,000 deliveries per server CPU-second",
        format!("{} per CPU-s", thousands(per_cpu)),
        per_cpu >= 250_000.0,
    );
    finish(&mut server, &mut report);
    Ok(report)
}

// ---------------------------------------------------------------------------
// latency (and the load under login-storm)

/// Opens the `latency` layout on a ready server.
async fn latency_rooms(server: &Server, sizes: &Sizes) -> Result<Vec<RoomLoad>, BoxError> {
    let addr = server.addr;
    let nodes = [(
        addr,
        http::session(addr, PUBLISHER, PASSWORD).await?.into(),
        http::session(addr, RECEIVER, PASSWORD).await?.into(),
    )];
    let per_room = sizes.latency_sockets / sizes.latency_rooms;
    let specs = layout(sizes.latency_rooms, per_room, "latency", &nodes, |_, _| 0);
    let (sockets, _) = open_all(specs, "connecting").await?;
    Ok(into_rooms(sockets, per_room))
}

/// `fanout` and `cluster`: every publisher flat out within its window.
fn fanout_load(sizes: &Sizes) -> Load {
    Load {
        window: WINDOW,
        rate_per_s: None,
        run: sizes.fanout_run,
        max_messages: u64::MAX,
        hold: None,
        hold_max: Duration::ZERO,
        drain: sizes.drain,
    }
}

fn latency_load(sizes: &Sizes, hold: Option<Arc<AtomicBool>>) -> Load {
    Load {
        window: WINDOW,
        rate_per_s: Some(sizes.latency_rate),
        run: sizes.latency_run,
        max_messages: u64::MAX,
        hold,
        hold_max: sizes.hold_max,
        drain: sizes.drain,
    }
}

async fn latency_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    let mut server = single_node(env, "latency", &[]).await?;
    let rooms = latency_rooms(&server, sizes).await?;
    let before = http::metrics(server.addr).await?;
    let (mut measured, ()) = measure(&mut [&mut server], rooms, latency_load(sizes, None), async {}).await?;
    let after = http::metrics(server.addr).await?;
    measured.held.clear(); // closes the sockets, now that the figures are taken

    let mut report = report_of("latency", &measured, 0.0);
    let m = &measured.integrity;
    let latency = report.latency.clone().unwrap_or_default();
    report.headline = format!("p99 {:.2} ms, p999 {:.2} ms", latency.p99_ms, latency.p999_ms);
    report.figures.insert("deliveries_per_s".into(), (m.deliveries as f64 / measured.measured_s).round());
    let commits = counter(&before, &after, "storage_commits_total");
    if commits > 0.0 {
        let batch = counter(&before, &after, "messages_stored_total") / commits;
        report.figures.insert("mean_batch_per_commit".into(), (batch * 100.0).round() / 100.0);
    }
    report.target("p99 < 5 ms", fmt_ms(latency.p99_ms), latency.samples > 0 && latency.p99_ms < 5.0);
    report.target("p999 < 20 ms", fmt_ms(latency.p999_ms), latency.samples > 0 && latency.p999_ms < 20.0);
    finish(&mut server, &mut report);
    Ok(report)
}

// ---------------------------------------------------------------------------
// durable

async fn durable_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    let mut server = single_node(env, "durable", &[]).await?;
    let addr = server.addr;
    let cookie: Arc<str> = http::session(addr, PUBLISHER, PASSWORD).await?.into();
    let nodes = [(addr, cookie.clone(), cookie.clone())];
    let specs = layout(sizes.durable_publishers, 1, "durable", &nodes, |_, _| 0);
    let (sockets, _) = open_all(specs, "connecting").await?;
    let before = http::metrics(addr).await?;
    let load = Load {
        window: WINDOW,
        rate_per_s: None,
        run: sizes.durable_run,
        max_messages: u64::MAX,
        hold: None,
        hold_max: Duration::ZERO,
        drain: sizes.drain,
    };
    let (mut measured, ()) = measure(&mut [&mut server], into_rooms(sockets, 1), load, async {}).await?;
    let after = http::metrics(addr).await?;
    measured.held.clear(); // closes the sockets, now that the figures are taken

    // Committed before echo: every echoed id must be in storage now.
    let mut missing = 0u64;
    let mut stored_total = 0u64;
    let mut set = JoinSet::new();
    let gate = Arc::new(Semaphore::new(8));
    for (r, room) in measured.results.iter().enumerate() {
        let confirmed = room.published.as_ref().map(|p| p.confirmed.clone()).unwrap_or_default();
        let (gate, cookie) = (gate.clone(), cookie.clone());
        set.spawn(async move {
            let _slot = gate.acquire_owned().await;
            let stored = stored_ids(addr, &cookie, &format!("durable{r}")).await?;
            let missing = confirmed.iter().filter(|id| stored.binary_search(id).is_err()).count() as u64;
            Ok::<_, BoxError>((missing, stored.len() as u64))
        });
    }
    while let Some(joined) = set.join_next().await {
        let (m, n) = joined??;
        missing += m;
        stored_total += n;
    }

    let mut report = report_of("durable", &measured, 0.0);
    let m = &measured.integrity;
    report.lost += missing;
    let per_s = m.confirmed as f64 / measured.measured_s;
    let stored = counter(&before, &after, "messages_stored_total");
    let commits = counter(&before, &after, "storage_commits_total");
    let batch = if commits > 0.0 { (stored / commits * 10.0).round() / 10.0 } else { 0.0 };
    let shown = if batch >= 100.0 { thousands(batch) } else { format!("{batch:.1}") };
    report.headline = format!("{} messages/s, {shown} per commit", thousands(per_s));
    report.figures.insert("messages_per_s".into(), per_s.round());
    report.figures.insert("mean_batch_per_commit".into(), batch);
    report.figures.insert("commits_per_s".into(), (commits / measured.measured_s).round());
    report.figures.insert("stored_messages_checked".into(), stored_total as f64);
    report.figures.insert("echoed_but_not_in_storage".into(), missing as f64);
    if let Some(latency) = &report.latency {
        report.notes.push(format!("latency here is send → own echo (commit included): p99 {:.2} ms", latency.p99_ms));
    }
    report.target("≥ 50,000 messages/s", format!("{} /s", thousands(per_s)), per_s >= 50_000.0);
    finish(&mut server, &mut report);
    Ok(report)
}

/// Every message id stored in `room`, through the history API, ascending.
async fn stored_ids(addr: SocketAddr, cookie: &str, room: &str) -> Result<Vec<u64>, BoxError> {
    let mut ids = Vec::new();
    let mut after = 0u64;
    // Bounded: a page holds 500, and no room holds more than 10 million.
    for _ in 0..20_000 {
        let path = format!("/api/rooms/{room}/messages?after={after}&limit=500");
        let answer = http::get(addr, &path, Some(cookie)).await?;
        if answer.status != 200 {
            return Err(format!("{path} answered {}: {}", answer.status, answer.text()).into());
        }
        let page: serde_json::Value = serde_json::from_slice(&answer.body)?;
        let messages = page["messages"].as_array().ok_or("the history answer has no `messages`")?;
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let id = message["id"].as_str().and_then(|s| s.parse::<u64>().ok()).ok_or("a message without an id")?;
            ids.push(id);
            after = after.max(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

// ---------------------------------------------------------------------------
// connections

/// Err unless `sockets` (plus some slack) fit under the open-file limit,
/// which each side (load generator and server) needs one descriptor per socket of.
fn enough_open_files(sockets: usize) -> Result<(), BoxError> {
    let needed = (sockets + 256) as u64;
    let limit = super::sys::raise_open_files();
    if limit < needed {
        return Err(format!(
            "{sockets} sockets need an open-file limit of at least {needed}, and the hard limit is {limit}: \
             raise it (ulimit -Hn, or /etc/security/limits.conf) and run again"
        )
        .into());
    }
    Ok(())
}

async fn connections_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    // Each side holds one descriptor per socket, plus the publishers.
    enough_open_files(sizes.connections + sizes.connections.div_ceil(sizes.connections_per_room))?;
    let mut server = single_node(env, "connections", &[]).await?;
    let addr = server.addr;
    let publisher: Arc<str> = http::session(addr, PUBLISHER, PASSWORD).await?.into();
    let receiver: Arc<str> = http::session(addr, RECEIVER, PASSWORD).await?.into();
    let per_room = sizes.connections_per_room;
    let rooms = sizes.connections.div_ceil(per_room);
    let room_of = |i: usize| format!("conn{}", i / per_room);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss_kib()?;
    let cpu_before = server.cpu_seconds()?;
    let (machine_before, loader_before) = (super::sys::MachineCpu::read(), super::sys::own_cpu_seconds());
    let specs =
        (0..sizes.connections).map(|i| Spec { addr, path: room_path(&room_of(i)), cookie: receiver.clone() }).collect();
    let (idle, took) = open_all(specs, "connecting").await?;
    let connect_cpu = server.cpu_seconds()? - cpu_before;
    let connect_machine = super::sys::MachineCpu::read().since(machine_before);
    let connect_loader = super::sys::own_cpu_seconds() - loader_before;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server.rss_kib()?;
    let open_now = http::metrics(addr).await?.get("websockets_open").copied().unwrap_or(0.0);

    // Then one message per room: every idle socket must still get it.
    let publishers =
        (0..rooms).map(|r| Spec { addr, path: room_path(&format!("conn{r}")), cookie: publisher.clone() }).collect();
    let (publishers, _) = open_all(publishers, "publishers").await?;
    let mut idle = idle.into_iter();
    let loads = publishers
        .into_iter()
        .map(|p| RoomLoad { publisher: Some(p), receivers: idle.by_ref().take(per_room).collect() })
        .collect();
    let load = Load {
        window: 1,
        rate_per_s: None,
        run: Duration::ZERO,
        max_messages: 0,
        hold: None,
        hold_max: Duration::ZERO,
        drain: sizes.drain,
    };
    let (mut measured, ()) = measure(&mut [&mut server], loads, load, async {}).await?;
    measured.held.clear(); // closes the sockets, now that the figures are taken

    let mut report = report_of("connections", &measured, 0.0);
    // The connect phase is this scenario's measurement: its CPU and machine figures.
    report.server_cpu_s = Some((connect_cpu * 100.0).round() / 100.0);
    report.loader_cpu_s = Some((connect_loader * 100.0).round() / 100.0);
    report.figures.remove("loader_timer_lag_p99_ms");
    machine_figures(&mut report, took.as_secs_f64(), connect_machine, connect_cpu + connect_loader);
    report.deliveries_per_server_cpu_s = None;
    report.latency = None;
    let n = sizes.connections as f64;
    let per_socket_kib = (rss_after as f64 - rss_before as f64) / n;
    let rate = n / took.as_secs_f64();
    report.headline = format!("{per_socket_kib:.1} KiB/socket, {} connects/s", thousands(rate));
    report.figures.insert("connects_per_s".into(), rate.round());
    report.figures.insert("rss_before_kib".into(), rss_before as f64);
    report.figures.insert("rss_after_kib".into(), rss_after as f64);
    report.figures.insert("rss_growth_per_socket_kib".into(), (per_socket_kib * 100.0).round() / 100.0);
    report.figures.insert("server_cpu_ms_per_connect".into(), (connect_cpu * 1000.0 / n * 1000.0).round() / 1000.0);
    report.figures.insert("server_websockets_open".into(), open_now);
    report.notes.push(format!(
        "server CPU is the connect phase's; then each of the {rooms} rooms got one message, which every idle socket must see"
    ));
    report.target("RSS growth ≤ 16 KiB per socket", format!("{per_socket_kib:.1} KiB"), per_socket_kib <= 16.0);
    finish(&mut server, &mut report);
    Ok(report)
}

// ---------------------------------------------------------------------------
// login-storm

/// What the storm's sign-ins came to.
#[derive(Default)]
struct Storm {
    ok: u64,
    throttled: u64,
    /// 429 with Retry-After: no password-check slot freed up in time.
    busy: u64,
    other: u64,
    errors: Vec<String>,
    took: Duration,
    each: Vec<Duration>,
}

async fn login_storm(
    addr: SocketAddr,
    shared: Arc<Shared>,
    hold: Arc<AtomicBool>,
    users: Vec<String>,
    logins: usize,
    after: Duration,
) -> Storm {
    tokio::time::sleep(after).await;
    shared.open_window();
    let started = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..logins {
        let user = users[i / STORM_LOGINS_PER_USER].clone();
        // Every 127.0.0.0/8 address is loopback: spread the per-address throttle.
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + (i / STORM_LOGINS_PER_ADDRESS) as u8));
        set.spawn(async move {
            let t = Instant::now();
            let answer =
                tokio::time::timeout(Duration::from_secs(30), http::login(addr, Some(source), &user, PASSWORD)).await;
            (answer, t.elapsed())
        });
    }
    let mut storm = Storm::default();
    while let Some(joined) = set.join_next().await {
        let Ok((answer, took)) = joined else { continue };
        storm.each.push(took);
        match answer {
            Ok(Ok(a)) if a.status == 200 => storm.ok += 1,
            Ok(Ok(a)) if a.status == 429 && a.text().contains("busy") => storm.busy += 1,
            Ok(Ok(a)) if a.status == 429 => storm.throttled += 1,
            Ok(Ok(a)) => {
                storm.other += 1;
                storm.errors.push(format!("{} {}", a.status, a.text()));
            }
            Ok(Err(e)) => storm.errors.push(e.to_string()),
            Err(_) => storm.errors.push("no answer within 30 s".to_owned()),
        }
    }
    storm.took = started.elapsed();
    shared.close_window();
    hold.store(false, Ordering::Relaxed);
    storm
}

async fn login_storm_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    let users: Vec<String> =
        (0..sizes.storm_logins.div_ceil(STORM_LOGINS_PER_USER)).map(|i| format!("storm_{i}")).collect();
    let mut server = single_node(env, "login-storm", &users).await?;
    let addr = server.addr;
    let rooms = latency_rooms(&server, sizes).await?;
    let shared = Shared::new();
    let hold = Arc::new(AtomicBool::new(true));
    let storm = login_storm(addr, shared.clone(), hold.clone(), users, sizes.storm_logins, sizes.storm_after);
    let (mut measured, storm) =
        measure_with(&mut [&mut server], rooms, latency_load(sizes, Some(hold)), &shared, storm).await?;
    measured.held.clear(); // closes the sockets, now that the figures are taken

    let mut report = report_of("login-storm", &measured, 0.0);
    let m = &measured.integrity;
    let during = Latency::of(&m.window_latency).unwrap_or_default();
    let logins_per_s = storm.ok as f64 / storm.took.as_secs_f64().max(1e-3);
    let mut each = storm.each.clone();
    each.sort();
    let at = |q: f64| {
        each.get(((each.len() as f64 * q).ceil() as usize).saturating_sub(1)).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    report.headline =
        format!("{} logins/s; chat p99 {:.2} ms during the storm", thousands(logins_per_s), during.p99_ms);
    report.figures.insert("logins_per_s".into(), (logins_per_s * 10.0).round() / 10.0);
    report.figures.insert("logins_ok".into(), storm.ok as f64);
    report.figures.insert("logins_throttled_429".into(), storm.throttled as f64);
    report.figures.insert("logins_busy_429_retry".into(), storm.busy as f64);
    report.figures.insert("logins_failed_other".into(), storm.errors.len() as f64);
    report.figures.insert("storm_s".into(), (storm.took.as_secs_f64() * 1000.0).round() / 1000.0);
    report.figures.insert("login_p50_ms".into(), at(0.5).round());
    report.figures.insert("login_max_ms".into(), at(1.0).round());
    report.figures.insert("chat_p99_during_storm_ms".into(), during.p99_ms);
    report.figures.insert("chat_p999_during_storm_ms".into(), during.p999_ms);
    report.figures.insert("chat_samples_during_storm".into(), during.samples as f64);
    for error in storm.errors.iter().take(3) {
        report.notes.push(format!("a login failed: {error}"));
    }
    report.target(
        "chat p99 < 20 ms during the storm",
        fmt_ms(during.p99_ms),
        during.samples > 0 && during.p99_ms < 20.0,
    );
    finish(&mut server, &mut report);
    Ok(report)
}

// ---------------------------------------------------------------------------
// cluster

/// Deletes the bench's stream when dropped (after the nodes, which are
/// declared after it), if `rabbitmqctl` is here to do it.
struct StreamGuard {
    name: String,
    vhost: String,
    outcome: Option<String>,
}

impl StreamGuard {
    fn delete(&mut self) -> String {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let mut command = std::process::Command::new("rabbitmqctl");
        command.args(["-q", "delete_queue", &self.name]);
        if self.vhost != "/" {
            command.args(["-p", &self.vhost]);
        }
        let outcome = match command.output() {
            Ok(out) if out.status.success() => format!("stream {} deleted", self.name),
            Ok(out) => format!(
                "could not delete stream {} (rabbitmqctl: {}); delete it by hand",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(_) => format!("rabbitmqctl is not installed: stream {} left on the broker", self.name),
        };
        self.outcome = Some(outcome.clone());
        outcome
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.delete();
    }
}

/// The vhost an AMQP URL names (`%2f` or nothing: `/`).
fn vhost_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let path = path.split('?').next().unwrap_or("");
    let decoded = path.replace("%2f", "/").replace("%2F", "/");
    if decoded.is_empty() {
        "/".to_owned()
    } else {
        decoded
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    if let Ok(mut file) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut file, &mut bytes);
    }
    if bytes == [0; 6] {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&(nanos as u64 ^ u64::from(std::process::id())).to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// CPU seconds of the local RabbitMQ (`beam.smp`), when it runs here.
fn broker_cpu() -> Option<f64> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "beam.smp"))
        .map(|pid| super::sys::cpu_seconds(pid).ok())
        .sum()
}

/// The one-node `fanout` figure to compare with: this run's, else the last
/// run's of the same size in `target/bench/summary.json`.
fn fanout_baseline(env: &Env, fanout: Option<&Report>) -> Option<f64> {
    if let Some(report) = fanout {
        return report.figures.get("deliveries_per_s").copied();
    }
    let text = std::fs::read_to_string(env.out.join("summary.json")).ok()?;
    let summary: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mode = if env.quick { "quick" } else { "full" };
    if summary["mode"] != mode {
        return None;
    }
    summary["scenarios"].as_array()?.iter().find(|r| r["scenario"] == "fanout" && r["status"] == "ok")?["figures"]
        ["deliveries_per_s"]
        .as_f64()
}

async fn cluster_scenario(env: &Env, sizes: &Sizes, url: &str, fanout: Option<&Report>) -> Result<Report, BoxError> {
    let stream = format!("chatctl.bench.{}", random_suffix());
    let mut guard = StreamGuard { name: stream.clone(), vhost: vhost_of(url), outcome: None };
    let launch = |node: u32| Launch {
        binary: &env.binary,
        log: env.out.join("logs").join(format!("cluster-node{node}.log")),
        accounts: &[],
        cluster: Some((url, &stream)),
        per_address_cap: 0,
    };

    // No account yet: node 1 prints its one-time setup URL.
    let mut node1 = Server::start(launch(1))?;
    let line = node1.wait_for_log("setup?token=", READY_WITHIN).await?;
    let token: String = line
        .split_once("setup?token=")
        .map(|(_, rest)| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect())
        .unwrap_or_default();
    ready(&mut node1).await?;
    let form = [
        ("token", token.as_str()),
        ("username", PUBLISHER),
        ("email", "bench@example.com"),
        ("password", PASSWORD),
        ("password2", PASSWORD),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", http::form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let answer = http::send(
        node1.addr,
        None,
        Method::POST,
        "/setup",
        &[("content-type", "application/x-www-form-urlencoded")],
        Bytes::from(form),
    )
    .await?;
    let cookie1: Arc<str> = match (answer.status, answer.session_cookie()) {
        (303, Some(cookie)) => cookie.into(),
        (status, _) => return Err(format!("POST /setup on node 1 answered {status}: {}", answer.text()).into()),
    };

    // Node 2 learns the account from the stream; it is ready once it has read it all.
    let mut node2 = Server::start(launch(2))?;
    ready(&mut node2).await?;
    let mut cookie2 = None;
    // Few tries: failed attempts count against the login throttle (5 per user).
    for _ in 0..4 {
        let answer = http::login(node2.addr, None, PUBLISHER, PASSWORD).await?;
        if answer.status == 200 {
            cookie2 = answer.session_cookie();
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cookie2: Arc<str> = cookie2.ok_or("signing in on node 2 kept failing: it did not learn the account")?.into();

    let nodes = [(node1.addr, cookie1.clone(), cookie1), (node2.addr, cookie2.clone(), cookie2)];
    // Room r's publisher is on node r % 2; its other sockets alternate.
    let specs = layout(sizes.fanout_rooms, sizes.fanout_per_room, "cluster", &nodes, |r, j| (r + j) % 2);
    let (sockets, _) = open_all(specs, "connecting").await?;
    let broker_before = broker_cpu();
    let load = fanout_load(sizes);
    let (mut measured, ()) =
        measure(&mut [&mut node1, &mut node2], into_rooms(sockets, sizes.fanout_per_room), load, async {}).await?;
    let broker = broker_cpu().zip(broker_before).map(|(after, before)| after - before);
    measured.held.clear(); // closes the sockets, now that the figures are taken

    let mut report = report_of("cluster", &measured, broker.unwrap_or(0.0));
    let m = &measured.integrity;
    let per_s = m.deliveries as f64 / measured.measured_s;
    report.figures.insert("deliveries_per_s".into(), per_s.round());
    report.figures.insert("messages_per_s".into(), (m.confirmed as f64 / measured.measured_s).round());
    if let Some(broker) = broker {
        report.figures.insert("broker_cpu_s".into(), (broker * 100.0).round() / 100.0);
    }
    match fanout_baseline(env, fanout) {
        Some(single) if single > 0.0 => {
            let ratio = per_s / single;
            report.headline = format!("{} deliveries/s ({:.0} % of 1 node)", thousands(per_s), ratio * 100.0);
            report.figures.insert("ratio_to_one_node".into(), (ratio * 1000.0).round() / 1000.0);
            report.target(
                "≥ 50 % of the 1-node deliveries/s",
                format!("{:.0} % ({} vs {} /s)", ratio * 100.0, thousands(per_s), thousands(single)),
                ratio >= 0.5,
            );
        }
        _ => {
            report.headline = format!("{} deliveries/s", thousands(per_s));
            report.target(
                "≥ 50 % of the 1-node deliveries/s",
                "no 1-node figure of this size: run fanout too".into(),
                false,
            );
        }
    }
    report.target("0 lost", thousands(m.lost as f64), m.lost == 0);
    finish(&mut node1, &mut report);
    finish(&mut node2, &mut report);
    let deleted = guard.delete();
    if !deleted.ends_with("deleted") {
        report.notes.push(deleted);
    }
    if report.status != Status::Ok {
        report.notes.push("cluster run incomplete".into());
    }
    Ok(report)
}
