//! The few cAdvisor series kubesignal needs from the kubelet's `/metrics/cadvisor`: machine
//! capacity, CFS throttling and OOM events per container.
//!
//! Series with `container=""` are the pod cgroup and the pause sandbox, and `container="POD"`
//! is the sandbox on Docker-era kubelets: neither is a container of the pod spec, so they are
//! skipped. Kubelets before 1.16 name the labels `pod_name` and `container_name`. Sample
//! timestamps only decide between two cgroups of one container (an old run not yet cleaned up
//! and the new one): the newer sample wins.

use std::collections::HashMap;

use crate::exposition::{Entry, Format, Parser, Sample};

use super::PayloadError;

const MACHINE_CPU_CORES: &str = "machine_cpu_cores";
const MACHINE_MEMORY_BYTES: &str = "machine_memory_bytes";
const CFS_PERIODS: &str = "container_cpu_cfs_periods_total";
const CFS_THROTTLED_PERIODS: &str = "container_cpu_cfs_throttled_periods_total";
const OOM_EVENTS: &str = "container_oom_events_total";

fn wanted(name: &str) -> bool {
    matches!(
        name,
        MACHINE_CPU_CORES | MACHINE_MEMORY_BYTES | CFS_PERIODS | CFS_THROTTLED_PERIODS | OOM_EVENTS
    )
}

/// The first non-empty value among `names`.
fn label<'s>(sample: &'s Sample<'_>, names: &[&str]) -> Option<&'s str> {
    names
        .iter()
        .filter_map(|n| sample.label(n))
        .find(|v| !v.is_empty())
}

/// Reads a `/metrics/cadvisor` body (Prometheus text format) piece by piece as it arrives, so
/// the body, often over 10 MB on a busy node, never has to be held whole.
///
/// ```
/// # use kubesignal::agent::kubelet::cadvisor::CadvisorReader;
/// let mut reader = CadvisorReader::new();
/// reader.feed(b"machine_cpu_cores 1").unwrap();
/// reader.feed(b"6\nmachine_memory_bytes 2048\n").unwrap();
/// let stats = reader.finish().unwrap();
/// assert_eq!(stats.machine_cpu_cores, Some(16.0));
/// ```
#[derive(Debug, Default)]
pub struct CadvisorReader {
    acc: Accumulator,
    /// The start of a line whose end has not arrived yet.
    pending: Vec<u8>,
    /// Lines parsed so far, to number errors from the start of the body.
    lines_done: usize,
}

impl CadvisorReader {
    /// A reader at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the complete lines of `chunk` (with what is pending from earlier chunks) and keeps
    /// the incomplete last line for the next call. Chunks may be split anywhere.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), PayloadError> {
        let Some(first_newline) = memchr::memchr(b'\n', chunk) else {
            self.pending.extend_from_slice(chunk);
            return Ok(());
        };
        let mut start = 0;
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(&chunk[..=first_newline]);
            let line = std::mem::take(&mut self.pending);
            self.parse_piece(&line)?;
            start = first_newline + 1;
        }
        let last_newline = memchr::memrchr(b'\n', chunk).unwrap_or(first_newline);
        if start <= last_newline {
            self.parse_piece(&chunk[start..=last_newline])?;
        }
        self.pending.extend_from_slice(&chunk[last_newline + 1..]);
        Ok(())
    }

    /// Parses what is left (a last line without a newline) and returns the result.
    pub fn finish(mut self) -> Result<CadvisorStats, PayloadError> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.parse_piece(&last)?;
        }
        Ok(self.acc.stats)
    }

    fn parse_piece(&mut self, piece: &[u8]) -> Result<(), PayloadError> {
        let text = std::str::from_utf8(piece).map_err(|e| {
            let line =
                self.lines_done + memchr::memchr_iter(b'\n', &piece[..e.valid_up_to()]).count() + 1;
            PayloadError::Cadvisor(format!("line {line}: the text is not valid UTF-8"))
        })?;
        self.acc
            .parse(text, Format::PrometheusText, self.lines_done)?;
        self.lines_done += memchr::memchr_iter(b'\n', piece).count();
        Ok(())
    }
}

/// Collects the wanted samples of one body.
#[derive(Debug, Default)]
struct Accumulator {
    stats: CadvisorStats,
    /// Timestamp of the kept sample per container and family, to prefer the newest cgroup.
    kept_at: HashMap<(String, u8), Option<i64>>,
}

