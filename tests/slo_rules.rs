//! `kubesignal slo generate` end to end: every example spec and every Sloth example without
//! plugins gives rules the real `promtool check rules` accepts, thresholds agree with Sloth's
//! own output, and bad specs fail with the file and field named.

#[path = "common/slo.rs"]
mod slo;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kubesignal::rules::file::RuleFile;

fn check_rules(files: &[PathBuf]) {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut args = vec!["check", "rules"];
    args.extend(names.iter().map(String::as_str));
    let out = slo::promtool(&slo::repo(), &args);
    assert!(
        out.status.success(),
        "promtool check rules rejected generated rules:\n{}",
        slo::text(&out)
    );
}

fn is_sloth_v1(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .any(|l| l.trim() == "version: \"prometheus/v1\"")
}

fn uses_plugins(path: &std::path::Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap();
    text.contains("plugin:") || text.contains("plugins:")
}

#[test]
fn every_example_spec_generates_rules_that_promtool_accepts() {
    let specs = slo::files_with(&slo::repo().join("slos"), &[".yaml", ".yml"]);
    assert!(specs.len() >= 3, "expected the example specs in slos/");
    let dir = tempfile::tempdir().unwrap();
    let written = slo::generate(&specs, dir.path());
    check_rules(&written);
}

#[test]
fn every_sloth_example_without_plugins_generates_rules_that_promtool_accepts() {
    let examples: Vec<PathBuf> = slo::files_with(&slo::sloth_fixtures(), &[".yml", ".yaml"])
        .into_iter()
        .filter(|p| is_sloth_v1(p) && !uses_plugins(p))
        .collect();
    assert!(
        examples.len() >= 3,
        "expected at least home-wifi, kubernetes-apiserver and no-alerts: {examples:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let written = slo::generate(&examples, dir.path());
    check_rules(&written);
}

#[test]
fn sloth_examples_with_plugins_are_refused_naming_file_and_field() {
    let examples: Vec<PathBuf> = slo::files_with(&slo::sloth_fixtures(), &[".yml", ".yaml"])
        .into_iter()
        .filter(|p| is_sloth_v1(p) && uses_plugins(p))
        .collect();
    assert!(examples.len() >= 3, "{examples:?}");
    for example in examples {
        let out = slo::kubesignal(&["slo", "generate", example.to_str().unwrap(), "-o", "-"]);
        let msg = slo::text(&out);
        assert!(!out.status.success(), "{} was accepted", example.display());
        assert!(msg.contains(example.to_str().unwrap()), "{msg}");
        assert!(msg.contains("plugin"), "{msg}");
        assert!(msg.contains("not supported"), "{msg}");
    }
}

#[test]
fn sloth_kubernetes_and_openslo_forms_are_refused_as_unsupported() {
    for name in ["k8s-getting-started.yml", "openslo-getting-started.yml"] {
        let path = slo::sloth_fixtures().join(name);
        let out = slo::kubesignal(&["slo", "generate", path.to_str().unwrap()]);
        let msg = slo::text(&out);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(msg.contains(name) && msg.contains("`apiVersion`"), "{msg}");
        assert!(msg.contains("not supported"), "{msg}");
    }
}

/// `(factor * budget)` products of each alert rule in Sloth's output, keyed by alert name and
/// `sloth_severity`.
fn sloth_thresholds(file: &RuleFile) -> BTreeMap<(String, String), Vec<f64>> {
    let re = regex::Regex::new(r"> \(([0-9.]+) \* ([0-9.e-]+)\)").unwrap();
    let mut out: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for rule in file.groups.iter().flat_map(|g| &g.rules) {
        let Some(name) = &rule.alert else { continue };
        let sev = rule.labels["sloth_severity"].clone();
        let mut values: Vec<f64> = re
            .captures_iter(&rule.expr)
            .map(|c| c[1].parse::<f64>().unwrap() * c[2].parse::<f64>().unwrap())
            .collect();
        values.sort_by(f64::total_cmp);
        values.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * b.abs());
        out.entry((name.clone(), sev)).or_default().extend(values);
    }
    out
}

