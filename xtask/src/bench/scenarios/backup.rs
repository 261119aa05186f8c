//! `backup`: the `latency` load on a server whose database already holds a
//! history, while `chatctl backup` copies it through the control socket,
//! again and again. It measures the claim that an online backup barely
//! touches chat latency; a failed backup fails the scenario.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    finish, into_rooms, latency_load, latency_rooms, layout, measure, measure_with, open_all, report_of, single_node,
    Load, Measured, Sizes, BACKUP_WITHIN, MIN_BACKUPS, PASSWORD, PUBLISHER, WINDOW,
};
use crate::bench::http;
use crate::bench::load::Shared;
use crate::bench::report::{thousands, Latency, Report, Status};
use crate::bench::server::Server;
use crate::bench::{BoxError, Env};

/// What the back-to-back backups came to.
#[derive(Default)]
struct Backups {
    ok: u64,
    each: Vec<Duration>,
    /// The largest backup file written.
    bytes: u64,
    /// The first failure; the runs stop there.
    error: Option<String>,
    /// CPU of the `chatctl backup` processes (the server's copying is in the server's CPU).
    client_cpu_s: f64,
}

pub(super) async fn backup_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    let mut server = single_node(env, "backup", &[]).await?;
    let fill = fill_history(&mut server, sizes).await?;
    let rooms = latency_rooms(&server, sizes).await?;
    let shared = Shared::new();
    let hold = Arc::new(AtomicBool::new(true));
    let backups = run_backups(env.binary.clone(), server.data_dir().to_path_buf(), shared.clone(), hold.clone(), sizes);
    let (mut measured, backups) =
        measure_with(&mut [&mut server], rooms, latency_load(sizes, Some(hold)), &shared, backups).await?;
    measured.held.clear(); // closes the sockets, now that the figures are taken

    let mut report = report_of("backup", &measured, backups.client_cpu_s);
    let m = &measured.integrity;
    let whole = report.latency.clone().unwrap_or_default();
    let during = Latency::of(&m.window_latency).unwrap_or_default();
    let outside = Latency::of(&m.latency.without(&m.window_latency)).unwrap_or_default();
    let mean_ms = if backups.each.is_empty() {
        0.0
    } else {
        backups.each.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / backups.each.len() as f64
    };
    report.headline = format!(
        "chat p99 {:.2} ms during {} backups (p99 {:.2} ms outside)",
        during.p99_ms, backups.ok, outside.p99_ms
    );
    report.figures.insert("backups".into(), backups.ok as f64);
    report.figures.insert("backup_mean_ms".into(), mean_ms.round());
    report.figures.insert("backup_bytes".into(), backups.bytes as f64);
    report.figures.insert("backup_client_cpu_s".into(), (backups.client_cpu_s * 100.0).round() / 100.0);
    report.figures.insert("chat_p99_during_ms".into(), during.p99_ms);
    report.figures.insert("chat_p999_during_ms".into(), during.p999_ms);
    report.figures.insert("chat_samples_during".into(), during.samples as f64);
    report.figures.insert("chat_p99_outside_ms".into(), outside.p99_ms);
    report.figures.insert("chat_p99_ms".into(), whole.p99_ms);
    report.figures.insert("history_messages".into(), fill.integrity.confirmed as f64);
    report.figures.insert("history_fill_s".into(), (fill.measured_s * 100.0).round() / 100.0);
    add_fill_integrity(&mut report, &fill);
    let tried = backups.ok + u64::from(backups.error.is_some());
    report.target(
        "every backup succeeded",
        format!("{} of {}", thousands(backups.ok as f64), thousands(tried as f64)),
        backups.error.is_none() && backups.ok > 0,
    );
    if let Some(error) = &backups.error {
        report.status = Status::Failed;
        report.notes.insert(0, format!("a backup failed: {error}"));
    } else if backups.ok == 0 {
        report.status = Status::Failed;
        report.notes.insert(0, "no backup ran".to_owned());
    }
    finish(&mut server, &mut report);
    Ok(report)
}

