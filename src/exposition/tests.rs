use std::borrow::Cow;

use super::*;

fn samples(input: &str, format: Format) -> Vec<Sample<'_>> {
    parse_all(input, format)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn only_sample(input: &str, format: Format) -> Sample<'_> {
    let mut all = samples(input, format);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn error(input: &str, format: Format) -> ParseError {
    match parse_all(input, format) {
        Ok(entries) => panic!("expected an error for {input:?}, got {entries:?}"),
        Err(e) => e,
    }
}

#[test]
fn content_type_selects_openmetrics_only_for_its_media_type() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("Application/OpenMetrics-Text"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4"),
        Format::PrometheusText
    );
    assert_eq!(Format::from_content_type(""), Format::PrometheusText);
}

#[test]
fn the_accept_header_prefers_openmetrics_and_falls_back_to_text() {
    let offers: Vec<&str> = Format::ACCEPT_HEADER.split(',').collect();
    assert_eq!(Format::from_content_type(offers[0]), Format::OpenMetrics);
    assert_eq!(Format::from_content_type(offers[1]), Format::PrometheusText);
    assert!(offers[1].starts_with("text/plain;version=0.0.4"));
}

#[test]
fn a_text_sample_borrows_its_name_labels_and_reads_value_and_timestamp() {
    let s = only_sample(
        "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n",
        Format::PrometheusText,
    );
    assert!(matches!(s.name, Cow::Borrowed("http_requests_total")));
    assert!(
        s.labels
            .iter()
            .all(|(n, v)| matches!(n, Cow::Borrowed(_)) && matches!(v, Cow::Borrowed(_)))
    );
    assert_eq!(s.label("method"), Some("post"));
    assert_eq!(s.label("code"), Some("200"));
    assert_eq!(s.label("nope"), None);
    assert_eq!(s.value, 1027.0);
    assert_eq!(s.timestamp_ms, Some(1_395_066_363_000));
}

#[test]
fn label_value_escapes_are_resolved_into_an_owned_string() {
    let s = only_sample(
        r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9"#,
        Format::PrometheusText,
    );
    assert_eq!(s.label("path"), Some(r"C:\DIR\FILE.TXT"));
    assert_eq!(s.label("error"), Some("Cannot find file:\n\"FILE.TXT\""));
    assert!(matches!(s.labels[0].1, Cow::Owned(_)));
    assert_eq!(s.value, 1.458255915e9);
}

#[test]
fn special_float_values_are_read_in_any_case() {
    let all = samples(
        "a NaN\nb +Inf\nc -Inf\nd inf\ne -5e-3\n",
        Format::PrometheusText,
    );
    assert!(all[0].value.is_nan());
    assert_eq!(all[1].value, f64::INFINITY);
    assert_eq!(all[2].value, f64::NEG_INFINITY);
    assert_eq!(all[3].value, f64::INFINITY);
    assert_eq!(all[4].value, -0.005);
}

#[test]
fn help_and_type_lines_become_entries_with_help_escapes_resolved() {
    let entries = parse_all(
        "# HELP foo Line one\\nwith a \\\\ backslash\n# TYPE foo counter\nfoo 1\n",
        Format::PrometheusText,
    )
    .unwrap();
    assert_eq!(
        entries[0],
        Entry::Help {
            family: Cow::Borrowed("foo"),
            text: Cow::Owned("Line one\nwith a \\ backslash".to_string()),
        }
    );
    assert_eq!(
        entries[1],
        Entry::Type {
            family: Cow::Borrowed("foo"),
            kind: MetricType::Counter
        }
    );
    assert_eq!(entries.len(), 3);
}

#[test]
fn plain_comments_blank_lines_crlf_and_trailing_blanks_are_tolerated_in_text() {
    let all = samples(
        "# just a comment\r\n\r\n\nfoo{a=\"b\"} 1 \t\r\n  bar 2   \n# EOF\nbaz 3",
        Format::PrometheusText,
    );
    let names: Vec<_> = all.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["foo", "bar", "baz"]);
    assert_eq!(all[0].label("a"), Some("b"));
}

#[test]
fn blanks_around_label_tokens_and_a_trailing_comma_are_accepted_like_expfmt() {
    let s = only_sample("foo { a = \"b\" , c=\"d\", }1\n", Format::PrometheusText);
    assert_eq!(s.label("a"), Some("b"));
    assert_eq!(s.label("c"), Some("d"));
    assert_eq!(s.value, 1.0);
}

