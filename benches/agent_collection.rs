//! One agent collection on a busy node: parse `/stats/summary`, `/pods` and `/metrics/cadvisor`,
//! join them and render the text exposition.
//!
//! The node has 110 pods and 300 containers, built by scaling the real Kubernetes 1.34 fixtures:
//! each fixture pod is replicated under new names and UIDs, and its container given one or two
//! siblings, consistently across the three payloads (cAdvisor lines are copied per new pod and
//! container, so the text keeps every family the kubelet sends).
//!
//! Two ways of reading the cAdvisor body are measured: whole (the body in one buffer) and
//! streamed (fed to [`CadvisorReader`] in 64 KiB pieces as they would arrive from the socket).
//!
//! Besides criterion's wall-clock statistics, it prints the thread CPU time per collection
//! (median and 90th percentile over 200 collections) and the peak RSS (VmHWM) of a fresh child
//! process that only reads the payloads from files and runs 50 collections, so the benchmark's
//! own set-up (building the scaled payloads) does not count.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use std::io::Read;

use kubesignal::agent::kubelet::cadvisor::{CadvisorReader, CadvisorStats};
use kubesignal::agent::kubelet::pods::PodList;
use kubesignal::agent::kubelet::summary::Summary;
use kubesignal::agent::render::{self, Format};
use kubesignal::agent::use_series::UseState;
use serde_json::Value;

const PODS: usize = 110;
const CONTAINERS: usize = 300;

struct Payloads {
    summary: Vec<u8>,
    pods: Vec<u8>,
    cadvisor: String,
}

fn fixtures_dir() -> std::path::PathBuf {
    std::env::var_os("KUBESIGNAL_FIXTURES")
        .map(Into::into)
        .unwrap_or_else(|| "/work/shared/fixtures".into())
}

