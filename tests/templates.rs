//! The Prometheus template language against real rule files and the real `promtool`: every
//! template in the shared fixtures renders, rendered annotations equal those the fixtures'
//! promtool unit tests expect, and crafted templates render exactly as `promtool test rules`
//! renders them.

#[path = "common/rulescheck.rs"]
mod rulescheck;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kubesignal::rules::file::Rule;
use kubesignal::template::{QuerySample, Template, TemplateData, TemplateQuerier, expand};
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use rulescheck::{FixtureKind, fixtures_dir, kind_of, promtool, write, yaml_files};

/// Answers every query with one sample.
struct OneSample;

impl TemplateQuerier for OneSample {
    fn query(&self, _q: &str) -> Result<Vec<QuerySample>, String> {
        Ok(vec![QuerySample {
            labels: [
                ("__name__", "up"),
                ("instance", "10.0.0.1:9100"),
                ("job", "node"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            value: 1.0,
        }])
    }
}

/// Equality matchers of an expression's selectors: the labels its result likely carries.
struct Matchers(BTreeMap<String, String>);

impl ExprVisitor for Matchers {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(m) => &m.vs,
            _ => return Ok(true),
        };
        for m in &vs.matchers.matchers {
            if matches!(m.op, MatchOp::Equal) && m.name != "__name__" {
                self.0.insert(m.name.clone(), m.value.clone());
            }
        }
        Ok(true)
    }
}

fn sample_labels(rule: &Rule) -> BTreeMap<String, String> {
    let mut m = Matchers(BTreeMap::new());
    if let Ok(e) = promql_parser::parser::parse(&rule.expr) {
        let _ = walk_expr(&mut m, &e);
    }
    m.0.insert("instance".into(), "node1.example.com:9100".into());
    m.0.insert("job".into(), "node".into());
    m.0
}

