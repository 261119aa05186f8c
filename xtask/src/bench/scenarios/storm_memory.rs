//! `storm-memory` (issue 9's memory item): rounds of thousands of slow-body
//! connections (`slow-bodies`' client), spread over enough addresses that
//! the per-address cap admits them all, each round ended by the server's
//! 30 s body deadline. It reports the server's resident memory after each
//! round and a while after the last: memory the storm took should go back
//! to the operating system, not stay with the process.

use std::time::Duration;

use super::attack::{self, Ending, HealthProbe, RssWatch};
use super::{finish, single_node_capped, Sizes};
use crate::bench::report::{thousands, Report};
use crate::bench::server::DEFAULT_PER_ADDRESS_CAP;
use crate::bench::{BoxError, Env};

/// Connections per source address: under the cap, so every one is admitted.
const PER_ADDRESS: usize = 60;
/// Connects in flight at once.
const OPENING: usize = 512;
/// The target: after the settle, RSS holds at most this share of what the
/// storm added at its peak.
const KEPT_SHARE_MAX: f64 = 0.25;

pub(super) async fn storm_memory_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    let n = sizes.memory_connections;
    super::enough_open_files(n)?;
    let mut server = single_node_capped(env, "storm-memory", &[], DEFAULT_PER_ADDRESS_CAP).await?;
    let addr = server.addr;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_start = server.rss_kib()?;
    let cpu_before = server.cpu_seconds()?;
    let watch = RssWatch::start(server.pid(), Duration::from_millis(100));
    let probe = HealthProbe::start(addr);
    let mut report = Report::new("storm-memory");
    let mut after_rounds = Vec::new();
    let mut admitted_all = true;
    for round in 1..=sizes.memory_rounds {
        let outcomes = attack::slow_bodies(addr, n, PER_ADDRESS, sizes.slow_every, sizes.slow_give_up, OPENING).await;
        // The server closes with the 408 just before it frees the connection.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = server.rss_kib()?;
        after_rounds.push(rss);
        // A 408 can be lost to the reset that follows it (a byte of ours
        // arrived after the close): only a 503 or no connection was refused.
        admitted_all &= !outcomes.iter().any(|o| matches!(o.ending, Ending::Status(503) | Ending::NoConnection));
        report.figures.insert(format!("rss_after_round_{round}_kib"), rss as f64);
        report.notes.push(format!(
            "round {round}: RSS {} after; endings {}",
            attack::mb(rss as f64),
            attack::endings(&outcomes)
        ));
    }
    tokio::time::sleep(sizes.memory_settle).await;
    let rss_settled = server.rss_kib()?;
    let probed = probe.finish().await;
    let rss_peak = watch.finish().await;
    let cpu = server.cpu_seconds()? - cpu_before;
    server.check_running()?;

    let added = rss_peak.saturating_sub(rss_start) as f64;
    let kept = rss_settled.saturating_sub(rss_start) as f64;
    let kept_share = if added > 0.0 { kept / added } else { 0.0 };
    let rounds: Vec<String> = after_rounds.iter().map(|kib| attack::mb(*kib as f64)).collect();
    report.headline = format!(
        "RSS {} → {} after the rounds → {} {} s later (peak {})",
        attack::mb(rss_start as f64),
        rounds.join(", "),
        attack::mb(rss_settled as f64),
        sizes.memory_settle.as_secs(),
        attack::mb(rss_peak as f64)
    );
    report.server_cpu_s = Some((cpu * 100.0).round() / 100.0);
    report.figures.insert("connections_per_round".into(), n as f64);
    report.figures.insert("rounds".into(), sizes.memory_rounds as f64);
    report.figures.insert("rss_start_kib".into(), rss_start as f64);
    report.figures.insert("rss_peak_kib".into(), rss_peak as f64);
    report.figures.insert("rss_settled_kib".into(), rss_settled as f64);
    report.figures.insert("rss_kept_share".into(), (kept_share * 1000.0).round() / 1000.0);
    if !admitted_all {
        report.notes.push("not every connection was admitted: see the endings".to_owned());
    }
    report.notes.push(format!(
        "{} connections per round from {} addresses ({PER_ADDRESS} each), one byte every {:?}; RSS settled {:?} after the last round",
        thousands(n as f64),
        n.div_ceil(PER_ADDRESS),
        sizes.slow_every,
        sizes.memory_settle
    ));
    report.target(
        "RSS after the settle keeps ≤ 25 % of what the storm added",
        format!("{:.0} % ({} of {})", kept_share * 100.0, attack::mb(kept), attack::mb(added)),
        kept_share <= KEPT_SHARE_MAX,
    );
    probed.record(&mut report);
    finish(&mut server, &mut report);
    Ok(report)
}