fn read(relative: &str) -> String {
    let path = fixtures_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One scaled pod: which fixture pod it copies, its new name, and its containers as
/// (fixture container, new container name).
struct ScaledPod {
    template: String,
    name: String,
    uid: String,
    containers: Vec<(String, String)>,
}

fn build() -> Payloads {
    let summary: Value =
        serde_json::from_str(&read("kubelet-summary/nri-k8s-1_34-psi-summary.json")).unwrap();
    let pods: Value = serde_json::from_str(&read("kubelet-pods/nri-k8s-1_34-pods.json")).unwrap();
    let cadvisor = read("cadvisor/nri-k8s-1_34-cadvisor.prom");

    let templates = summary["pods"].as_array().unwrap();
    // 300 containers over 110 pods: 80 pods with three containers, 30 with two.
    let three = CONTAINERS - 2 * PODS;
    let copies: Vec<ScaledPod> = (0..PODS)
        .map(|i| {
            let t = &templates[i % templates.len()];
            let template = t["podRef"]["name"].as_str().unwrap().to_owned();
            let first = t["containers"][0]["name"].as_str().unwrap().to_owned();
            let count = if i < three { 3 } else { 2 };
            ScaledPod {
                name: format!("{template}-r{i}"),
                uid: format!("00000000-0000-4000-8000-{i:012}"),
                containers: (0..count)
                    .map(|k| {
                        let name = if k == 0 {
                            first.clone()
                        } else {
                            format!("{first}-{k}")
                        };
                        (first.clone(), name)
                    })
                    .collect(),
                template,
            }
        })
        .collect();

    let mut scaled_summary = summary.clone();
    scaled_summary["pods"] = copies
        .iter()
        .map(|c| {
            let mut p = templates
                .iter()
                .find(|t| t["podRef"]["name"] == c.template.as_str())
                .unwrap()
                .clone();
            p["podRef"]["name"] = c.name.clone().into();
            p["podRef"]["uid"] = c.uid.clone().into();
            let container = p["containers"][0].clone();
            p["containers"] = c
                .containers
                .iter()
                .map(|(_, name)| {
                    let mut x = container.clone();
                    x["name"] = name.clone().into();
                    x
                })
                .collect();
            p
        })
        .collect();

    let items = pods["items"].as_array().unwrap();
    let mut scaled_pods = pods.clone();
    scaled_pods["items"] = copies
        .iter()
        .map(|c| {
            let mut p = items
                .iter()
                .find(|p| p["metadata"]["name"] == c.template.as_str())
                .unwrap_or_else(|| panic!("{} is not in the pod list", c.template))
                .clone();
            p["metadata"]["name"] = c.name.clone().into();
            p["metadata"]["uid"] = c.uid.clone().into();
            let rename = |list: &mut Value| {
                let first = list[0].clone();
                *list = c
                    .containers
                    .iter()
                    .map(|(_, name)| {
                        let mut x = first.clone();
                        x["name"] = name.clone().into();
                        x
                    })
                    .collect();
            };
            rename(&mut p["spec"]["containers"]);
            rename(&mut p["status"]["containerStatuses"]);
            p
        })
        .collect();

    let mut scaled_cadvisor = String::with_capacity(cadvisor.len() * 12);
    for line in cadvisor.lines() {
        let copies_of_line: Vec<&ScaledPod> = copies
            .iter()
            .filter(|c| line.contains(&format!("pod=\"{}\"", c.template)))
            .collect();
        if line.starts_with('#') || copies_of_line.is_empty() {
            // Node-level series and series of fixture pods not replicated stay as they are.
            if line.starts_with('#') || !line.contains("pod=\"") || line.contains("pod=\"\"") {
                scaled_cadvisor.push_str(line);
                scaled_cadvisor.push('\n');
            }
            continue;
        }
        for c in copies_of_line {
            let renamed = line.replace(
                &format!("pod=\"{}\"", c.template),
                &format!("pod=\"{}\"", c.name),
            );
            let fixture_container = &c.containers[0].0;
            let container_label = format!("container=\"{fixture_container}\"");
            if renamed.contains(&container_label) {
                for (_, name) in &c.containers {
                    scaled_cadvisor.push_str(
                        &renamed.replace(&container_label, &format!("container=\"{name}\"")),
                    );
                    scaled_cadvisor.push('\n');
                }
            } else {
                scaled_cadvisor.push_str(&renamed);
                scaled_cadvisor.push('\n');
            }
        }
    }

    Payloads {
        summary: serde_json::to_vec(&scaled_summary).unwrap(),
        pods: serde_json::to_vec(&scaled_pods).unwrap(),
        cadvisor: scaled_cadvisor,
    }
}

/// Where the cAdvisor body comes from.
enum CadvisorBody<'a> {
    /// Already in memory as one buffer.
    Whole(&'a str),
    /// Read from this file in 64 KiB pieces, standing in for the response stream.
    Streamed(&'a std::path::Path),
}

const PIECE: usize = 64 * 1024;

/// One collection, as the agent's loop does it; returns the exposition.
fn collect(state: &mut UseState, summary: &[u8], pods: &[u8], cadvisor: CadvisorBody) -> String {
    let summary = Summary::from_json(summary).expect("summary");
    let pods = PodList::from_json(pods).expect("pods");
    let cadvisor = match cadvisor {
        CadvisorBody::Whole(text) => CadvisorStats::from_text(text).expect("cadvisor"),
        CadvisorBody::Streamed(path) => {
            let mut file = std::fs::File::open(path).expect("cadvisor file");
            let mut buf = vec![0; PIECE];
            let mut reader = CadvisorReader::new();
            loop {
                let n = file.read(&mut buf).expect("read cadvisor");
                if n == 0 {
                    break;
                }
                reader.feed(&buf[..n]).expect("cadvisor piece");
            }
            reader.finish().expect("cadvisor")
        }
    };
    let snapshot = state.join("", &summary, &pods, &cadvisor);
    render::render(snapshot, Format::PrometheusText).expect("render")
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

const PROBE_ENV: &str = "KUBESIGNAL_BENCH_RSS_PROBE";

/// Child-process mode: read the payload files in `dir`, run 50 collections, print VmHWM in KiB.
fn rss_probe(dir: &std::path::Path, streamed: bool) {
    let summary = std::fs::read(dir.join("summary.json")).unwrap();
    let pods = std::fs::read(dir.join("pods.json")).unwrap();
    let cadvisor_path = dir.join("cadvisor.prom");
    let whole = if streamed {
        String::new()
    } else {
        std::fs::read_to_string(&cadvisor_path).unwrap()
    };
    let mut state = UseState::new();
    for _ in 0..50 {
        let body = if streamed {
            CadvisorBody::Streamed(&cadvisor_path)
        } else {
            CadvisorBody::Whole(&whole)
        };
        black_box(collect(&mut state, &summary, &pods, body));
    }
    println!("{}", peak_rss_kib());
}

/// Peak RSS in MiB of a child running [`rss_probe`] on the payloads.
fn child_peak_rss(dir: &std::path::Path, streamed: bool) -> f64 {
    let mode = if streamed { "streamed" } else { "whole" };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(PROBE_ENV, format!("{mode}:{}", dir.display()))
        .output()
        .expect("run the RSS probe child");
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("VmHWM from the probe");
    kib / 1024.0
}

fn cpu_per_collection(mut run: impl FnMut()) -> (f64, f64) {
    let mut cpu: Vec<Duration> = (0..200)
        .map(|_| {
            let start = thread_cpu_time();
            run();
            thread_cpu_time() - start
        })
        .collect();
    cpu.sort();
    (
        cpu[cpu.len() / 2].as_secs_f64() * 1e3,
        cpu[cpu.len() * 9 / 10].as_secs_f64() * 1e3,
    )
}

fn main() {
    if let Some(probe) = std::env::var_os(PROBE_ENV) {
        let probe = probe.to_string_lossy().into_owned();
        let (mode, dir) = probe.split_once(':').expect("mode:dir");
        rss_probe(std::path::Path::new(dir), mode == "streamed");
        return;
    }
    let payloads = build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summary.json"), &payloads.summary).unwrap();
    std::fs::write(dir.path().join("pods.json"), &payloads.pods).unwrap();
    std::fs::write(dir.path().join("cadvisor.prom"), &payloads.cadvisor).unwrap();
    let cadvisor_path = dir.path().join("cadvisor.prom");
    let p = &payloads;

    let mut state = UseState::new();
    let first = collect(
        &mut state,
        &p.summary,
        &p.pods,
        CadvisorBody::Whole(&p.cadvisor),
    );
    let count = |prefix: &str| first.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        (
            count("kubesignal_pod_memory_working_set_bytes{"),
            count("kubesignal_container_memory_working_set_bytes{")
        ),
        (PODS, CONTAINERS),
        "scaled node shape"
    );
    assert_eq!(
        first,
        collect(
            &mut UseState::new(),
            &p.summary,
            &p.pods,
            CadvisorBody::Streamed(&cadvisor_path)
        ),
        "streamed and whole cAdvisor reading agree"
    );
    println!(
        "scaled node: {PODS} pods, {CONTAINERS} containers; summary {} KiB, pods {} KiB, cAdvisor {} KiB \
         ({} lines); exposition {} KiB ({} samples)",
        p.summary.len() / 1024,
        p.pods.len() / 1024,
        p.cadvisor.len() / 1024,
        p.cadvisor.lines().count(),
        first.len() / 1024,
        first.lines().filter(|l| !l.starts_with('#')).count(),
    );

    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    criterion.bench_function("agent_collection_whole_cadvisor", |b| {
        b.iter(|| {
            black_box(collect(
                &mut state,
                &p.summary,
                &p.pods,
                CadvisorBody::Whole(&p.cadvisor),
            ))
        })
    });
    criterion.bench_function("agent_collection_streamed_cadvisor", |b| {
        b.iter(|| {
            black_box(collect(
                &mut state,
                &p.summary,
                &p.pods,
                CadvisorBody::Streamed(&cadvisor_path),
            ))
        })
    });
    criterion.final_summary();

    // Where the CPU goes, stage by stage (whole cAdvisor body).
    let summary = Summary::from_json(&p.summary).unwrap();
    let pods = PodList::from_json(&p.pods).unwrap();
    let cadvisor = CadvisorStats::from_text(&p.cadvisor).unwrap();
    let snapshot = state.join("", &summary, &pods, &cadvisor);
    let stages: [(&str, &mut dyn FnMut()); 5] = [
        ("parse /stats/summary", &mut || {
            drop(black_box(Summary::from_json(&p.summary)))
        }),
        ("parse /pods", &mut || {
            drop(black_box(PodList::from_json(&p.pods)))
        }),
        ("parse /metrics/cadvisor", &mut || {
            drop(black_box(CadvisorStats::from_text(&p.cadvisor)))
        }),
        ("join", &mut || {
            drop(black_box(state.join("", &summary, &pods, &cadvisor)))
        }),
        ("render text 0.0.4", &mut || {
            drop(black_box(render::render(
                snapshot.clone(),
                Format::PrometheusText,
            )))
        }),
    ];
    for (stage, run) in stages {
        let (median, _) = cpu_per_collection(run);
        println!("  stage {stage}: median thread CPU {median:.2} ms");
    }

    for streamed in [false, true] {
        let mode = if streamed { "streamed" } else { "whole" };
        let (median, p90) = cpu_per_collection(|| {
            let body = if streamed {
                CadvisorBody::Streamed(&cadvisor_path)
            } else {
                CadvisorBody::Whole(&p.cadvisor)
            };
            black_box(collect(&mut state, &p.summary, &p.pods, body));
        });
        println!(
            "cAdvisor {mode}: thread CPU per collection (200 collections) median {median:.2} ms, \
             p90 {p90:.2} ms; peak RSS of a fresh process running 50 collections {:.1} MiB",
            child_peak_rss(dir.path(), streamed)
        );
    }
}
