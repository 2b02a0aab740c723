//! The local stack: `docker-compose.yaml` validates with docker-compose and the compose-spec
//! schema, its services are wired to each other (ports, mounts, routing to the SMTP catcher),
//! the Prometheus config it mounts passes `promtool check config` with the bundled rules, and the
//! Dockerfile builds a non-root distroless image.

#[path = "common/bundle.rs"]
mod bundle;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use bundle::{describe, files_with_ext, repo_root, require_program, run, venv_tool};
use serde_yaml_ng::Value;

fn docker_compose() -> PathBuf {
    require_program(
        "docker-compose",
        &[],
        "install Debian's `docker-compose` package (apt-get install -y docker-compose)",
    )
}

/// The compose file as docker-compose resolves it (anchors merged, paths absolute).
fn resolved() -> Value {
    let out = run(Command::new(docker_compose())
        .current_dir(repo_root())
        .args(["-f", "docker-compose.yaml", "config"]));
    assert!(
        out.status.success(),
        "docker-compose config failed:\n{}",
        describe(&out)
    );
    serde_yaml_ng::from_slice(&out.stdout).unwrap()
}

fn command(svc: &Value) -> Vec<String> {
    svc["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("command must be a list: {svc:?}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn flag(cmd: &[String], name: &str) -> String {
    cmd.iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing in {cmd:?}"))
        .to_string()
}

fn published(svc: &Value) -> BTreeSet<u64> {
    svc["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p["target"]
                .as_u64()
                .or_else(|| p.as_str().and_then(|s| s.rsplit(':').next()?.parse().ok()))
        })
        .collect()
}

/// (bind-mount source, target) of a service's volumes, in the short `src:dst[:mode]` form
/// docker-compose 1.x prints or the long form; named volumes have no source path.
fn mounts(svc: &Value) -> Vec<(Option<PathBuf>, String)> {
    svc["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| match v.as_str() {
            Some(short) => {
                let mut parts = short.split(':');
                let src = parts.next().unwrap();
                let dst = parts.next().unwrap_or(src).to_string();
                (src.starts_with('/').then(|| PathBuf::from(src)), dst)
            }
            None => (
                (v["type"].as_str() == Some("bind"))
                    .then(|| PathBuf::from(v["source"].as_str().unwrap())),
                v["target"].as_str().unwrap().to_string(),
            ),
        })
        .collect()
}

#[test]
fn the_compose_file_validates_with_docker_compose_and_the_compose_spec_schema() {
    let out = run(Command::new(docker_compose())
        .current_dir(repo_root())
        .args(["-f", "docker-compose.yaml", "config", "-q"]));
    assert!(
        out.status.success(),
        "docker-compose config -q failed:\n{}",
        describe(&out)
    );
    let out = run(Command::new(venv_tool("check-jsonschema"))
        .current_dir(repo_root())
        .args([
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yaml",
        ]));
    assert!(
        out.status.success(),
        "compose-spec schema check failed:\n{}",
        describe(&out)
    );
}

#[test]
fn the_stack_has_every_service_and_every_mounted_file_exists() {
    let c = resolved();
    let services = c["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for s in [
        "prometheus",
        "grafana",
        "mailpit",
        "demo",
        "agent",
        "evaluator",
    ] {
        assert!(names.contains(s), "service {s} missing: {names:?}");
    }
    let mut binds = 0;
    for (name, svc) in services {
        for (src, _) in mounts(svc) {
            if let Some(src) = src {
                binds += 1;
                assert!(
                    src.exists(),
                    "{name:?}: bind mount source {} does not exist",
                    src.display()
                );
            }
        }
    }
    assert!(
        binds >= 6,
        "expected the config, rules, routing and Grafana files to be bind-mounted"
    );
}