#[test]
fn quoted_utf8_metric_and_label_names_are_read() {
    let s = only_sample(
        "{\"my.metric\", \"service.name\"=\"x\", a=\"b\"} 3\n",
        Format::PrometheusText,
    );
    assert_eq!(s.name, "my.metric");
    assert_eq!(s.label("service.name"), Some("x"));
    assert_eq!(s.label("a"), Some("b"));
    let s = only_sample("{\"only.name\"} 4\n", Format::PrometheusText);
    assert_eq!(s.name, "only.name");
    assert!(s.labels.is_empty());
    let s = only_sample(
        "target_info{\"télé.mètre\"=\"ü\"} 1\n",
        Format::PrometheusText,
    );
    assert_eq!(s.label("télé.mètre"), Some("ü"));
}

#[test]
fn openmetrics_reads_exemplars_and_float_second_timestamps() {
    let input = "# TYPE foo histogram\n\
        foo_bucket{le=\"0.5\"} 3 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879602.890\n\
        foo_bucket{le=\"+Inf\"} 5 # {trace_id=\"a\"} 9\n\
        # EOF\n";
    let all = samples(input, Format::OpenMetrics);
    assert_eq!(all[0].timestamp_ms, Some(1_520_879_607_789));
    let ex = all[0].exemplar.as_ref().unwrap();
    assert_eq!(
        ex.labels,
        vec![(Cow::Borrowed("trace_id"), Cow::Borrowed("KOO5S4vxi0o"))]
    );
    assert_eq!(ex.value, 0.67);
    assert_eq!(ex.timestamp_ms, Some(1_520_879_602_890));
    let ex = all[1].exemplar.as_ref().unwrap();
    assert_eq!(all[1].timestamp_ms, None);
    assert_eq!(ex.value, 9.0);
    assert_eq!(ex.timestamp_ms, None);
}

#[test]
fn openmetrics_yields_unit_and_eof_entries() {
    let entries = parse_all(
        "# TYPE foo_seconds gauge\n# UNIT foo_seconds seconds\n# HELP foo_seconds Say \\\"hi\\\"\nfoo_seconds 1\n# EOF\n",
        Format::OpenMetrics,
    )
    .unwrap();
    assert_eq!(
        entries[1],
        Entry::Unit {
            family: Cow::Borrowed("foo_seconds"),
            unit: Cow::Borrowed("seconds")
        }
    );
    assert_eq!(
        entries[2],
        Entry::Help {
            family: Cow::Borrowed("foo_seconds"),
            text: Cow::Owned("Say \"hi\"".to_string())
        }
    );
    assert_eq!(entries.last(), Some(&Entry::Eof));
}

#[test]
fn openmetrics_without_eof_is_an_error_on_the_line_after_the_last() {
    let e = error("# TYPE foo gauge\nfoo 1\n", Format::OpenMetrics);
    assert_eq!(e.line, 3);
    assert!(e.message.contains("# EOF"), "{e}");
    assert_eq!(error("", Format::OpenMetrics).line, 1);
}

#[test]
fn content_after_openmetrics_eof_is_an_error() {
    let e = error("foo 1\n# EOF\nbar 2\n", Format::OpenMetrics);
    assert_eq!(e.line, 3);
    assert!(e.message.contains("after # EOF"), "{e}");
}

#[test]
fn openmetrics_rejects_free_comments_and_text_rejects_exemplars() {
    let e = error("# hello\n# EOF\n", Format::OpenMetrics);
    assert_eq!(e.line, 1);
    let e = error("foo 1 # {a=\"b\"} 1\n", Format::PrometheusText);
    assert_eq!(e.line, 1);
    assert!(e.message.contains("integer timestamp"), "{e}");
}

