//! What the bench reads from the operating system: a process's CPU time and
//! resident memory from `/proc`, the machine's cores and memory, the file
//! descriptor limit, and the date. Linux only, as the bench is.

use std::time::{SystemTime, UNIX_EPOCH};

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User plus system CPU seconds a process has used so far (all its threads).
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or("/proc/<pid>/stat has no ')'")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime); `rest` starts at field 3.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or("/proc/<pid>/stat is too short");
    Ok((tick(11)? + tick(12)?) as f64 / clock_ticks())
}

/// The process's resident set (VmRSS) in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    status_kib(pid, "VmRSS:")
}

/// The process's peak resident set (VmHWM) in KiB, since it started or
/// since `reset_rss_peak`.
pub fn rss_peak_kib(pid: u32) -> Result<u64, String> {
    status_kib(pid, "VmHWM:")
}

/// Starts the process's VmHWM over from its current resident set
/// (`/proc/<pid>/clear_refs`, Linux 4.0+), so that a peak can be taken over
/// one phase. Needs the right to write there (the same user, or root).
pub fn reset_rss_peak(pid: u32) -> Result<(), String> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").map_err(|e| format!("resetting the peak RSS of {pid}: {e}"))
}

fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status has no {field}"))
}

/// CPU seconds the whole machine has spent so far, over all cores, from
/// `/proc/stat`: busy in processes (user, system, irq, steal), and in
/// softirq apart, because loopback TCP is mostly processed there and
/// charged to no process.
#[derive(Clone, Copy, Default)]
pub struct MachineCpu {
    pub busy: f64,
    pub softirq: f64,
}

impl MachineCpu {
    pub fn read() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return MachineCpu::default();
        };
        let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0) as f64 / clock_ticks();
        // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user/nice.
        MachineCpu { busy: field(0) + field(1) + field(2) + field(5) + field(7), softirq: field(6) }
    }

    pub fn since(self, earlier: MachineCpu) -> MachineCpu {
        MachineCpu { busy: self.busy - earlier.busy, softirq: self.softirq - earlier.softirq }
    }
}

/// CPU seconds used by this process (the load generator) so far.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// CPU seconds used so far by this process's children that have exited
/// and been waited for (e.g. `chatctl backup` runs; a running server is not
/// in it until it is reaped).
pub fn reaped_children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes only into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Raises this process's open-file limit to its hard limit, so that ten
/// thousand sockets fit; children (the servers) inherit it. Returns the
/// limit now in force.
pub fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: get/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// The machine the figures come from.
#[derive(serde::Serialize, Clone, Debug)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        Machine { cores, cpu_model, memory_gib: mem_kib as f64 / (1024.0 * 1024.0), kernel }
    }
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_from_days() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(super::civil_from_days(20_516), (2026, 3, 4));
    }
}
