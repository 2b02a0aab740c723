use std::cell::RefCell;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn render_with(
    text: &str,
    l: &BTreeMap<String, String>,
    value: f64,
    q: Option<&dyn TemplateQuerier>,
) -> Result<String, TemplateError> {
    let ext = labels(&[("cluster", "prod")]);
    let data = TemplateData {
        labels: l,
        external_labels: &ext,
        external_url: "http://prom.example:9090/prometheus",
        value,
        active_at: None,
    };
    expand("t", text, &data, q)
}

fn render(text: &str, value: f64) -> String {
    let l = labels(&[
        ("instance", "node1.example.com:9100"),
        ("job", "node"),
        ("__name__", "up"),
    ]);
    render_with(text, &l, value, None).unwrap()
}

struct OneSample {
    asked: RefCell<Vec<String>>,
}

impl TemplateQuerier for OneSample {
    fn query(&self, q: &str) -> Result<Vec<QuerySample>, String> {
        self.asked.borrow_mut().push(q.to_string());
        Ok(vec![
            QuerySample {
                labels: labels(&[("instance", "b"), ("__name__", "up")]),
                value: 0.25,
            },
            QuerySample {
                labels: labels(&[("instance", "a"), ("__name__", "up")]),
                value: 1.0,
            },
        ])
    }
}

#[test]
fn labels_and_value_render_through_the_preamble_variables_and_dot_fields() {
    assert_eq!(
        render(
            "{{ $labels.instance }} of {{ .Labels.job }} is {{ $value }}",
            0.5
        ),
        "node1.example.com:9100 of node is 0.5"
    );
    assert_eq!(
        render(
            "{{ $externalLabels.cluster }} {{ $externalURL }} {{ .Value }}",
            1e21
        ),
        "prod http://prom.example:9090/prometheus 1e+21"
    );
    assert_eq!(render("[{{ $labels.missing }}]", 1.0), "[]");
}

#[test]
fn trim_markers_remove_whitespace_next_to_actions() {
    assert_eq!(render("a  \n {{- 1 -}} \n  b", 0.0), "a1b");
    assert_eq!(render("{{- /* a comment */ -}}\n x", 0.0), "x");
    assert_eq!(render("{{/* comment */}}y", 0.0), "y");
    assert_eq!(render("{{ -3 }}", 0.0), "-3");
}

#[test]
fn control_structures_follow_go_semantics() {
    let t = "{{ if gt $value 10.0 }}high{{ else if gt $value 5.0 }}mid{{ else }}low{{ end }}";
    assert_eq!(render(t, 11.0), "high");
    assert_eq!(render(t, 6.0), "mid");
    assert_eq!(render(t, 1.0), "low");
    assert_eq!(
        render(
            "{{ with $labels.job }}job={{ . }}{{ end }}{{ with $labels.nope }}x{{ else }}none{{ end }}",
            0.0
        ),
        "job=nodenone"
    );
    assert_eq!(
        render(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0
        ),
        "__name__=up;instance=node1.example.com:9100;job=node;"
    );
    assert_eq!(
        render("{{ range $i, $v := args 1 2 3 }}{{ $i }}{{ end }}", 0.0),
        "arg0arg1arg2"
    );
    assert_eq!(
        render(
            "{{ range 5 }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            0.0
        ),
        "012"
    );
    assert_eq!(
        render(
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
            0.0
        ),
        "2"
    );
    assert_eq!(
        render(
            "{{ define \"t\" }}[{{ . }}]{{ end }}{{ template \"t\" $labels.job }}{{ tmpl \"t\" 4 }}",
            0.0
        ),
        "[node][4]"
    );
    assert_eq!(
        render("{{ and 1 0 }} {{ or 0 \"\" \"x\" }} {{ not false }}", 0.0),
        "0 x true"
    );
}