#[test]
fn malformed_sample_lines_name_their_line_and_what_was_expected() {
    let cases: &[(&str, usize, &str)] = &[
        ("ok 1\nfoo\n", 2, "expected a value"),
        ("foo{a=\"b\" 1\n", 1, "expected ',' or '}'"),
        (
            "foo{a=b} 1\n",
            1,
            "expected '\"' to open the value of label \"a\"",
        ),
        ("foo{a=\"b} 1\n", 1, "no closing"),
        ("foo{a=\"x\\ty\"} 1\n", 1, "invalid escape sequence '\\t'"),
        ("foo{,} 1\n", 1, "expected a label name"),
        ("foo{a=\"1\",a=\"2\"} 1\n", 1, "duplicate label name"),
        ("foo{__name__=\"x\"} 1\n", 1, "reserved"),
        ("foo 1 1.5\n", 1, "integer timestamp"),
        ("foo 1 2 3\n", 1, "after the timestamp"),
        ("foo bar\n", 1, "expected a float"),
        ("foo 1e400\n", 1, "expected a float"),
        (
            "foo.bar 1\n",
            1,
            "expected '{' or a space after metric name \"foo\"",
        ),
        ("9foo 1\n", 1, "expected a metric name"),
        ("{a=\"b\"} 1\n", 1, "expected a metric name before"),
        ("# TYPE foo countr\n", 1, "unknown metric type"),
        ("# TYPE foo counter extra\n", 1, "after the type"),
        ("foo 1\n# TYPE foo counter\n", 2, "after its samples"),
        ("# TYPE foo gauge\n# TYPE foo gauge\n", 2, "second TYPE"),
        ("# HELP foo a\n# HELP foo b\n", 2, "second HELP"),
        ("# HELP foo a\\\"b\n", 1, "invalid escape sequence"),
        ("# TYPE foo histogram\nfoo_bucket{le=\"x\"} 1\n", 2, "'le'"),
        (
            "# TYPE foo summary\nfoo{quantile=\"x\"} 1\n",
            2,
            "'quantile'",
        ),
    ];
    for &(input, line, needle) in cases {
        let e = error(input, Format::PrometheusText);
        assert_eq!(e.line, line, "{input:?}: {e}");
        assert!(e.message.contains(needle), "{input:?}: {e}");
    }
}

#[test]
fn bare_help_and_type_lines_are_plain_comments_in_text_like_expfmt() {
    let entries = parse_all(
        "# HELP\n# HELP foo\n# TYPE foo\nfoo 1\n",
        Format::PrometheusText,
    )
    .unwrap();
    assert_eq!(entries.len(), 1);
}

#[test]
fn an_openmetrics_bucket_without_le_is_an_error_but_text_tolerates_it() {
    let e = error(
        "# TYPE foo histogram\nfoo_bucket 1\n# EOF\n",
        Format::OpenMetrics,
    );
    assert_eq!(e.line, 2);
    assert_eq!(
        samples(
            "# TYPE foo histogram\nfoo_bucket 1\n",
            Format::PrometheusText
        )
        .len(),
        1
    );
}

#[test]
fn the_iterator_continues_after_an_error_line() {
    let results: Vec<_> = Parser::new("a 1\nb x\nc 3\n", Format::PrometheusText).collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().line, 2);
}

#[test]
fn the_name_filter_keeps_families_and_skips_other_lines_unvalidated() {
    fn keep(name: &str) -> bool {
        name == "wanted" || name == "other_total"
    }
    let input = "# HELP wanted w\n# TYPE wanted histogram\nwanted_bucket{le=\"1\"} 2\n\
                 unwanted{this is not valid at all\nwanted_count 2\nother_total 5\nother_created 1\n";
    let entries = parse_all(input, Format::PrometheusText);
    assert!(
        entries.is_err(),
        "the unfiltered parse must see the bad line"
    );
    let entries: Vec<_> = Parser::new(input, Format::PrometheusText)
        .with_name_filter(keep)
        .collect::<Result<_, _>>()
        .unwrap();
    let names: Vec<_> = entries
        .iter()
        .map(|e| match e {
            Entry::Help { .. } => "HELP",
            Entry::Type { .. } => "TYPE",
            Entry::Sample(s) => s.name.as_ref(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "HELP",
            "TYPE",
            "wanted_bucket",
            "wanted_count",
            "other_total"
        ]
    );
}

#[test]
fn family_of_strips_one_known_suffix() {
    assert_eq!(family_of("foo_bucket"), "foo");
    assert_eq!(family_of("foo_total"), "foo");
    assert_eq!(family_of("foo_seconds"), "foo_seconds");
    assert_eq!(family_of("_total"), "_total");
}

#[test]
fn exemplar_label_sets_are_capped_at_128_characters() {
    let at_limit = "x".repeat(120);
    let ok = format!("foo_total 1 # {{trace_id=\"{at_limit}\"}} 1\n# EOF\n");
    assert_eq!(samples(&ok, Format::OpenMetrics).len(), 1);
    let over = format!("foo_total 1 # {{trace_id=\"{at_limit}x\"}} 1\n# EOF\n");
    let e = error(&over, Format::OpenMetrics);
    assert_eq!(e.line, 1);
    assert!(e.message.contains("129 characters"), "{e}");
}
