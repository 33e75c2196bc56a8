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

/// A CPU sample of a set of processes, to take a difference over a window.
pub struct CpuSample {
    ticks: u64,
    at: Instant,
}

impl CpuSample {
    pub fn take(pids: &[u32]) -> CpuSample {
        CpuSample {
            ticks: pids.iter().filter_map(|&p| cpu_ticks(p)).sum(),
            at: Instant::now(),
        }
    }

    /// CPU % (100 = one core fully busy) of the processes between `self` and now.
    pub fn percent_since(&self, pids: &[u32], tck: f64) -> f64 {
        let now = CpuSample::take(pids);
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        now.ticks.saturating_sub(self.ticks) as f64 / tck / secs * 100.0
    }
}

/// Summed PSS of a set of processes, in MiB.
pub fn pss_mib(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| pss_kib(p)).sum::<u64>() as f64 / 1024.0
}