impl Accumulator {
    /// Parses complete lines; `lines_before` numbers errors from the start of the body.
    fn parse(
        &mut self,
        text: &str,
        format: Format,
        lines_before: usize,
    ) -> Result<(), PayloadError> {
        for entry in Parser::new(text, format).with_name_filter(wanted) {
            match entry {
                Ok(Entry::Sample(sample)) => self.add(&sample),
                Ok(_) => {}
                Err(e) => {
                    return Err(PayloadError::Cadvisor(format!(
                        "line {}: {}",
                        lines_before + e.line,
                        e.message
                    )));
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, sample: &Sample<'_>) {
        let stats = &mut self.stats;
        let family: u8 = match sample.name.as_ref() {
            MACHINE_CPU_CORES => {
                stats.machine_cpu_cores.get_or_insert(sample.value);
                return;
            }
            MACHINE_MEMORY_BYTES => {
                stats.machine_memory_bytes.get_or_insert(sample.value);
                return;
            }
            CFS_PERIODS => 0,
            CFS_THROTTLED_PERIODS => 1,
            OOM_EVENTS => 2,
            _ => return,
        };
        let (Some(namespace), Some(pod), Some(container)) = (
            label(sample, &["namespace"]),
            label(sample, &["pod", "pod_name"]),
            label(sample, &["container", "container_name"]),
        ) else {
            return;
        };
        if container == "POD" {
            return;
        }
        let k = key(namespace, pod, container);
        if let Some(&kept) = self.kept_at.get(&(k.clone(), family))
            && sample.timestamp_ms < kept
        {
            return;
        }
        self.kept_at
            .insert((k.clone(), family), sample.timestamp_ms);
        let counters = stats.containers.entry(k).or_default();
        let slot = match family {
            0 => &mut counters.cfs_periods_total,
            1 => &mut counters.cfs_throttled_periods_total,
            _ => &mut counters.oom_events_total,
        };
        *slot = Some(sample.value);
    }
}

/// Counters of one container from cAdvisor.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ContainerCounters {
    /// `container_cpu_cfs_periods_total`.
    pub cfs_periods_total: Option<f64>,
    /// `container_cpu_cfs_throttled_periods_total`.
    pub cfs_throttled_periods_total: Option<f64>,
    /// `container_oom_events_total`.
    pub oom_events_total: Option<f64>,
}

/// What kubesignal takes from one `/metrics/cadvisor` response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CadvisorStats {
    /// `machine_cpu_cores`.
    pub machine_cpu_cores: Option<f64>,
    /// `machine_memory_bytes`.
    pub machine_memory_bytes: Option<f64>,
    /// Counters by `namespace/pod/container` (none of the three can contain a `/`).
    containers: HashMap<String, ContainerCounters>,
}

fn key(namespace: &str, pod: &str, container: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + pod.len() + container.len() + 2);
    k.push_str(namespace);
    k.push('/');
    k.push_str(pod);
    k.push('/');
    k.push_str(container);
    k
}

impl CadvisorStats {
    /// Reads a whole `/metrics/cadvisor` body in the Prometheus text format.
    pub fn from_text(text: &str) -> Result<Self, PayloadError> {
        Self::parse(text, Format::PrometheusText)
    }

    /// Reads a whole `/metrics/cadvisor` body in the given format. Only the families kubesignal
    /// uses are parsed in full; a malformed line among them fails the body with its line number.
    pub fn parse(text: &str, format: Format) -> Result<Self, PayloadError> {
        let mut acc = Accumulator::default();
        acc.parse(text, format, 0)?;
        Ok(acc.stats)
    }

    /// The counters of one container, if cAdvisor reported any.
    pub fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Option<&ContainerCounters> {
        self.containers.get(&key(namespace, pod, container))
    }

