//! The `local` source: node-level USE of the host the agent runs on, read from `/proc` (and
//! `statvfs` for the root filesystem). Used on a laptop, in docker-compose, and wherever no
//! kubelet is configured.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Ticks per second of the CPU times in `/proc/stat` (`USER_HZ`, 100 on every Linux ABI the
/// agent targets).
const USER_HZ: f64 = 100.0;

/// One reading of the host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostReading {
    /// CPU time spent busy (all but idle and iowait), seconds, summed over CPUs.
    pub cpu_busy_seconds: f64,
    /// Online CPUs.
    pub cpu_cores: f64,
    /// Memory in use (total minus available), bytes.
    pub memory_used_bytes: f64,
    /// Physical memory, bytes.
    pub memory_total_bytes: f64,
    /// CPU pressure stall totals in seconds (`some`, `full`), when the kernel has PSI.
    pub cpu_pressure: Option<(f64, Option<f64>)>,
    /// Memory pressure stall totals in seconds (`some`, `full`).
    pub memory_pressure: Option<(f64, Option<f64>)>,
    /// Receive errors over all interfaces but loopback.
    pub network_receive_errors: f64,
    /// Transmit errors over all interfaces but loopback.
    pub network_transmit_errors: f64,
    /// Used share of the root filesystem (0..1).
    pub root_fs_used_ratio: Option<f64>,
}

/// Errors reading the host.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file did not have the expected shape.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads the host, keeping the previous CPU reading to compute utilization.
#[derive(Debug)]
pub struct LocalSource {
    proc_root: PathBuf,
    fs_root: PathBuf,
    previous: Option<(Instant, f64)>,
}

impl Default for LocalSource {
    fn default() -> Self {
        LocalSource::new("/proc", "/")
    }
}

impl LocalSource {
    /// A source reading `proc_root` (normally `/proc`) and the filesystem mounted at `fs_root`.
    pub fn new(proc_root: impl Into<PathBuf>, fs_root: impl Into<PathBuf>) -> Self {
        LocalSource {
            proc_root: proc_root.into(),
            fs_root: fs_root.into(),
            previous: None,
        }
    }

    /// Takes one reading; returns it with the CPU utilization since the previous reading (absent
    /// on the first one).
    pub fn read(&mut self) -> Result<(HostReading, Option<f64>), LocalError> {
        let stat = self.read_file("stat")?;
        let (cpu_busy_seconds, cpu_cores) = parse_stat(&stat).ok_or_else(|| LocalError::Parse {
            path: self.proc_root.join("stat"),
            message: "no aggregate `cpu` line".into(),
        })?;
        let meminfo = self.read_file("meminfo")?;
        let (memory_total_bytes, memory_available_bytes) =
            parse_meminfo(&meminfo).ok_or_else(|| LocalError::Parse {
                path: self.proc_root.join("meminfo"),
                message: "MemTotal or MemAvailable missing".into(),
            })?;
        let netdev = self.read_file("net/dev")?;
        let (network_receive_errors, network_transmit_errors) = parse_net_dev(&netdev);
        // PSI files are absent on kernels without CONFIG_PSI or booted with psi=0.
        let cpu_pressure = self
            .read_file("pressure/cpu")
            .ok()
            .and_then(|t| parse_psi(&t));
        let memory_pressure = self
            .read_file("pressure/memory")
            .ok()
            .and_then(|t| parse_psi(&t));
        let root_fs_used_ratio = rustix::fs::statvfs(&self.fs_root).ok().and_then(|s| {
            let total = s.f_blocks as f64 * s.f_frsize as f64;
            let free = s.f_bfree as f64 * s.f_frsize as f64;
            (total > 0.0).then(|| (total - free) / total)
        });

        let now = Instant::now();
        let utilization = self.previous.and_then(|(then, busy)| {
            let elapsed = now.duration_since(then).as_secs_f64();
            (elapsed > 0.0 && cpu_cores > 0.0)
                .then(|| ((cpu_busy_seconds - busy) / elapsed / cpu_cores).clamp(0.0, 1.0))
        });
        self.previous = Some((now, cpu_busy_seconds));

        Ok((
            HostReading {
                cpu_busy_seconds,
                cpu_cores,
                memory_used_bytes: memory_total_bytes - memory_available_bytes,
                memory_total_bytes,
                cpu_pressure,
                memory_pressure,
                network_receive_errors,
                network_transmit_errors,
                root_fs_used_ratio,
            },
            utilization,
        ))
    }

    fn read_file(&self, name: &str) -> Result<String, LocalError> {
        let path = self.proc_root.join(name);
        std::fs::read_to_string(&path).map_err(|source| LocalError::Read { path, source })
    }

    /// The `/proc` directory this source reads.
    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }
}

/// Busy CPU seconds (everything but idle and iowait) and the number of CPUs, from `/proc/stat`.
fn parse_stat(text: &str) -> Option<(f64, f64)> {
    let mut busy = None;
    let mut cores = 0usize;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
                if ticks.len() < 4 {
                    return None;
                }
                // user nice system idle iowait irq softirq steal (guest time is already in user).
                let total: f64 = ticks.iter().take(8).sum();
                let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0.0);
                busy = Some((total - idle) / USER_HZ);
            }
            Some(name) if name.starts_with("cpu") => cores += 1,
            _ => {}
        }
    }
    busy.map(|b| (b, cores as f64))
}