#[test]
fn the_agent_scrapes_the_demo_and_prometheus_scrapes_the_agent_and_the_evaluator() {
    let c = resolved();
    let s = &c["services"];
    let demo = command(&s["demo"]);
    assert_eq!(demo[0], "demo");
    let demo_port = flag(&demo, "--listen")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        flag(&demo, "--self-load").parse::<f64>().unwrap() > 0.0,
        "the demo must load itself"
    );
    let agent = command(&s["agent"]);
    assert_eq!(agent[0], "agent");
    assert_eq!(flag(&agent, "--source"), "local");
    assert_eq!(
        flag(&agent, "--static-target"),
        format!("http://demo:{demo_port}/metrics")
    );
    let agent_port = flag(&agent, "--listen")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let evaluator = command(&s["evaluator"]);
    let eval_port = flag(&evaluator, "--listen")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        flag(&evaluator, "--datasource-url"),
        "http://prometheus:9090"
    );

    let prom: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let targets = |job: &str| -> Vec<String> {
        let sc = prom["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|j| j["job_name"].as_str() == Some(job))
            .unwrap_or_else(|| panic!("no job {job}"));
        sc["static_configs"][0]["targets"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    // The meta-alerts select on these job names.
    assert_eq!(
        targets("kubesignal-agent"),
        vec![format!("agent:{agent_port}")]
    );
    assert_eq!(
        targets("kubesignal-evaluator"),
        vec![format!("evaluator:{eval_port}")]
    );
    assert!(published(&s["grafana"]).contains(&3000));
    assert!(
        published(&s["mailpit"]).contains(&8025),
        "Mailpit's web UI must be published"
    );
}

#[test]
fn the_evaluator_routes_email_to_the_smtp_catcher() {
    let c = resolved();
    let evaluator = &c["services"]["evaluator"];
    let routing_in_container = flag(&command(evaluator), "--routing-file");
    let m = mounts(evaluator);
    let source_of = |target: &str| -> PathBuf {
        m.iter()
            .find(|(_, t)| t == target)
            .and_then(|(s, _)| s.clone())
            .unwrap_or_else(|| panic!("{target} must be bind-mounted into the evaluator"))
    };
    let routing: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(source_of(&routing_in_container)).unwrap(),
    )
    .unwrap();
    assert_eq!(routing["smtp"]["host"].as_str(), Some("mailpit"));
    assert_eq!(
        routing["smtp"]["port"].as_u64(),
        Some(1025),
        "Mailpit's SMTP port"
    );
    assert!(
        routing["triage"]["email"]
            .as_sequence()
            .is_some_and(|e| !e.is_empty())
    );
    let rules = flag(&command(evaluator), "--rules");
    assert_eq!(source_of(&rules), repo_root().join("alerts"));
}

#[test]
fn grafana_gets_the_provisioned_datasource_and_dashboards() {
    let c = resolved();
    let g = &c["services"]["grafana"];
    let m = mounts(g);
    let target_of = |src: PathBuf| {
        m.iter()
            .find(|(s, _)| s.as_ref() == Some(&src))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{} not mounted", src.display()))
    };
    let root = repo_root();
    assert!(
        target_of(root.join("dashboards/provisioning/datasource.yaml"))
            .starts_with("/etc/grafana/provisioning/datasources/")
    );
    assert!(
        target_of(root.join("dashboards/provisioning/dashboards.yaml"))
            .starts_with("/etc/grafana/provisioning/dashboards/")
    );
    let dash_dir = target_of(root.join("dashboards"));
    let prov: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("dashboards/provisioning/dashboards.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        prov["providers"][0]["options"]["path"].as_str(),
        Some(dash_dir.as_str()),
        "the provider must read where the dashboards are mounted"
    );
    let ds: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("dashboards/provisioning/datasource.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
}

#[test]
fn the_mounted_prometheus_config_and_the_bundled_rules_pass_promtool() {
    let promtool = require_program("promtool", &[], "install Debian's `prometheus` package");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("deploy/prometheus.yml"),
        tmp.path().join("prometheus.yml"),
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("rules")).unwrap();
    let rules = files_with_ext("alerts", &[".yaml"]);
    for r in &rules {
        std::fs::copy(r, tmp.path().join("rules").join(r.file_name().unwrap())).unwrap();
    }
    let out = run(Command::new(promtool)
        .args(["check", "config"])
        .arg(tmp.path().join("prometheus.yml")));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check config failed:\n{text}"
    );
    for r in &rules {
        assert!(
            text.contains(&r.file_name().unwrap().to_string_lossy().into_owned()),
            "rule file {} not loaded:\n{text}",
            r.display()
        );
    }
}

#[test]
fn the_dockerfile_builds_in_stages_into_a_non_root_distroless_image() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage build expected: {froms:?}");
    assert!(
        froms[0].contains("rust:"),
        "the builder stage uses the Rust image: {}",
        froms[0]
    );
    let last = froms.last().unwrap();
    assert!(
        last.contains("distroless") || last.contains("scratch"),
        "final stage must be distroless or scratch: {last}"
    );
    let final_stage = &text[text.rfind("\nFROM ").unwrap()..];
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("final stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("numeric USER, so runAsNonRoot can verify it");
    assert_ne!(uid, 0, "the image must not run as root");
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/local/bin/kubesignal\"]"));
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        ".dockerignore must keep target/ out of the context"
    );
}

#[test]
fn the_bundled_routing_files_load_as_the_evaluator_reads_them() {
    for file in ["deploy/routing.yaml", "manifests/base/routing.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let routing = kubesignal::notify::routing::Routing::load(&path)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let debug = format!("{routing:?}");
        assert!(debug.contains("triage"), "{file}: {debug}");
    }
}

#[test]
fn the_bundled_agent_config_places_the_demo_where_its_slo_looks() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/agent.yaml");
    let config = kubesignal::agent::red::config::RedConfig::from_file(&path).unwrap();
    let slo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("slos/demo.yaml"),
    )
    .unwrap();
    assert!(
        config.static_targets.iter().any(
            |t| t.namespace.as_deref() == Some("demo") && t.workload.as_deref() == Some("demo")
        ),
        "{config:?}"
    );
    assert!(
        slo.contains("namespace: demo") && slo.contains("workload: demo"),
        "{slo}"
    );
}