    /// The counters of one container, created empty on first use.
    pub fn container_mut(
        &mut self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> &mut ContainerCounters {
        self.containers
            .entry(key(namespace, pod, container))
            .or_default()
    }

    /// Number of containers with counters.
    pub fn container_count(&self) -> usize {
        self.containers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = r#"# HELP machine_cpu_cores Number of logical CPU cores.
# TYPE machine_cpu_cores gauge
machine_cpu_cores{boot_id="b",machine_id="m",system_uuid="s"} 10
# TYPE machine_memory_bytes gauge
machine_memory_bytes{boot_id="b"} 1.6749006848e+10
# TYPE container_cpu_cfs_periods_total counter
container_cpu_cfs_periods_total{container="",id="/kubepods/burstable/pod1",namespace="shop",pod="web-1"} 258 1768329608204
container_cpu_cfs_periods_total{container="app",id="/kubepods/burstable/pod1/c1",namespace="shop",pod="web-1"} 313 1768329614292
# TYPE container_cpu_cfs_throttled_periods_total counter
container_cpu_cfs_throttled_periods_total{container="app",id="/kubepods/burstable/pod1/c1",namespace="shop",pod="web-1"} 12 1768329614292
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",id="/kubepods/burstable/pod1/c1",namespace="shop",pod="web-1"} 99 1768329614292
"#;

    #[test]
    fn capacity_and_container_counters_are_read_and_timestamps_ignored() {
        let s = CadvisorStats::from_text(CURRENT).unwrap();
        assert_eq!(s.machine_cpu_cores, Some(10.0));
        assert_eq!(s.machine_memory_bytes, Some(16_749_006_848.0));
        let c = s.container("shop", "web-1", "app").unwrap();
        assert_eq!(c.cfs_periods_total, Some(313.0));
        assert_eq!(c.cfs_throttled_periods_total, Some(12.0));
        assert_eq!(c.oom_events_total, None);
    }

    #[test]
    fn the_pod_cgroup_and_pause_series_are_not_containers() {
        let s = CadvisorStats::from_text(CURRENT).unwrap();
        assert_eq!(s.container_count(), 1);
        assert!(s.container("shop", "web-1", "").is_none());
        let legacy_pause =
            "container_oom_events_total{container_name=\"POD\",namespace=\"a\",pod_name=\"p\"} 1\n";
        assert_eq!(
            CadvisorStats::from_text(legacy_pause)
                .unwrap()
                .container_count(),
            0
        );
    }

    #[test]
    fn pre_1_16_pod_name_and_container_name_labels_are_understood() {
        let text = "# TYPE container_cpu_cfs_periods_total counter\n\
            container_cpu_cfs_periods_total{container_name=\"addon-resizer\",id=\"/kubepods/podf/3\",\
            namespace=\"kube-system\",pod_name=\"kube-state-metrics-57f4659995-6n2qq\"} 8495\n\
            container_cpu_cfs_periods_total{container_name=\"\",id=\"/kubepods/podf\",namespace=\"\",pod_name=\"\"} 19649\n";
        let s = CadvisorStats::from_text(text).unwrap();
        let c = s
            .container(
                "kube-system",
                "kube-state-metrics-57f4659995-6n2qq",
                "addon-resizer",
            )
            .unwrap();
        assert_eq!(c.cfs_periods_total, Some(8495.0));
        assert_eq!(s.container_count(), 1);
    }

    #[test]
    fn of_two_cgroups_of_one_container_the_newer_sample_wins() {
        let text = "container_oom_events_total{container=\"app\",id=\"/new\",namespace=\"a\",pod=\"p\"} 2 2000\n\
                    container_oom_events_total{container=\"app\",id=\"/old\",namespace=\"a\",pod=\"p\"} 5 1000\n";
        let s = CadvisorStats::from_text(text).unwrap();
        assert_eq!(
            s.container("a", "p", "app").unwrap().oom_events_total,
            Some(2.0)
        );
    }

    #[test]
    fn a_malformed_line_in_a_used_family_is_an_error_with_its_line() {
        let text = "machine_cpu_cores 4\ncontainer_oom_events_total{container=\"app\" 1\n";
        let err = CadvisorStats::from_text(text).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        // Families kubesignal does not read are skipped without validation.
        let other = "machine_cpu_cores 4\ncontainer_fs_reads_total{oops 1\n";
        assert_eq!(
            CadvisorStats::from_text(other).unwrap().machine_cpu_cores,
            Some(4.0)
        );
    }

    fn streamed(text: &str, chunk: usize) -> Result<CadvisorStats, PayloadError> {
        let mut reader = CadvisorReader::new();
        for piece in text.as_bytes().chunks(chunk) {
            reader.feed(piece)?;
        }
        reader.finish()
    }

    #[test]
    fn a_body_fed_in_pieces_of_any_size_reads_like_the_whole_body() {
        let whole = CadvisorStats::from_text(CURRENT).unwrap();
        for chunk in [1, 2, 7, 13, 64, 4096] {
            assert_eq!(
                streamed(CURRENT, chunk).unwrap(),
                whole,
                "chunks of {chunk}"
            );
        }
        let unterminated = CURRENT.trim_end();
        assert_eq!(streamed(unterminated, 5).unwrap(), whole);
    }

    #[test]
    fn errors_in_a_streamed_body_are_numbered_from_its_start() {
        let text = format!("{CURRENT}container_oom_events_total{{container=\"app\" 1\n");
        let bad_line = text.lines().count();
        for chunk in [3, 50, 100_000] {
            let err = streamed(&text, chunk).unwrap_err().to_string();
            assert!(
                err.contains(&format!("line {bad_line}:")),
                "chunks of {chunk}: {err}"
            );
        }
        let mut reader = CadvisorReader::new();
        reader.feed(b"machine_cpu_cores 4\n").unwrap();
        let err = reader
            .feed(b"machine_memory_bytes{a=\"\xff\"} 1\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("line 2: the text is not valid UTF-8"),
            "{err}"
        );
    }
}
