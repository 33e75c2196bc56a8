//! CPU and memory of processes, from the kernel's accounting in /proc (not from the load generator).

use std::time::Instant;

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after the last ')' start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Proportional set size (shared pages divided among the processes sharing them), in KiB.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when that is unavailable).
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Busy clock ticks of the whole machine (all cores): everything but idle and iowait, from the
/// first line of /proc/stat.
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal (guest is inside user)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = f.get(3)? + f.get(4)?;
    Some(f.iter().sum::<u64>() - idle)
}

/// A CPU sample of a set of processes, of this process (the load generator) and of the whole
/// machine, to take differences over a window.
pub struct CpuSample {
    ticks: u64,
    own: u64,
    machine: u64,
    at: Instant,
}

/// CPU % over a window (100 = one core fully busy).
pub struct CpuUse {
    /// The measured processes.
    pub measured: f64,
    /// This process: publishers and HTTP clients.
    pub bench: f64,
    /// Everything else on the machine (other users' work disturbs the figures).
    pub other: f64,
}

impl CpuSample {
    pub fn take(pids: &[u32]) -> CpuSample {
        CpuSample {
            ticks: pids.iter().filter_map(|&p| cpu_ticks(p)).sum(),
            own: cpu_ticks(std::process::id()).unwrap_or(0),
            machine: machine_busy_ticks().unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// CPU use between `self` and now.
    pub fn since(&self, pids: &[u32], tck: f64) -> CpuUse {
        let now = CpuSample::take(pids);
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let pct = |a: u64, b: u64| a.saturating_sub(b) as f64 / tck / secs * 100.0;
        let measured = pct(now.ticks, self.ticks);
        let bench = pct(now.own, self.own);
        let machine = pct(now.machine, self.machine);
        CpuUse {
            measured,
            bench,
            other: (machine - measured - bench).max(0.0),
        }
    }
}

/// Summed PSS of a set of processes, in MiB.
pub fn pss_mib(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| pss_kib(p)).sum::<u64>() as f64 / 1024.0
}