#[test]
fn every_template_in_the_fixture_rule_files_parses_and_renders_with_sample_data() {
    let ext = BTreeMap::from([("cluster".to_string(), "prod".to_string())]);
    let mut rendered = 0;
    let mut failures = Vec::new();
    for file in yaml_files(&fixtures_dir()) {
        if kind_of(&file) != FixtureKind::Rules || file.ends_with("bad-rules-syntax.yml") {
            continue;
        }
        let rules = kubesignal::rules::load::load_file(&file).unwrap();
        for rule in rules.groups.iter().flat_map(|g| &g.rules) {
            let Some(alert) = &rule.alert else { continue };
            let labels = sample_labels(rule);
            let data = TemplateData {
                labels: &labels,
                external_labels: &ext,
                external_url: "http://prometheus.example:9090",
                value: 42.5,
                active_at: None,
            };
            for (key, text) in rule.labels.iter().chain(&rule.annotations) {
                if !text.contains("{{") {
                    continue;
                }
                let name = format!("__alert_{alert}");
                if let Err(e) = Template::parse(&name, text) {
                    failures.push(format!("{}: {alert}.{key}: parse: {e}", file.display()));
                    continue;
                }
                match expand(&name, text, &data, Some(&OneSample)) {
                    Ok(out) => {
                        assert!(!out.contains("{{"), "{alert}.{key} rendered to {out:?}");
                        rendered += 1;
                    }
                    Err(e) => {
                        failures.push(format!("{}: {alert}.{key}: render: {e}", file.display()))
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} templates failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(rendered > 1500, "only {rendered} templates found");
}

/// A promtool unit-test case's expected alert.
#[derive(serde::Deserialize)]
struct TestFile {
    rule_files: Vec<String>,
    tests: Vec<TestGroup>,
}

#[derive(serde::Deserialize)]
struct TestGroup {
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
}

#[derive(serde::Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(serde::Deserialize)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

/// Whether the template output depends on the alert's value or a query, which a unit test
/// only fixes through its input series.
fn uses_value_or_query(text: &str) -> bool {
    text.contains("$value") || text.contains(".Value") || text.contains("query")
}

#[test]
fn rendered_annotations_match_what_the_fixtures_promtool_unit_tests_expect() {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for file in yaml_files(&fixtures_dir()) {
        if kind_of(&file) != FixtureKind::UnitTest {
            continue;
        }
        let Ok(test) =
            serde_yaml_ng::from_str::<TestFile>(&std::fs::read_to_string(&file).unwrap())
        else {
            continue;
        };
        let dir = file.parent().unwrap();
        let mut rules: Vec<Rule> = Vec::new();
        for rf in &test.rule_files {
            if let Ok(f) = kubesignal::rules::load::load_file(&dir.join(rf)) {
                rules.extend(f.groups.into_iter().flat_map(|g| g.rules));
            }
        }
        for group in &test.tests {
            for case in &group.alert_rule_test {
                for exp in &case.exp_alerts {
                    // The rule whose fixed labels all appear in the expected labels; cases where
                    // several rules qualify (same name, same labels, different expr) are skipped.
                    let candidates: Vec<&Rule> = rules
                        .iter()
                        .filter(|r| {
                            r.alert.as_deref() == Some(case.alertname.as_str())
                                && r.labels.iter().all(|(k, v)| {
                                    v.contains("{{") || exp.exp_labels.get(k) == Some(v)
                                })
                        })
                        .collect();
                    let [rule] = candidates.as_slice() else {
                        continue;
                    };
                    // $labels holds the series labels: the alert's labels minus those the rule adds.
                    let labels: BTreeMap<String, String> = exp
                        .exp_labels
                        .iter()
                        .filter(|(k, _)| !rule.labels.contains_key(*k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let data = TemplateData {
                        labels: &labels,
                        external_labels: &group.external_labels,
                        external_url: &group.external_url,
                        value: 0.0,
                        active_at: None,
                    };
                    // Templated rule labels land, expanded, among the expected labels.
                    let templated_labels = rule
                        .labels
                        .iter()
                        .filter(|(_, v)| v.contains("{{"))
                        .filter_map(|(k, _)| exp.exp_labels.get_key_value(k));
                    for (key, want) in exp.exp_annotations.iter().chain(templated_labels) {
                        let Some(text) = rule.annotations.get(key).or_else(|| rule.labels.get(key))
                        else {
                            continue;
                        };
                        if uses_value_or_query(text) {
                            continue;
                        }
                        let got = expand("t", text, &data, None).unwrap();
                        compared += 1;
                        if &got != want {
                            mismatches.push(format!(
                                "{} {}.{key}:\n  want {want:?}\n  got  {got:?}",
                                file.display(),
                                case.alertname
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared >= 100, "only {compared} annotations compared");
}

/// Crafted templates: (template, the alert's value). Each is rendered by `promtool test rules`
/// (the oracle) and by us.
const CRAFTED: &[(&str, &str)] = &[
    ("{{ $value }}", "0.5"),
    ("{{ $value }}", "1e21"),
    ("{{ $value }}", "1234567"),
    ("{{ $value }}", "100000"),
    ("{{ $value }}", "-0.00001"),
    (
        "{{ .Value }} {{ printf \"%v|%g|%.3g\" $value $value $value }}",
        "123456789",
    ),
    ("{{ $value | humanize }}", "1234567"),
    ("{{ $value | humanize }}", "0.000123"),
    ("{{ $value | humanize }}", "0"),
    ("{{ $value | humanize }}", "-1500"),
    ("{{ $value | humanize }}", "999.95"),
    ("{{ $value | humanize1024 }}", "1073741824"),
    ("{{ $value | humanize1024 }}", "1500"),
    ("{{ $value | humanize1024 }}", "0.5"),
    ("{{ $value | humanizeDuration }}", "3725"),
    ("{{ $value | humanizeDuration }}", "90061"),
    ("{{ $value | humanizeDuration }}", "59.9"),
    ("{{ $value | humanizeDuration }}", "0.0123"),
    ("{{ $value | humanizeDuration }}", "0"),
    ("{{ $value | humanizePercentage }}", "0.1234"),
    ("{{ $value | humanizePercentage }}", "1"),
    ("{{ $value | humanizePercentage }}", "0.000012345"),
    ("{{ $value | humanizeTimestamp }}", "1435065584.128"),
    ("{{ $value | toTime }}", "1600000000"),
    (
        "{{ printf \"%.2f\" $value }}|{{ printf \"%d\" 42 }}|{{ printf \"%5.1f%%\" $value }}|{{ printf \"%s\" $value }}",
        "42.456",
    ),
    (
        "{{ printf \"%q %x %v %-5s|\" $labels.job $labels.job $labels.job $labels.job }}",
        "1",
    ),
    (
        "{{ printf \"%e %.0f %08.3f %+d\" $value $value $value 7 }}",
        "2.5",
    ),
    (
        "{{ $labels.instance | stripPort }} {{ $labels.instance | stripDomain }} {{ stripDomain \"10.1.2.3:80\" }}",
        "1",
    ),
    (
        "{{ title \"hello wide-world foo_bar\" }} {{ toUpper $labels.job }} {{ toLower \"ÀB\" }}",
        "1",
    ),
    (
        "{{ reReplaceAll \"(.+)\\\\.example\\\\.com:(\\\\d+)\" \"${1}/$2\" $labels.instance }}",
        "1",
    ),
    (
        "{{ if match \"^node\" $labels.instance }}yes{{ else }}no{{ end }}",
        "1",
    ),
    (
        "{{ if gt $value 10.0 }}high{{ else if gt $value 5.0 }}mid{{ else }}low{{ end }}",
        "7",
    ),
    (
        "{{ range $k, $v := $labels }}{{ $k }}={{ $v }},{{ end }}",
        "1",
    ),
    (
        "{{ with $labels.nothere }}x{{ else }}none{{ end }}[{{ $labels.nothere }}]",
        "1",
    ),
    ("a  {{- \"b\" -}}  c {{/* comment */}}d", "1"),
    ("{{ $labels }}", "1"),
    (
        "{{ with query \"crafted_query_metric\" }}{{ . | first | value }} {{ . | first | label \"instance\" }}{{ end }}",
        "1",
    ),
    (
        "{{ range query \"crafted_query_metric\" }}{{ .Labels.instance }}:{{ .Value }};{{ end }}",
        "1",
    ),
    (
        "{{ range sortByLabel \"instance\" (query \"crafted_query_many\") }}{{ .Labels.instance }} {{ end }}",
        "1",
    ),
    (
        "{{ graphLink \"up == 0\" }} {{ tableLink \"rate(x[5m])\" }}",
        "1",
    ),
    (
        "{{ (args 1 \"b\").arg1 }} {{ len $labels }} {{ index $labels \"job\" }} {{ safeHtml \"<b>\" }}",
        "1",
    ),
    (
        "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" $labels.job }}",
        "1",
    ),
    (
        "{{ $x := 1 }}{{ range $i, $e := (query \"crafted_query_metric\") }}{{ $x = $i }}{{ end }}{{ $x }}",
        "1",
    ),
    (
        "{{ eq $labels.job \"node\" }} {{ ne 1 2 }} {{ lt 1.5 2.0 }} {{ and 1 0 }} {{ or 0 \"\" \"z\" }} {{ not 0 }}",
        "1",
    ),
    ("{{ print 1 2 \"a\" 3 }} {{ println \"x\" }}", "1"),
    (
        "{{ parseDuration \"1h30m\" }} {{ humanizeDuration (parseDuration \"1d2h\") }}",
        "1",
    ),
    (
        "{{ $value }} {{ humanize $value }} {{ humanizeDuration $value }} {{ humanizePercentage $value }}",
        "NaN",
    ),
    (
        "{{ $value }} {{ humanize $value }} {{ humanize1024 $value }} {{ printf \"%.1f|%v\" $value $value }}",
        "+Inf",
    ),
    (
        "{{ $value }} {{ humanize $value }} {{ humanizeDuration $value }}",
        "-Inf",
    ),
    (
        "{{ printf \"%5s|%-5d|%05d|%x|%X|%t|%v\" \"ab\" 42 -42 255 255 true $labels }}",
        "1",
    ),
    (
        "{{ printf \"%s\" $labels }} {{ printf \"%d\" \"str\" }} {{ printf \"%s %s\" \"one\" }}",
        "1",
    ),
    (
        "{{ humanize \"1234\" }} {{ humanizeDuration \"65\" }} {{ humanize 1024 }}",
        "1",
    ),
    (
        "{{ toUpper \"straße ǆ\" }} {{ toLower \"ÀÉÎ\" }} {{ title \"élan o'neil x.y\" }}",
        "1",
    ),
    (
        "{{ $value | printf \"%.3e\" }} {{ $value | printf \"%g\" }} {{ $value | printf \"%G\" }}",
        "0.000012345",
    ),
    ("{{ $value }}", "123456.7"),
    ("{{ $value }}", "0.1"),
    ("{{ $value }}", "1e-7"),
    ("{{ $value | humanizeDuration }}", "86400"),
    ("{{ $value | humanizeDuration }}", "-0.5"),
    ("{{ $value | humanizePercentage }}", "-0.05"),
    ("{{ $value | humanizeTimestamp }}", "0"),
    (
        "{{ reReplaceAll \"[aeiou]\" \"\" \"prometheus\" }} {{ reReplaceAll \"(?P<h>[^.]+)\\\\..*\" \"$h\" $labels.instance }}",
        "1",
    ),
    (
        "{{ stripPort \"[::1]:9090\" }} {{ stripDomain \"[fe80::1]:80\" }} {{ stripDomain \"a.b\" }} {{ stripPort \"nohost\" }}",
        "1",
    ),
    (
        "{{ range $i, $v := args \"x\" 2 }}{{ $i }}={{ $v }} {{ end }}",
        "1",
    ),
    (
        "{{ $labels.job | len }} {{ slice \"abcdef\" 1 3 }} {{ html \"<a href='x'>\" }} {{ urlquery \"a b&c\" }} {{ js \"it's\" }}",
        "1",
    ),
    (
        "{{ printf \"%s|%v\" $labels.job .Value }} {{ (query \"crafted_query_metric\" | first).Value }} {{ (args 1).arg0 }}",
        "3",
    ),
    (
        "{{- range $i, $s := query \"crafted_query_metric\" -}}\n  {{ $i }}: {{ $s.Labels.instance }} {{ $s.Value | humanize }}\n{{- end }}",
        "1",
    ),
    (
        "{{ range query \"crafted_query_metric\" }}{{ . }}|{{ .Labels }}{{ end }} {{ printf \"%v\" (args \"a\" 1) }}",
        "1",
    ),
    (
        "{{ with $x := 0 }}yes{{ else }}no{{ end }} {{ if and $labels.job (eq $labels.job \"node\") }}ok{{ end }} {{ index (args 5 6) \"arg1\" }}",
        "1",
    ),
];

/// Serves the crafted series: queries are bare metric names.
struct StaticQuerier(Vec<QuerySample>);

impl TemplateQuerier for StaticQuerier {
    fn query(&self, q: &str) -> Result<Vec<QuerySample>, String> {
        Ok(self
            .0
            .iter()
            .filter(|s| s.labels["__name__"] == q)
            .cloned()
            .collect())
    }
}

fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn crafted_templates_render_exactly_as_promtool_renders_them() {
    let dir = tempfile::tempdir().unwrap();
    let series_labels = [("instance", "node1.example.com:9100"), ("job", "node")];
    // The series `query` sees, in promtool's storage and in our querier. Prometheus returns
    // several series in no fixed order, so only `sortByLabel` cases query more than one.
    let query_series = [
        ("crafted_query_metric", "b.example.com:80", "2.5"),
        ("crafted_query_many", "b.example.com:80", "2.5"),
        ("crafted_query_many", "a.example.com:80", "1e-3"),
    ];
    let querier = StaticQuerier(
        query_series
            .iter()
            .map(|(name, inst, v)| QuerySample {
                labels: [("__name__", *name), ("instance", *inst)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value: v.parse().unwrap(),
            })
            .collect(),
    );
    let ext = BTreeMap::new();
    let mut rules = String::from("groups:\n  - name: crafted\n    rules:\n");
    let mut tests = String::from(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    for (name, inst, v) in query_series {
        tests +=
            &format!("      - series: '{name}{{instance=\"{inst}\"}}'\n        values: '{v}'\n");
    }
    let mut expected = Vec::new();
    for (i, (template, value)) in CRAFTED.iter().enumerate() {
        let metric = format!("crafted_{i}");
        let mut labels: BTreeMap<String, String> = series_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("__name__".into(), metric.clone());
        let data = TemplateData {
            labels: &labels,
            external_labels: &ext,
            external_url: "",
            value: value.parse().unwrap(),
            active_at: None,
        };
        let ours = expand("t", template, &data, Some(&querier))
            .unwrap_or_else(|e| panic!("case {i} {template:?}: {e}"));
        rules += &format!(
            "      - alert: Crafted{i}\n        expr: {metric}\n        annotations:\n          out: {}\n",
            yaml_quote(template)
        );
        tests += &format!(
            "      - series: '{metric}{{instance=\"node1.example.com:9100\", job=\"node\"}}'\n        values: '{value}'\n"
        );
        expected.push(ours);
    }
    tests += "    alert_rule_test:\n";
    let cases = |expected: &[String]| -> String {
        let mut cases = String::new();
        for (i, want) in expected.iter().enumerate() {
            cases += &format!(
                "      - eval_time: 0m\n        alertname: Crafted{i}\n        exp_alerts:\n          - exp_labels: {{instance: node1.example.com:9100, job: node}}\n            exp_annotations:\n              out: {}\n",
                yaml_quote(want)
            );
        }
        cases
    };
    write(dir.path(), "rules.yml", &rules);
    let test_file = write(
        dir.path(),
        "test.yml",
        &format!("{tests}{}", cases(&expected)),
    );
    let (ok, output) = run_promtool_test(dir.path(), &test_file);
    assert!(
        ok,
        "promtool renders some crafted templates differently from us (its `got` is Prometheus's rendering):\n{output}"
    );

    // Control: promtool does compare the annotations, so one wrong expectation fails the run.
    let mut wrong = expected.clone();
    wrong[14].push('!');
    let control = write(
        dir.path(),
        "control.yml",
        &format!("{tests}{}", cases(&wrong)),
    );
    let (ok, output) = run_promtool_test(dir.path(), &control);
    assert!(
        !ok && output.contains("Crafted14"),
        "control run should fail on Crafted14:\n{output}"
    );
}

fn run_promtool_test(dir: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(promtool())
        .current_dir(dir)
        .args(["test", "rules"])
        .arg(file)
        .output()
        .expect("running promtool test rules");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
