//! The fixed list of dashboard and SLO queries both engines answer.

use super::data::END_MS;

/// Whether a query is an instant or a range query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Evaluated at one instant.
    Instant {
        /// Evaluation time, milliseconds.
        t: i64,
    },
    /// Evaluated at every step from `start` to `end`.
    Range {
        /// First step, milliseconds.
        start: i64,
        /// Last step, milliseconds.
        end: i64,
        /// Step, milliseconds.
        step: i64,
    },
}

/// One benchmark query.
#[derive(Clone, Debug)]
pub struct Query {
    /// Short name for the table.
    pub name: String,
    /// The PromQL text.
    pub expr: String,
    /// Instant or range.
    pub kind: Kind,
}

const REQ: &str = "kubesignal_red_requests_total";
const ERR: &str = "kubesignal_red_errors_total";
const SLO_SEL: &str = r#"{namespace="team-a", workload="svc-0"}"#;

/// The error ratio of one SLO over `w`, written as the SLO generator writes it (`or 0 * ...`
/// keeps it defined when no error counter exists yet).
fn slo_ratio(w: &str) -> String {
    format!(
        "((sum(rate({ERR}{SLO_SEL}[{w}])) or 0 * sum(rate({REQ}{SLO_SEL}[{w}])))) / (sum(rate({REQ}{SLO_SEL}[{w}])))"
    )
}

/// A multiwindow burn-rate alert expression as `kubesignal slo generate` emits it for a 99.5%
/// objective (see `alerts/slo-demo.rules.yaml`): two window pairs, each labelled; the limits are
/// burn-rate factor times the 0.5% budget, written as the generator writes them.
fn burn_rate(pairs: [(&str, &str, &str, &str); 2]) -> String {
    let arm = |(long, short, limit, threshold): (&str, &str, &str, &str)| {
        format!(
            "label_replace(label_replace(label_replace(({} > {limit} and {} > {limit}) / 0.005, \
             \"long_window\", \"{long}\", \"\", \"\"), \"short_window\", \"{short}\", \"\", \"\"), \
             \"burn_rate_threshold\", \"{threshold}\", \"\", \"\")",
            slo_ratio(long),
            slo_ratio(short)
        )
    };
    format!("{} or {}", arm(pairs[0]), arm(pairs[1]))
}

/// The queries, evaluated at the end of the data (range queries over its last day).
pub fn queries() -> Vec<Query> {
    let at = Kind::Instant { t: END_MS };
    let q = |name: &str, expr: String| Query {
        name: name.to_string(),
        expr,
        kind: at,
    };
    let mut out = vec![q(
        "requests/s by workload, 5m",
        format!("sum by (workload) (rate({REQ}[5m]))"),
    )];
    for w in ["5m", "30m", "1h", "6h", "1d", "3d", "30d"] {
        out.push(q(
            &format!("error ratio by workload, {w}"),
            format!("sum by (workload) (rate({ERR}[{w}])) / sum by (workload) (rate({REQ}[{w}]))"),
        ));
    }
    out.push(q(
        "p99 latency by workload, 5m",
        "histogram_quantile(0.99, sum by (le, workload) (rate(kubesignal_red_request_duration_seconds_bucket[5m])))".into(),
    ));
    out.push(q(
        "burn-rate page alert (1h/5m, 6h/30m)",
        burn_rate([("1h", "5m", "0.072", "14.4"), ("6h", "30m", "0.03", "6")]),
    ));
    out.push(q(
        "burn-rate ticket alert (1d/2h, 3d/6h)",
        burn_rate([("1d", "2h", "0.015", "3"), ("3d", "6h", "0.005", "1")]),
    ));
    out.push(q(
        "requests by workload and code, increase 30d",
        format!("sum by (workload, code) (increase({REQ}[30d]))"),
    ));
    out.push(q(
        "avg_over_time of a recorded ratio, 30d",
        "avg_over_time(slo:sli_error:ratio_rate5m[30d])".into(),
    ));
    out.push(q(
        "topk 3 routes by requests/s, 1h",
        format!("topk(3, sum by (workload, route) (rate({REQ}[1h])))"),
    ));
    out.push(q(
        "max memory by workload, 1d",
        "max by (workload) (max_over_time(kubesignal_pod_memory_working_set_bytes[1d]))".into(),
    ));
    let day = Kind::Range {
        start: END_MS - 86_400_000,
        end: END_MS,
        step: 60_000,
    };
    out.push(Query {
        name: "range 1d/1m: requests/s by workload".into(),
        expr: format!("sum by (workload) (rate({REQ}[5m]))"),
        kind: day,
    });
    out.push(Query {
        name: "range 1d/1m: p95 latency by workload".into(),
        expr: "histogram_quantile(0.95, sum by (le, workload) (rate(kubesignal_red_request_duration_seconds_bucket[5m])))".into(),
        kind: day,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_parses_as_promql() {
        for q in queries() {
            promql_parser::parser::parse(&q.expr)
                .unwrap_or_else(|e| panic!("{}: {e}: {}", q.name, q.expr));
        }
    }

    #[test]
    fn burn_rate_expressions_are_the_ones_the_slo_generator_emits() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/alerts/slo-demo.rules.yaml"
        ))
        .unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let generated: Vec<String> = doc["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|g| g["name"].as_str() == Some("slo-demo-availability"))
            .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
            .filter(|r| r["alert"].as_str() == Some("SLOErrorBudgetBurn"))
            .map(|r| {
                let expr = r["expr"].as_str().unwrap().replace(
                    r#"namespace="demo", workload="demo""#,
                    r#"namespace="team-a", workload="svc-0""#,
                );
                promql_parser::parser::parse(&expr).unwrap().to_string()
            })
            .collect();
        assert_eq!(generated.len(), 2);
        let ours: Vec<String> = queries()
            .iter()
            .filter(|q| q.name.starts_with("burn-rate"))
            .map(|q| promql_parser::parser::parse(&q.expr).unwrap().to_string())
            .collect();
        assert_eq!(ours, generated);
    }
}