/// Our thresholds (`> 0.0144`) per alert name and severity, from rules for the same spec.
fn our_thresholds(file: &RuleFile) -> BTreeMap<(String, String), Vec<f64>> {
    let re = regex::Regex::new(r"\) > ([0-9.]+)\n").unwrap();
    let mut out: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for rule in file.groups.iter().flat_map(|g| &g.rules) {
        let Some(name) = &rule.alert else { continue };
        let Some(sev) = rule.labels.get("sloth_severity") else {
            continue;
        };
        let mut values: Vec<f64> = re
            .captures_iter(&rule.expr)
            .map(|c| c[1].parse::<f64>().unwrap())
            .collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        out.entry((name.clone(), sev.clone()))
            .or_default()
            .extend(values);
    }
    out
}

#[test]
fn thresholds_match_sloths_own_output_for_the_same_specs() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["kubernetes-apiserver.yml", "home-wifi.yml"] {
        let spec = slo::sloth_fixtures().join(name);
        let ours_path = slo::generate(std::slice::from_ref(&spec), dir.path()).remove(0);
        let ours: RuleFile =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&ours_path).unwrap()).unwrap();
        let theirs: RuleFile = serde_yaml_ng::from_str(
            &std::fs::read_to_string(slo::sloth_fixtures().join("_gen").join(name)).unwrap(),
        )
        .unwrap();
        let (ours, theirs) = (our_thresholds(&ours), sloth_thresholds(&theirs));
        assert_eq!(
            theirs.len(),
            4,
            "{name}: two SLOs with a page and a ticket rule each"
        );
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{name}: alert names and tiers differ"
        );
        for (key, sloth_values) in &theirs {
            let our_values = &ours[key];
            assert_eq!(our_values.len(), sloth_values.len(), "{name} {key:?}");
            for (a, b) in our_values.iter().zip(sloth_values) {
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs(),
                    "{name} {key:?}: ours {a} vs Sloth {b}"
                );
            }
        }
        // The numbers Sloth prints with float noise come out clean here.
        let text = std::fs::read_to_string(&ours_path).unwrap();
        assert!(
            !text.contains("99999999"),
            "{name}: float noise in our rules"
        );
    }
}

#[test]
fn a_bad_spec_makes_the_cli_exit_non_zero_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("objective: 100\n", "`objective`"),
        ("objective: 99.9\nwindow: 36h\n", "`window`"),
        (
            "objective: 99.9\nsli:\n  custom:\n    error_query: rate(x[{{.window}}]\n    total_query: rate(y[{{.window}}])\n",
            "`sli.custom.error_query`",
        ),
        ("objective: 99.9\nowners: x\n", "unknown field `owners`"),
    ];
    for (i, (body, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, format!("service: a\nnamespace: b\nowner: c\n{body}")).unwrap();
        let out = slo::kubesignal(&["slo", "generate", path.to_str().unwrap(), "-o", "-"]);
        let msg = slo::text(&out);
        assert!(!out.status.success(), "case {i} was accepted");
        assert!(msg.contains(path.to_str().unwrap()), "case {i}: {msg}");
        assert!(msg.contains(field), "case {i}: {msg}");
    }
}

#[test]
fn stdout_output_is_one_rule_file_with_every_spec() {
    let out = slo::kubesignal(&[
        "slo",
        "generate",
        slo::repo().join("slos/demo.yaml").to_str().unwrap(),
        slo::repo().join("slos/checkout.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", slo::text(&out));
    let file: RuleFile = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = file.groups.iter().map(|g| g.name.as_str()).collect();
    assert!(names.contains(&"slo-demo-availability"), "{names:?}");
    assert!(names.contains(&"slo-demo-latency"), "{names:?}");
    assert!(names.contains(&"slo-checkout-availability"), "{names:?}");
}

#[test]
fn the_bundled_demo_slo_rules_are_what_the_generator_produces() {
    let out = slo::kubesignal(&[
        "slo",
        "generate",
        "-o",
        "-",
        slo::repo().join("slos/demo.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", slo::text(&out));
    let bundled = std::fs::read_to_string(slo::repo().join("alerts/slo-demo.rules.yaml")).unwrap();
    let body = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        body(&bundled),
        body(&String::from_utf8_lossy(&out.stdout)),
        "alerts/slo-demo.rules.yaml is stale: run `kubesignal slo generate slos/demo.yaml -o - > alerts/slo-demo.rules.yaml`"
    );
}