/// Stores `backup_history` messages through rooms of one flat-out
/// publisher each (`durable`'s shape), in rooms of their own: the history
/// is what the backups copy, and the `latency` rooms start empty as they do
/// in `latency`.
async fn fill_history(server: &mut Server, sizes: &Sizes) -> Result<Measured, BoxError> {
    let addr = server.addr;
    let cookie: Arc<str> = http::session(addr, PUBLISHER, PASSWORD).await?.into();
    let nodes = [(addr, cookie.clone(), cookie)];
    let publishers = sizes.backup_fill_publishers;
    let specs = layout(publishers, 1, "history", &nodes, |_, _| 0);
    let (sockets, _) = open_all(specs, "history").await?;
    let load = Load {
        window: WINDOW,
        rate_per_s: None,
        run: sizes.backup_fill_max,
        max_messages: sizes.backup_history.div_ceil(publishers) as u64,
        hold: None,
        hold_max: Duration::ZERO,
        drain: sizes.drain,
    };
    let (mut measured, ()) = measure(&mut [&mut *server], into_rooms(sockets, 1), load, async {}).await?;
    measured.held.clear();
    Ok(measured)
}

/// The fill's lost, duplicated or reordered messages fail the run as the measured phase's do.
fn add_fill_integrity(report: &mut Report, fill: &Measured) {
    let f = &fill.integrity;
    report.lost += f.lost;
    report.duplicates += f.duplicates;
    report.reordered += f.reordered;
    if f.lost + f.duplicates + f.reordered > 0 {
        report.notes.push(format!(
            "filling the history: {} lost, {} duplicated, {} reordered",
            f.lost, f.duplicates, f.reordered
        ));
    }
    if let Some(summary) = f.unfinished_summary() {
        report.notes.push(format!("filling the history: {summary}"));
    }
}

/// Waits `backup_after`, opens the window, runs backups back to back for
/// `backup_for` (and at least `MIN_BACKUPS`), then closes the window and
/// lets the publishers stop.
async fn run_backups(
    binary: PathBuf,
    data_dir: PathBuf,
    shared: Arc<Shared>,
    hold: Arc<AtomicBool>,
    sizes: &Sizes,
) -> Backups {
    let (after, run_for, hold_max) = (sizes.backup_after, sizes.backup_for, sizes.hold_max);
    tokio::time::sleep(after).await;
    let mut backups = Backups::default();
    let dir = match tempfile::Builder::new().prefix("chatctl-bench-backup-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            backups.error = Some(format!("creating a temp dir for the backups: {e}"));
            hold.store(false, Ordering::Relaxed);
            return backups;
        }
    };
    let cpu_before = crate::bench::sys::reaped_children_cpu_seconds();
    shared.open_window();
    let started = Instant::now();
    // Past `hold_max` the publishers stop anyway: no backup is measured under load then.
    while started.elapsed() < run_for || (backups.each.len() < MIN_BACKUPS && started.elapsed() < hold_max) {
        let to = dir.path().join(format!("backup-{}.redb", backups.each.len()));
        let t = Instant::now();
        let (binary, data_dir, to_owned) = (binary.clone(), data_dir.clone(), to.clone());
        let outcome = tokio::task::spawn_blocking(move || one_backup(&binary, &data_dir, &to_owned))
            .await
            .unwrap_or_else(|e| Err(format!("the backup task failed: {e}")));
        match outcome {
            Ok(bytes) => {
                backups.each.push(t.elapsed());
                backups.ok += 1;
                backups.bytes = backups.bytes.max(bytes);
                let _ = std::fs::remove_file(&to);
            }
            Err(error) => {
                backups.error = Some(error);
                break;
            }
        }
    }
    shared.close_window();
    hold.store(false, Ordering::Relaxed);
    backups.client_cpu_s = crate::bench::sys::reaped_children_cpu_seconds() - cpu_before;
    backups
}

/// Runs `chatctl backup` once; the size of the file it wrote.
fn one_backup(binary: &Path, data_dir: &Path, to: &Path) -> Result<u64, String> {
    let mut child = Command::new(binary)
        .arg("backup")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--to")
        .arg(to)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {} backup: {e}", binary.display()))?;
    let deadline = Instant::now() + BACKUP_WITHIN;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("chatctl backup did not finish within {BACKUP_WITHIN:?}"));
            }
            Err(e) => return Err(format!("waiting for chatctl backup: {e}")),
        }
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        return Err(format!("chatctl backup exited with {status}: {}", stderr.trim()));
    }
    match std::fs::metadata(to) {
        Ok(meta) if meta.len() > 0 => Ok(meta.len()),
        Ok(_) => Err(format!("chatctl backup exited 0 but {} is empty", to.display())),
        Err(e) => Err(format!("chatctl backup exited 0 but {} cannot be read: {e}", to.display())),
    }
}
