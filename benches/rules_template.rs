//! How fast alert templates render (the evaluator renders every label and annotation of every
//! active alert at each evaluation) and how fast `rules check` validates a large rule file.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kubesignal::template::{Template, TemplateData, expand};

const SUMMARY: &str = "{{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.container }}) is restarting {{ printf \"%.2f\" $value }} times / 10 minutes.";
const DESCRIPTION: &str = "{{ with $labels.instance }}{{ . | stripDomain }}{{ end }} has {{ $value | humanizePercentage }} CPU throttled; limit {{ humanize1024 1073741824 }}, up for {{ humanizeDuration 93784 }}.";

fn labels() -> BTreeMap<String, String> {
    [
        ("namespace", "payments"),
        ("pod", "checkout-7d9f8b6c5d-x2x7q"),
        ("container", "app"),
        ("instance", "node-3.eu-west-1.compute.internal:10250"),
        ("job", "kubelet"),
        ("severity", "warning"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn rule_file(rules: usize) -> String {
    let mut s = String::from("groups:\n");
    for g in 0..rules / 50 {
        s += &format!("  - name: group{g}\n    interval: 30s\n    rules:\n");
        for r in 0..50 {
            s += &format!(
                "      - alert: Alert{g}x{r}\n        expr: sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{namespace=\"ns{r}\"}}[5m])) > {r}\n        for: 10m\n        labels:\n          severity: warning\n        annotations:\n          summary: {SUMMARY:?}\n          description: {DESCRIPTION:?}\n"
            );
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let labels = labels();
    let ext = BTreeMap::new();
    let data = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "http://prometheus:9090",
        value: 0.4213,
        active_at: None,
    };
    c.bench_function("template parse+render summary", |b| {
        b.iter(|| expand("t", black_box(SUMMARY), &data, None).unwrap())
    });
    let parsed = Template::parse("t", DESCRIPTION).unwrap();
    c.bench_function("template render parsed description", |b| {
        b.iter(|| parsed.render(black_box(&data), None).unwrap())
    });
    let file = rule_file(1000);
    let (_, diags) = kubesignal::rules::check::check_text("bench.yml", &file);
    assert!(!diags.iter().any(|d| d.is_error()), "{diags:?}");
    c.bench_function("rules check 1000 alerting rules", |b| {
        b.iter(|| kubesignal::rules::check::check_text("bench.yml", black_box(&file)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
