//! The exposition parser against every real payload in the shared fixtures, a hand count, values
//! read off the files by hand, and the real `promtool check metrics`.

#[path = "common/parser.rs"]
mod common;

use std::borrow::Cow;

use common::{Promtool, count_sample_lines, exposition_fixtures, fixture, promtool_check_metrics};
use kubesignal::exposition::{Entry, Format, MetricType, Parser, Sample, parse_all};

fn samples(text: &str, format: Format) -> Vec<Sample<'_>> {
    parse_all(text, format)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The first sample with this name whose labels include all of `labels`.
fn find<'s, 'a>(all: &'s [Sample<'a>], name: &str, labels: &[(&str, &str)]) -> &'s Sample<'a> {
    all.iter()
        .find(|s| s.name == name && labels.iter().all(|(n, v)| s.label(n) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

#[test]
fn every_fixture_parses_with_as_many_samples_as_it_has_sample_lines() {
    for (path, format) in exposition_fixtures() {
        let text = common::read(&path);
        let entries =
            parse_all(&text, format).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sample_count = entries
            .iter()
            .filter(|e| matches!(e, Entry::Sample(_)))
            .count();
        assert_eq!(
            sample_count,
            count_sample_lines(&text),
            "{}: samples",
            path.display()
        );
        let type_lines = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let type_entries = entries
            .iter()
            .filter(|e| matches!(e, Entry::Type { .. }))
            .count();
        assert_eq!(type_entries, type_lines, "{}: TYPE lines", path.display());
        assert_eq!(
            entries.last() == Some(&Entry::Eof),
            format == Format::OpenMetrics,
            "{}: # EOF entry",
            path.display()
        );
    }
}

#[test]
fn the_fixture_sample_counts_match_their_provenance_notes() {
    // Counts stated in fixtures/PROVENANCE.md, written before this parser existed.
    for (file, expected) in [
        ("cadvisor/nri-k8s-1_31-cadvisor.prom", 4084),
        ("cadvisor/nri-k8s-1_34-cadvisor.prom", 4855),
        ("cadvisor/nri-k8s-1_15-legacy-labels-cadvisor.prom", 3579),
        ("app-metrics/prometheus-server-237mfs.prom", 1857),
        ("app-metrics/nri-k8s-1_34-etcd.prom", 1461),
        ("app-metrics/nri-k8s-1_34-kube-scheduler.prom", 1628),
    ] {
        let text = fixture(file);
        assert_eq!(
            samples(&text, Format::PrometheusText).len(),
            expected,
            "{file}"
        );
    }
}

#[test]
fn cadvisor_samples_carry_millisecond_timestamps_and_exact_values() {
    let text = fixture("cadvisor/nri-k8s-1_34-cadvisor.prom");
    let all = samples(&text, Format::PrometheusText);
    // Line 307.
    let s = find(
        &all,
        "container_cpu_usage_seconds_total",
        &[("id", "/"), ("cpu", "total")],
    );
    assert_eq!(s.value, 63.349226);
    assert_eq!(s.timestamp_ms, Some(1_768_329_614_523));
    assert_eq!(s.label("container"), Some(""));
    assert_eq!(s.labels.len(), 7);
    // Line 4998.
    let s = find(&all, "machine_memory_bytes", &[]);
    assert_eq!(s.value, 16_749_006_848.0);
    assert_eq!(s.timestamp_ms, None);
    assert_eq!(
        s.label("boot_id"),
        Some("a434501d-3938-459e-a163-dbd29bdafa42")
    );
}

#[test]
fn legacy_cadvisor_escaped_backslashes_in_systemd_unit_ids_are_resolved() {
    let text = fixture("cadvisor/nri-k8s-1_15-legacy-labels-cadvisor.prom");
    let all = samples(&text, Format::PrometheusText);
    // Line 37: id="/system.slice/dev-disk-by\\x2did-ata\\x2dVBOX_..." in the file.
    let s = find(
        &all,
        "container_cpu_load_average_10s",
        &[(
            "id",
            r"/system.slice/dev-disk-by\x2did-ata\x2dVBOX_HARDDISK_VB889e9320\x2d6f5efc34\x2dpart2.swap",
        )],
    );
    assert_eq!(s.value, 0.0);
    assert!(matches!(s.labels[1].1, Cow::Owned(_)));
    // Pre-1.16 label names.
    let s = find(
        &all,
        "container_cpu_cfs_throttled_periods_total",
        &[("container_name", "addon-resizer")],
    );
    assert_eq!(s.value, 2507.0);
    assert_eq!(
        s.label("pod_name"),
        Some("kube-state-metrics-57f4659995-6n2qq")
    );
}

#[test]
fn prometheus_server_payload_has_inf_buckets_nan_quantiles_and_4xx_codes() {
    let text = fixture("app-metrics/prometheus-server-237mfs.prom");
    let all = samples(&text, Format::PrometheusText);
    // Line 38.
    let s = find(
        &all,
        "go_gc_heap_allocs_by_size_bytes_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(s.value, 4.4046288803e10);
    // Line 1740.
    let s = find(
        &all,
        "prometheus_sd_consul_rpc_duration_seconds",
        &[("call", "service"), ("quantile", "0.5")],
    );
    assert!(s.value.is_nan());
    // Line 1035.
    let s = find(
        &all,
        "prometheus_http_requests_total",
        &[("code", "400"), ("handler", "/api/v1/label/:name/values")],
    );
    assert_eq!(s.value, 3292.0);
}

#[test]
fn openmetrics_fixture_has_exemplars_created_lines_and_eof() {
    let text = fixture("app-metrics/client-golang-random-example-5mfs.om.txt");
    let all = samples(&text, Format::OpenMetrics);
    // Line 19.
    let s = find(
        &all,
        "rpc_durations_histogram_seconds_bucket",
        &[("le", "-0.0002899999999999998")],
    );
    assert_eq!(s.value, 3.0);
    let ex = s.exemplar.as_ref().expect("exemplar on line 19");
    assert_eq!(
        ex.labels,
        vec![(Cow::Borrowed("dummyID"), Cow::Borrowed("17783"))]
    );
    assert_eq!(ex.value, -0.0003825067330956884);
    // 1.7268398142239082e+09 s is 1726839814223.9082 ms.
    assert_eq!(ex.timestamp_ms, Some(1_726_839_814_224));
    // Line 7.
    let s = find(
        &all,
        "promhttp_metric_handler_errors_created",
        &[("cause", "encoding")],
    );
    assert_eq!(s.value, 1.726839813016397e9);
    let with_exemplars = all.iter().filter(|s| s.exemplar.is_some()).count();
    assert_eq!(with_exemplars, text.matches(" # {").count());
}

#[test]
fn otel_exporter_quoted_utf8_label_names_are_read() {
    let text = fixture("app-metrics/otel-go-exporter-histogram-golden.prom");
    let all = samples(&text, Format::PrometheusText);
    let s = find(&all, "target_info", &[]);
    assert_eq!(s.label("service.name"), Some("prometheus_test"));
    assert_eq!(s.label("telemetry.sdk.language"), Some("go"));
    let s = find(&all, "histogram_baz_bytes_sum", &[]);
    assert_eq!(s.value, 236.0);
}

#[test]
fn etcd_and_scheduler_payloads_keep_grpc_labels_and_help_prefixes() {
    let text = fixture("app-metrics/nri-k8s-1_34-etcd.prom");
    let all = samples(&text, Format::PrometheusText);
    let s = find(
        &all,
        "grpc_server_handled_total",
        &[("grpc_code", "Aborted"), ("grpc_method", "Alarm")],
    );
    assert_eq!(s.label("grpc_service"), Some("etcdserverpb.Maintenance"));
    assert_eq!(s.value, 0.0);

    let text = fixture("app-metrics/nri-k8s-1_34-kube-scheduler.prom");
    let first = Parser::new(&text, Format::PrometheusText)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        Entry::Help {
            family: Cow::Borrowed("aggregator_discovery_aggregation_count_total"),
            text: Cow::Borrowed("[ALPHA] Counter of number of times discovery was aggregated"),
        }
    );
}

#[test]
fn the_name_filter_pulls_only_the_wanted_cadvisor_families() {
    fn keep(name: &str) -> bool {
        matches!(
            name,
            "container_cpu_usage_seconds_total"
                | "machine_cpu_cores"
                | "container_memory_working_set_bytes"
        )
    }
    let text = fixture("cadvisor/nri-k8s-1_34-cadvisor.prom");
    let filtered: Vec<Sample<'_>> = Parser::new(&text, Format::PrometheusText)
        .with_name_filter(keep)
        .filter_map(|e| match e.unwrap() {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect();
    let everything = samples(&text, Format::PrometheusText);
    let expected: Vec<_> = everything.iter().filter(|s| keep(&s.name)).collect();
    assert!(expected.len() > 50);
    assert_eq!(filtered.iter().collect::<Vec<_>>(), expected);
}

#[test]
fn every_fixture_promtool_accepts_parses_and_its_rejections_are_known_format_gaps() {
    for (path, format) in exposition_fixtures() {
        let text = common::read(&path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match promtool_check_metrics(&text) {
            Promtool::Accepted => {
                assert_eq!(format, Format::PrometheusText, "{name}");
                parse_all(&text, format).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Promtool::Rejected { line, message } => {
                // promtool 2.42 reads only the text format 0.0.4 of its time: no OpenMetrics
                // exemplars and no quoted UTF-8 names (Prometheus 3.0). Those two fixtures are
                // valid in the formats they were written in; anything else is a disagreement.
                let known = match name.as_str() {
                    "client-golang-random-example-5mfs.om.txt" => {
                        message.contains("expected integer as timestamp, got \"#\"")
                    }
                    "otel-go-exporter-histogram-golden.prom" => {
                        message.contains("invalid label name")
                    }
                    _ => false,
                };
                assert!(known, "promtool rejects {name} at line {line}: {message}");
                parse_all(&text, format).unwrap_or_else(|e| panic!("{name}: {e}"));
                if format == Format::OpenMetrics {
                    // Read as the text format, we stop where promtool stops: the first exemplar.
                    let err = parse_all(&text, Format::PrometheusText).unwrap_err();
                    assert_eq!(err.line, line, "{name}: {err} vs promtool's {message}");
                }
            }
        }
    }
}

#[test]
fn malformed_inputs_promtool_rejects_are_rejected_on_the_same_line() {
    let ok = "# HELP a_total Requests.\n# TYPE a_total counter\na_total{code=\"200\"} 3\n";
    let broken = [
        "b{code=\"200\" 1\n",
        "b{code=200} 1\n",
        "b{code=\"2\\q\"} 1\n",
        "b{code=\"unterminated} 1\n",
        "b{code=\"1\",code=\"2\"} 1\n",
        "b{__name__=\"x\"} 1\n",
        "b{,} 1\n",
        "b\n",
        "b one\n",
        "b 1e400\n",
        "b 1 1.5\n",
        "b 1 2 3\n",
        "b 1 # {trace_id=\"x\"} 1\n",
        "# TYPE b countr\n",
        "# TYPE b counter extra\n",
        "# TYPE a_total counter\n",
        "# HELP a_total Again.\n",
        "# HELP b bad \\t escape\n",
        "# TYPE b histogram\nb_bucket{le=\"x\"} 1\n",
        "# TYPE b summary\nb{quantile=\"half\"} 1\n",
        "# TYPE b.c gauge\n",
    ];
    for tail in broken {
        let input = format!("{ok}{tail}");
        let Promtool::Rejected { line, message } = promtool_check_metrics(&input) else {
            panic!("promtool accepted {tail:?}; this case does not test agreement");
        };
        let ours = parse_all(&input, Format::PrometheusText)
            .expect_err(&format!("we accepted {tail:?}, promtool said: {message}"));
        assert_eq!(
            ours.line, line,
            "{tail:?}: ours: {ours}; promtool: line {line}: {message}"
        );
    }
}

#[test]
fn unusual_inputs_promtool_accepts_are_accepted() {
    let inputs = [
        "#HELP foo no space after the hash\nfoo 1\n",
        "# HELP\n# TYPE foo\n# random comment\nfoo 1\n",
        "foo { a = \"b\" , c=\"d\", }1\n",
        "foo{a=\"b\"} -Inf -5\nbar NaN\nbaz +inf\n",
        "# TYPE foo histogram\nfoo_bucket 1\n",
        "# TYPE foo UNTYPED\nfoo 1\n",
        "\n\nfoo 1\n\n",
        "foo{a=\"line\\nbreak \\\"quoted\\\" back\\\\slash\"} 1\n",
        "# TYPE foo gauge\nfoo 1\nbar 1\nfoo 2\n",
    ];
    for input in inputs {
        assert_eq!(
            promtool_check_metrics(input),
            Promtool::Accepted,
            "{input:?}"
        );
        let entries =
            parse_all(input, Format::PrometheusText).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        let sample_count = entries
            .iter()
            .filter(|e| matches!(e, Entry::Sample(_)))
            .count();
        assert_eq!(sample_count, count_sample_lines(input), "{input:?}");
    }
}

#[test]
fn openmetrics_requires_eof_last_and_nothing_after_it() {
    let body = fixture("app-metrics/client-golang-random-example-5mfs.om.txt");
    let lines = body.lines().count();
    let without_eof = body.trim_end().strip_suffix("# EOF").unwrap();
    let err = parse_all(without_eof, Format::OpenMetrics).unwrap_err();
    assert_eq!(err.line, lines);
    assert!(err.message.contains("# EOF"), "{err}");
    let trailing = format!("{body}foo 1\n");
    let err = parse_all(&trailing, Format::OpenMetrics).unwrap_err();
    assert_eq!(err.line, lines + 1);
    assert_eq!(
        parse_all(&body, Format::OpenMetrics)
            .unwrap()
            .iter()
            .filter(|e| matches!(
                e,
                Entry::Type {
                    kind: MetricType::Histogram,
                    ..
                }
            ))
            .count(),
        1
    );
}

#[test]
fn every_prefix_of_a_fixture_parses_or_fails_on_a_real_line_and_whole_lines_parse() {
    for (file, format) in [
        (
            "app-metrics/client-golang-random-example-5mfs.om.txt",
            Format::OpenMetrics,
        ),
        (
            "app-metrics/otel-go-exporter-histogram-golden.prom",
            Format::PrometheusText,
        ),
    ] {
        let text = fixture(file);
        let body = text.trim_end().strip_suffix("# EOF").unwrap_or(&text);
        for cut in (0..=body.len()).filter(|&i| body.is_char_boundary(i)) {
            let prefix = &body[..cut];
            let lines = prefix.split('\n').count();
            for f in [Format::PrometheusText, Format::OpenMetrics] {
                if let Err(e) = parse_all(prefix, f) {
                    assert!(
                        e.line >= 1 && e.line <= lines + 1,
                        "{file}[..{cut}] {f:?}: {e}"
                    );
                }
            }
            // Cut at a line end, the prefix is itself a valid exposition.
            if cut == 0 || prefix.ends_with('\n') {
                let whole = match format {
                    Format::OpenMetrics => format!("{prefix}# EOF\n"),
                    Format::PrometheusText => prefix.to_string(),
                };
                let entries =
                    parse_all(&whole, format).unwrap_or_else(|e| panic!("{file}[..{cut}]: {e}"));
                let sample_count = entries
                    .iter()
                    .filter(|e| matches!(e, Entry::Sample(_)))
                    .count();
                assert_eq!(sample_count, count_sample_lines(prefix), "{file}[..{cut}]");
            }
        }
    }
}
