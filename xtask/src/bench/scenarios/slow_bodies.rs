//! `slow-bodies` (issue 9's second attack): thousands of `POST`s from ten
//! addresses, each announcing a 1 MB body and sending one byte every few
//! seconds. The server must refuse what is over the per-address cap at
//! once, end the rest with 408 at its 30 s body deadline, and keep
//! answering `/healthz` meanwhile.

use std::time::Duration;

use super::attack::{self, Ending, HealthProbe, RssWatch};
use super::{finish, single_node_capped, Sizes};
use crate::bench::report::{thousands, Report};
use crate::bench::server::DEFAULT_PER_ADDRESS_CAP;
use crate::bench::{http, BoxError, Env};

/// The bound: this share of the connections closed by the server...
const CLOSED_SHARE: f64 = 0.95;
/// ...within this long of opening.
const CLOSED_WITHIN: Duration = Duration::from_secs(40);
/// Connects in flight at once.
const OPENING: usize = 512;

pub(super) async fn slow_bodies_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    let n = sizes.slow_connections;
    super::enough_open_files(n)?;
    let mut server = single_node_capped(env, "slow-bodies", &[], DEFAULT_PER_ADDRESS_CAP).await?;
    let addr = server.addr;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss_kib()?;
    let cpu_before = server.cpu_seconds()?;
    let metrics_before = http::metrics_from(addr, Some(attack::PROBE_SOURCE)).await?;
    let watch = RssWatch::start(server.pid(), Duration::from_millis(100));
    let probe = HealthProbe::start(addr);
    let started = std::time::Instant::now();
    let per_address = n.div_ceil(sizes.slow_addresses);
    let outcomes = attack::slow_bodies(addr, n, per_address, sizes.slow_every, sizes.slow_give_up, OPENING).await;
    let took = started.elapsed();
    let probed = probe.finish().await;
    let rss_peak = watch.finish().await;
    let cpu = server.cpu_seconds()? - cpu_before;
    server.check_running()?;
    let metrics_after = http::metrics_from(addr, Some(attack::PROBE_SOURCE)).await?;
    let refused_counted = super::counter(&metrics_before, &metrics_after, "connections_refused_total");

    let mut report = Report::new("slow-bodies");
    let closed = |o: &&attack::SlowOutcome| !matches!(o.ending, Ending::StillOpen | Ending::NoConnection);
    let in_time = outcomes.iter().filter(closed).filter(|o| o.open_for <= CLOSED_WITHIN).count();
    let share = in_time as f64 / n.max(1) as f64;
    let status = |code| outcomes.iter().filter(|o| o.ending == Ending::Status(code)).count();
    let (timed_out, refused) = (status(408), status(503));
    let admitted: Vec<&attack::SlowOutcome> =
        outcomes.iter().filter(|o| o.ending == Ending::Status(408) || o.ending == Ending::StillOpen).collect();
    let slowest_admitted = admitted.iter().map(|o| o.open_for).max().unwrap_or_default();
    let slowest_connect = outcomes.iter().map(|o| o.connect).max().unwrap_or_default();
    let round_s = |d: Duration| (d.as_secs_f64() * 100.0).round() / 100.0;
    report.headline = format!(
        "{:.1} % closed within 40 s ({} × 408, {} × 503); /healthz max {:.0} ms",
        share * 100.0,
        thousands(timed_out as f64),
        thousands(refused as f64),
        probed.max.as_secs_f64() * 1000.0
    );
    report.server_cpu_s = Some((cpu * 100.0).round() / 100.0);
    report.figures.insert("connections".into(), n as f64);
    report.figures.insert("source_addresses".into(), sizes.slow_addresses as f64);
    report.figures.insert("closed_within_40s".into(), in_time as f64);
    report.figures.insert("answered_408".into(), timed_out as f64);
    report.figures.insert("answered_503_at_cap".into(), refused as f64);
    report.figures.insert("server_connections_refused".into(), refused_counted);
    report.figures.insert("admitted_slowest_close_s".into(), round_s(slowest_admitted));
    report.figures.insert("slowest_connect_s".into(), round_s(slowest_connect));
    report.figures.insert("attack_s".into(), round_s(took));
    report.figures.insert("rss_before_kib".into(), rss_before as f64);
    report.figures.insert("rss_peak_kib".into(), rss_peak as f64);
    report.notes.push(format!("endings: {}", attack::endings(&outcomes)));
    report.notes.push(format!(
        "one byte every {:?} after a head announcing {} bytes; the client gives up after {:?}",
        sizes.slow_every,
        thousands(attack::SLOW_BODY_BYTES as f64),
        sizes.slow_give_up
    ));
    report.target(
        "≥ 95 % of the connections closed by the server within 40 s",
        format!("{:.1} % ({} of {})", share * 100.0, thousands(in_time as f64), thousands(n as f64)),
        share >= CLOSED_SHARE,
    );
    probed.record(&mut report);
    report.figures.insert("rss_after_kib".into(), server.rss_kib()? as f64);
    finish(&mut server, &mut report);
    Ok(report)
}
