//! `history-flood` (issue 9's first attack): a room of 1,000 messages of
//! 4,096 emoji each, and one user opening 100 sockets to it with `?since=0`
//! that never read. History frames are capped at 1 MiB and at most 8 are
//! built at once, and one address holds at most 64 connections: the
//! server's memory must stay well under 300 MB above where it was, and
//! `/healthz` keep answering within 1 s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::attack::{self, HealthProbe, RssWatch};
use super::{finish, single_node_capped, Sizes, PASSWORD, PUBLISHER};
use crate::bench::report::Report;
use crate::bench::server::DEFAULT_PER_ADDRESS_CAP;
use crate::bench::ws::{self, Seen};
use crate::bench::{http, sys, BoxError, Env};

const ROOM: &str = "flood";
/// U+1F600, four bytes of UTF-8: one emoji, one of a message's 4,096 characters.
const EMOJI: &str = "\u{1F600}";
/// Messages sent before their echoes are awaited while filling the room.
const FILL_WINDOW: usize = 32;
/// The bound on the server's growth.
const RSS_GROWTH_MAX_KIB: u64 = 300 * 1000 * 1000 / 1024;
/// Where every attacking socket comes from: one user, one address.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

pub(super) async fn history_flood_scenario(env: &Env, sizes: &Sizes) -> Result<Report, BoxError> {
    super::enough_open_files(sizes.flood_sockets)?;
    let mut server = single_node_capped(env, "history-flood", &[], DEFAULT_PER_ADDRESS_CAP).await?;
    let addr = server.addr;
    let cookie = http::session(addr, PUBLISHER, PASSWORD).await?;
    let text = EMOJI.repeat(sizes.flood_chars);
    let fill_started = Instant::now();
    fill_room(addr, &cookie, &text, sizes.flood_messages).await?;
    let fill_s = fill_started.elapsed().as_secs_f64();
    // The sign-in's and the fill's connections end before the attack, so
    // that all 64 places of the attacker's address are free.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pid = server.pid();
    let rss_before = server.rss_kib()?;
    sys::reset_rss_peak(pid)?;
    let cpu_before = server.cpu_seconds()?;
    let watch = RssWatch::start(pid, Duration::from_millis(50));
    let probe = HealthProbe::start(addr);
    let path = format!("/ws/chat/{ROOM}/?since=0");
    let mut set = JoinSet::new();
    for _ in 0..sizes.flood_sockets {
        let (path, cookie) = (path.clone(), cookie.clone());
        set.spawn(async move { open_unread(addr, &path, &cookie).await });
    }
    let mut held = Vec::new();
    let mut refused = std::collections::BTreeMap::<String, usize>::new();
    while let Some(joined) = set.join_next().await {
        match joined? {
            Ok(stream) => held.push(stream),
            Err(why) => *refused.entry(why).or_default() += 1,
        }
    }
    tokio::time::sleep(sizes.flood_hold).await;
    let open_at_end =
        http::metrics_from(addr, Some(attack::PROBE_SOURCE)).await?.get("websockets_open").copied().unwrap_or(0.0);
    let rss_held = server.rss_kib()?;
    let rss_peak = watch.finish().await.max(sys::rss_peak_kib(pid)?);
    let cpu = server.cpu_seconds()? - cpu_before;
    let accepted = held.len();
    drop(held);
    tokio::time::sleep(sizes.flood_settle).await;
    let probed = probe.finish().await;
    server.check_running()?;
    let rss_after = server.rss_kib()?;

    let mut report = Report::new("history-flood");
    let growth = rss_peak.saturating_sub(rss_before);
    let refused_total: usize = refused.values().sum();
    report.headline = format!(
        "RSS +{} at peak; {accepted} sockets opened, {refused_total} refused; /healthz max {:.0} ms",
        attack::mb(growth as f64),
        probed.max.as_secs_f64() * 1000.0
    );
    report.server_cpu_s = Some((cpu * 100.0).round() / 100.0);
    report.figures.insert("sockets_asked".into(), sizes.flood_sockets as f64);
    report.figures.insert("sockets_opened".into(), accepted as f64);
    report.figures.insert("sockets_refused".into(), refused_total as f64);
    report.figures.insert("server_websockets_open_at_end".into(), open_at_end);
    report.figures.insert("room_messages".into(), sizes.flood_messages as f64);
    report.figures.insert("room_fill_s".into(), (fill_s * 100.0).round() / 100.0);
    report.figures.insert("rss_before_kib".into(), rss_before as f64);
    report.figures.insert("rss_peak_kib".into(), rss_peak as f64);
    report.figures.insert("rss_growth_peak_kib".into(), growth as f64);
    report.figures.insert("rss_held_kib".into(), rss_held as f64);
    report.figures.insert("rss_after_close_kib".into(), rss_after as f64);
    for (why, count) in &refused {
        report.notes.push(format!("{count} socket(s) refused: {why}"));
    }
    report.notes.push(format!(
        "sockets held unread for {:?}, then closed; rss_after_close is {:?} later; the peak is VmHWM over the attack",
        sizes.flood_hold, sizes.flood_settle
    ));
    report.target(
        "RSS grows well under 300 MB",
        format!("+{} (peak {})", attack::mb(growth as f64), attack::mb(rss_peak as f64)),
        growth < RSS_GROWTH_MAX_KIB,
    );
    probed.record(&mut report);
    finish(&mut server, &mut report);
    Ok(report)
}

/// Stores `count` messages of `text` in `ROOM` through one socket, a
/// window at a time, each confirmed by its echo.
async fn fill_room(addr: SocketAddr, cookie: &str, text: &str, count: usize) -> Result<(), BoxError> {
    let mut socket = ws::open(addr, None, &super::room_path(ROOM), cookie).await?;
    let mut sent = 0;
    while sent < count {
        let batch = FILL_WINDOW.min(count - sent);
        for i in sent..sent + batch {
            socket.write_frame(ws::client_frame(text, &i.to_string())).await?;
        }
        let mut echoed = 0;
        while echoed < batch {
            let frame = tokio::time::timeout(Duration::from_secs(30), socket.read_frame())
                .await
                .map_err(|_| "filling the room: no echo within 30 s")??;
            match ws::classify(&frame.payload) {
                Seen::Message { client_id: Some(_), .. } => echoed += 1,
                Seen::Error { .. } => {
                    return Err(format!("filling the room: {}", String::from_utf8_lossy(&frame.payload)).into())
                }
                _ => {}
            }
        }
        sent += batch;
    }
    Ok(())
}

/// Opens a chat socket at `path` from `ATTACKER` and reads only the
/// upgrade answer's head: the history frame after it is never read. The
/// open TCP stream, or why the server would not have it.
async fn open_unread(addr: SocketAddr, path: &str, cookie: &str) -> Result<TcpStream, String> {
    let mut stream =
        crate::bench::http::connect_tcp(addr, Some(ATTACKER)).await.map_err(|e| format!("connect failed: {e}"))?;
    let key = fastwebsockets::handshake::generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: chatctl_session={cookie}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("writing the upgrade failed: {e}"))?;
    // Byte by byte up to the end of the head: not one byte of the frame after it.
    let mut head = Vec::new();
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            match stream.read_u8().await {
                Ok(byte) => head.push(byte),
                Err(_) => break,
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), read_head).await.is_err() {
        return Err("no upgrade answer within 30 s".to_owned());
    }
    let status_line = String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
    if status_line.starts_with("HTTP/1.1 101") {
        Ok(stream)
    } else if status_line.is_empty() {
        Err("closed before any answer".to_owned())
    } else {
        Err(status_line)
    }
}