#[test]
fn pipelines_pass_the_value_as_the_last_argument() {
    assert_eq!(render("{{ $value | humanize }}", 1234567.0), "1.235M");
    assert_eq!(
        render(
            "{{ $labels.instance | reReplaceAll \"(.*):.*\" \"$1\" | toUpper }}",
            0.0
        ),
        "NODE1.EXAMPLE.COM"
    );
    assert_eq!(render("{{ printf \"%.2f\" $value }}", 42.5), "42.50");
    assert_eq!(
        render("{{ (printf \"%s-%s\" \"a\" \"b\") | len }}", 0.0),
        "3"
    );
}

#[test]
fn prometheus_functions_format_numbers_like_prometheus() {
    assert_eq!(render("{{ humanize 1234567 }}", 0.0), "1.235M");
    assert_eq!(render("{{ humanizeDuration 3725 }}", 0.0), "1h 2m 5s");
    assert_eq!(render("{{ humanizePercentage 0.1234 }}", 0.0), "12.34%");
    assert_eq!(render("{{ humanize1024 1048576 }}", 0.0), "1Mi");
    assert_eq!(
        render("{{ humanizeTimestamp 1435065584.128 }}", 0.0),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        render(
            "{{ $labels.instance | stripDomain }} {{ stripPort \"h:1\" }}",
            0.0
        ),
        "node1:9100 h"
    );
    assert_eq!(
        render("{{ title \"hello world\" }} {{ toLower \"ABC\" }}", 0.0),
        "Hello World abc"
    );
    assert_eq!(
        render("{{ match \"^node\" $labels.instance }}", 0.0),
        "true"
    );
    assert_eq!(render("{{ parseDuration \"1h30m\" }}", 0.0), "5400");
    assert_eq!(
        render("{{ graphLink \"up == 0\" }}", 0.0),
        "/graph?g0.expr=up+%3D%3D+0&g0.tab=0"
    );
    assert_eq!(render("{{ pathPrefix }}", 0.0), "/prometheus");
    assert_eq!(
        render("{{ toTime 0 }}", 0.0),
        "1970-01-01 00:00:00 +0000 UTC"
    );
}

#[test]
fn query_results_feed_first_label_value_and_sort_by_label() {
    let q = OneSample {
        asked: RefCell::new(Vec::new()),
    };
    let l = labels(&[("job", "api")]);
    let out = render_with(
        "{{ with query \"up{job='api'}\" }}{{ . | first | value | humanizePercentage }} {{ . | first | label \"instance\" }}{{ end }}|{{ range sortByLabel \"instance\" (query \"up\") }}{{ .Labels.instance }}={{ .Value }} {{ end }}",
        &l,
        0.0,
        Some(&q),
    )
    .unwrap();
    assert_eq!(out, "25% b|a=1 b=0.25 ");
    assert_eq!(q.asked.borrow().as_slice(), ["up{job='api'}", "up"]);
}

#[test]
fn parse_errors_name_the_template_and_line() {
    let err = Template::parse("__alert_X", "line1\n{{ nosuchfunc 1 }}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: __alert_X:2: function \"nosuchfunc\" not defined"
    );
    let err = Template::parse("t", "{{ if 1 }}x").unwrap_err();
    assert!(err.to_string().contains("unexpected EOF"), "{err}");
    let err = Template::parse("t", "{{ $undefined }}").unwrap_err();
    assert!(
        err.to_string()
            .contains("undefined variable \"$undefined\""),
        "{err}"
    );
    assert!(Template::parse("t", "{{ end }}").is_err());
    assert!(Template::parse("t", "{{ \"unterminated }}").is_err());
    assert!(Template::parse("t", "{{ .Labels.x").is_err());
}

#[test]
fn exec_errors_say_what_failed() {
    let l = labels(&[]);
    let err = render_with("{{ if gt $value 0 }}x{{ end }}", &l, 1.0, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("incompatible types for comparison"),
        "{err}"
    );
    let err = render_with("{{ query \"up\" }}", &l, 1.0, None).unwrap_err();
    assert!(err.to_string().contains("error calling query"), "{err}");
    let err = render_with("{{ first (args) }}", &l, 1.0, None).unwrap_err();
    assert!(err.to_string().contains("error calling first"), "{err}");
}