/// `MemTotal` and `MemAvailable` in bytes, from `/proc/meminfo`.
fn parse_meminfo(text: &str) -> Option<(f64, f64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: f64 = rest.split_ascii_whitespace().next()?.parse().ok()?;
            Some(kib * 1024.0)
        })
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// Receive and transmit error totals over all interfaces but `lo`, from `/proc/net/dev`.
fn parse_net_dev(text: &str) -> (f64, f64) {
    let mut rx = 0.0;
    let mut tx = 0.0;
    for line in text.lines().skip(2) {
        let Some((iface, counters)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let fields: Vec<f64> = counters
            .split_ascii_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if fields.len() >= 11 {
            rx += fields[2];
            tx += fields[10];
        }
    }
    (rx, tx)
}

/// `some` and `full` stall totals in seconds from a `/proc/pressure/*` file, whose `total=` is
/// in microseconds.
fn parse_psi(text: &str) -> Option<(f64, Option<f64>)> {
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))?
            .split_ascii_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse::<f64>()
            .ok()
            .map(|us| us / 1e6)
    };
    Some((total("some")?, total("full")))
}

/// The node-level snapshot of one host reading (the local source has no pods).
pub fn snapshot(
    node: &str,
    reading: &HostReading,
    utilization: Option<f64>,
) -> super::use_series::UseSnapshot {
    use super::use_series::{NodeFs, NodeFsUse, NodeUse, Psi, UseSnapshot};
    let psi = |p: Option<(f64, Option<f64>)>| {
        p.map(|(some, full)| Psi {
            some_seconds_total: some,
            full_seconds_total: full,
        })
    };
    let memory_utilization = (reading.memory_total_bytes > 0.0)
        .then(|| reading.memory_used_bytes / reading.memory_total_bytes);
    UseSnapshot {
        node: node.to_string(),
        node_use: NodeUse {
            cpu_usage_seconds_total: Some(reading.cpu_busy_seconds),
            cpu_usage_cores: utilization.map(|u| u * reading.cpu_cores),
            cpu_capacity_cores: Some(reading.cpu_cores),
            cpu_utilization_ratio: utilization,
            memory_working_set_bytes: Some(reading.memory_used_bytes),
            memory_capacity_bytes: Some(reading.memory_total_bytes),
            memory_utilization_ratio: memory_utilization,
            cpu_pressure: psi(reading.cpu_pressure),
            memory_pressure: psi(reading.memory_pressure),
            network_receive_errors_total: Some(reading.network_receive_errors),
            network_transmit_errors_total: Some(reading.network_transmit_errors),
            filesystems: reading
                .root_fs_used_ratio
                .map(|ratio| NodeFsUse {
                    fs: NodeFs::Root,
                    used_bytes: None,
                    capacity_bytes: None,
                    used_ratio: Some(ratio),
                })
                .into_iter()
                .collect(),
            ..NodeUse::default()
        },
        ..UseSnapshot::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_cpu_time_excludes_idle_and_iowait() {
        let stat = "cpu  100 20 30 400 50 5 5 10 0 0\ncpu0 50 10 15 200 25 2 3 5 0 0\ncpu1 50 10 15 200 25 3 2 5 0 0\nintr 1\n";
        let (busy, cores) = parse_stat(stat).unwrap();
        assert_eq!(cores, 2.0);
        assert!((busy - 1.70).abs() < 1e-9, "{busy}");
    }

    #[test]
    fn psi_totals_are_microseconds() {
        let psi = "some avg10=1.00 avg60=0.50 avg300=0.10 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n";
        assert_eq!(parse_psi(psi), Some((2.5, Some(0.001))));
        // The CPU file of older kernels has no `full` line.
        assert_eq!(
            parse_psi("some avg10=0 avg60=0 avg300=0 total=7\n"),
            Some((7e-6, None))
        );
    }

    #[test]
    fn loopback_errors_are_not_counted() {
        let dev = "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 1 1 9 0 0 0 0 0 1 1 9 0 0 0 0 0\n  eth0: 100 10 3 0 0 0 0 0 200 20 4 0 0 0 0 0\n  eth1: 100 10 1 0 0 0 0 0 200 20 1 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev), (4.0, 5.0));
    }

    #[test]
    fn the_real_host_reading_matches_proc_meminfo() {
        let mut source = LocalSource::default();
        let (reading, utilization) = source.read().unwrap();
        assert!(
            utilization.is_none(),
            "no utilization before a second reading"
        );
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert_eq!(reading.memory_total_bytes, total_kib * 1024.0);
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        assert_eq!(reading.cpu_cores, cpus as f64);
        let ratio = reading.root_fs_used_ratio.unwrap();
        assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (_, utilization) = source.read().unwrap();
        let u = utilization.unwrap();
        assert!((0.0..=1.0).contains(&u), "{u}");
    }
}
