//! Host readings from `/proc` and `statvfs`: CPU (busy share between two
//! readings of `/proc/stat`), memory (`/proc/meminfo`), disk (the
//! filesystem holding a path), network counters (`/proc/net/dev`, every
//! interface, loopback included).

use std::path::Path;

/// One reading of the host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostReading {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub disk_percent: f64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// CPU time counters of `/proc/stat`'s `cpu` line: (busy, total) jiffies.
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is inside user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// `(MemTotal − MemAvailable) / MemTotal × 100`.
pub fn parse_memory(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| ((total - available) / total * 100.0).clamp(0.0, 100.0))
}

/// Bytes received and sent on every interface, from `/proc/net/dev`.
pub fn parse_net(dev: &str) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in dev.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() >= 9 {
            rx = rx.saturating_add(v[0]);
            tx = tx.saturating_add(v[8]);
        }
    }
    (rx, tx)
}

/// Used share of the filesystem holding `path`, as `df` computes it:
/// used / (used + available to users) × 100.
pub fn disk_percent(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized
    // out-parameter that statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as f64;
    let used = (st.f_blocks as f64 - st.f_bfree as f64) * frsize;
    let avail = st.f_bavail as f64 * frsize;
    (used + avail > 0.0).then(|| (used / (used + avail) * 100.0).clamp(0.0, 100.0))
}

/// The nearest existing ancestor of `path` (the data directory may not
/// exist yet), else `/`.
pub fn existing(path: &Path) -> &Path {
    let mut p = path;
    loop {
        if p.exists() {
            return p;
        }
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return Path::new("/"),
        }
    }
}

/// Reads the host; the CPU figure is the busy share since the previous
/// reading (since boot for the first one).
#[derive(Debug, Default)]
pub struct Meter {
    last_cpu: (u64, u64),
}

impl Meter {
    pub fn read(&mut self, disk: &Path) -> HostReading {
        let mut r = HostReading::default();
        if let Some((busy, total)) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_cpu(&s))
        {
            let (b0, t0) = self.last_cpu;
            let (db, dt) = (busy.saturating_sub(b0), total.saturating_sub(t0));
            if dt > 0 {
                r.cpu_percent = (db as f64 / dt as f64 * 100.0).clamp(0.0, 100.0);
            }
            self.last_cpu = (busy, total);
        }
        r.memory_percent = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| parse_memory(&s))
            .unwrap_or(0.0);
        r.disk_percent = disk_percent(existing(disk)).unwrap_or(0.0);
        let (rx, tx) = std::fs::read_to_string("/proc/net/dev")
            .map(|s| parse_net(&s))
            .unwrap_or((0, 0));
        r.net_rx_bytes = rx;
        r.net_tx_bytes = tx;
        r
    }
}

/// The host's name (for de-duplicating its network counters).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu(stat), Some((150, 1000)));
        let mem = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(parse_memory(mem), Some(75.0));
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n  eth0: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net(dev), (105, 207));
    }

    #[test]
    fn reads_this_host() {
        let mut m = Meter::default();
        let r = m.read(Path::new("/definitely/not/here"));
        assert!(r.memory_percent > 0.0 && r.memory_percent <= 100.0);
        assert!(r.disk_percent > 0.0 && r.disk_percent <= 100.0);
        assert!(r.net_rx_bytes > 0);
        assert!((0.0..=100.0).contains(&r.cpu_percent));
    }
}