#[test]
fn active_at_is_a_time_that_prints_and_humanizes_like_prometheus_times() {
    let l = labels(&[]);
    let ext = labels(&[]);
    let at = chrono::DateTime::from_timestamp(1_600_000_000, 250_000_000).unwrap();
    let data = TemplateData {
        labels: &l,
        external_labels: &ext,
        external_url: "",
        value: 0.0,
        active_at: Some(at),
    };
    let out = expand(
        "t",
        "{{ $activeAt }}|{{ .ActiveAt | humanizeTimestamp }}",
        &data,
        None,
    )
    .unwrap();
    assert_eq!(
        out,
        "2020-09-13 12:26:40.25 +0000 UTC|2020-09-13 12:26:40.25 +0000 UTC"
    );
    let none = TemplateData {
        active_at: None,
        ..data
    };
    assert_eq!(
        expand(
            "t",
            "{{ if $activeAt }}x{{ else }}unknown{{ end }}",
            &none,
            None
        )
        .unwrap(),
        "unknown"
    );
}

#[test]
fn parsed_templates_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
    assert_send_sync::<TemplateError>();
}

#[test]
fn text_without_actions_is_returned_unchanged() {
    assert_eq!(
        render("plain text: {not an action}", 0.0),
        "plain text: {not an action}"
    );
}

#[test]
fn a_field_after_whitespace_is_a_new_operand_not_a_field_of_the_previous_one() {
    assert_eq!(
        render("{{ printf \"%s|%v\" $labels.job .Value }}", 2.5),
        "node|2.5"
    );
    assert_eq!(
        render("{{ printf \"%v %v\" (args 1).arg0 .Labels.job }}", 0.0),
        "1 node"
    );
}

#[test]
fn hostile_templates_fail_cleanly_instead_of_exhausting_memory_or_stack() {
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        Template::parse("t", &deep)
            .unwrap_err()
            .to_string()
            .contains("nesting too deep")
    );
    let deep_if = "{{ if 1 }}".repeat(5000);
    assert!(Template::parse("t", &deep_if).is_err());
    assert_eq!(
        render("{{ printf \"%*d\" 100000000000 1 }}", 0.0),
        "%!(BADWIDTH)1"
    );
    let self_call = "{{ define \"a\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}";
    let err = render_with(self_call, &labels(&[]), 0.0, None).unwrap_err();
    assert!(err.to_string().contains("maximum template depth"), "{err}");
    assert_eq!(
        render(
            "{{ range $i := 1000000000000 }}{{ if eq $i 3 }}{{ break }}{{ end }}{{ $i }}{{ end }}",
            0.0
        ),
        "012"
    );
    assert_eq!(
        render("{{ range 0 }}x{{ else }}empty{{ end }}", 0.0),
        "empty"
    );
}

#[test]
fn exec_errors_read_like_go_with_the_failing_node() {
    let l = labels(&[]);
    let err = render_with(
        "x\n{{ query \"up\" | first | value }}",
        &l,
        1.0,
        Some(&Empty),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: t:2: executing \"t\" at <first>: error calling first: first() called on vector with no elements"
    );
    let err = render_with("{{ $labels.job.x }}", &labels(&[("job", "a")]), 1.0, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: t:1: executing \"t\" at <$labels.job.x>: can't evaluate field x in type string"
    );
    let err = render_with("{{ template \"nope\" }}", &l, 1.0, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: t:1: executing \"t\" at <{{template \"nope\"}}>: template \"nope\" not defined"
    );
    let err = render_with("{{ humanize \"abc\" }}", &l, 1.0, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: t:1: executing \"t\" at <humanize>: error calling humanize: strconv.ParseFloat: parsing \"abc\": invalid syntax"
    );
}

struct Empty;

impl TemplateQuerier for Empty {
    fn query(&self, _q: &str) -> Result<Vec<QuerySample>, String> {
        Ok(Vec::new())
    }
}
