//! Query results in one comparable shape, read from our engine's values and from Prometheus's
//! HTTP API, the comparison between the two, and our values encoded by the embedded API.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::evaluator::query_api::{query_body, query_range_body};
use crate::promql::{Labels, Series, Value};

/// One result series: labels (sorted) and points `(t_ms, value)`. A scalar is one series with
/// no labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultSeries {
    /// Labels, `__name__` included when the result keeps it.
    pub labels: BTreeMap<String, String>,
    /// Points in time order.
    pub points: Vec<(i64, f64)>,
}

/// A query result: its type (`vector`, `matrix`, `scalar`, `string`) and its series.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The HTTP API's `resultType`.
    pub kind: String,
    /// The series, sorted by labels.
    pub series: Vec<ResultSeries>,
}

fn label_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sorted(kind: &str, mut series: Vec<ResultSeries>) -> QueryResult {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    QueryResult {
        kind: kind.to_string(),
        series,
    }
}

impl QueryResult {
    /// Our engine's instant-query value.
    pub fn from_value(v: &Value) -> QueryResult {
        match v {
            Value::Scalar(p) => sorted(
                "scalar",
                vec![ResultSeries {
                    labels: BTreeMap::new(),
                    points: vec![(p.t, p.v)],
                }],
            ),
            Value::String(t, _) => sorted(
                "string",
                vec![ResultSeries {
                    labels: BTreeMap::new(),
                    points: vec![(*t, f64::NAN)],
                }],
            ),
            Value::Vector(samples) => sorted(
                "vector",
                samples
                    .iter()
                    .map(|s| ResultSeries {
                        labels: label_map(&s.labels),
                        points: vec![(s.t, s.v)],
                    })
                    .collect(),
            ),
            Value::Matrix(m) => Self::from_matrix(m),
        }
    }

    /// Our engine's range-query value.
    pub fn from_matrix(m: &[Series]) -> QueryResult {
        sorted(
            "matrix",
            m.iter()
                .map(|s| ResultSeries {
                    labels: label_map(&s.labels),
                    points: s.points.iter().map(|p| (p.t, p.v)).collect(),
                })
                .collect(),
        )
    }

    /// Number of points over all series.
    pub fn point_count(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

/// What the HTTP API answered, decoded.
#[derive(Clone, Debug)]
pub struct ApiAnswer {
    /// The result.
    pub result: QueryResult,
    /// Prometheus's own time for the query (`stats.timings.execTotalTime`), seconds, when it
    /// reported one.
    pub exec_seconds: Option<f64>,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
    #[serde(default)]
    stats: Option<Stats>,
}

#[derive(Deserialize)]
struct Stats {
    timings: Timings,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Timings {
    exec_total_time: f64,
}

#[derive(Deserialize)]
struct ApiSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Option<Vec<(f64, String)>>,
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|e| format!("value {s:?}: {e}")),
    }
}

fn point((t, v): &(f64, String)) -> Result<(i64, f64), String> {
    Ok(((t * 1000.0).round() as i64, parse_value(v)?))
}

/// Decodes a `/api/v1/query` or `/api/v1/query_range` body. Errors say what is wrong.
pub fn decode_api(body: &[u8]) -> Result<ApiAnswer, String> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| format!("not API JSON: {e}"))?;
    if env.status != "success" {
        return Err(format!(
            "status {}: {}",
            env.status,
            env.error.unwrap_or_default()
        ));
    }
    let data = env.data.ok_or("success without data")?;
    let series = match data.result_type.as_str() {
        "scalar" | "string" => {
            let p: (f64, String) =
                serde_json::from_value(data.result).map_err(|e| format!("scalar: {e}"))?;
            let v = if data.result_type == "scalar" {
                parse_value(&p.1)?
            } else {
                f64::NAN
            };
            vec![ResultSeries {
                labels: BTreeMap::new(),
                points: vec![((p.0 * 1000.0).round() as i64, v)],
            }]
        }
        "vector" | "matrix" => {
            let raw: Vec<ApiSeries> =
                serde_json::from_value(data.result).map_err(|e| format!("series: {e}"))?;
            let mut out = Vec::with_capacity(raw.len());
            for s in raw {
                let points = match (s.value, s.values) {
                    (Some(p), _) => vec![point(&p)?],
                    (None, Some(ps)) => ps.iter().map(point).collect::<Result<_, _>>()?,
                    (None, None) => return Err("series without value(s)".into()),
                };
                out.push(ResultSeries {
                    labels: s.metric,
                    points,
                });
            }
            out
        }
        other => return Err(format!("unknown resultType {other:?}")),
    };
    Ok(ApiAnswer {
        result: sorted(&data.result_type, series),
        exec_seconds: data.stats.map(|s| s.timings.exec_total_time),
    })
}

/// Relative tolerance for equal values; values both within [`ABS_TOLERANCE`] of zero are also
/// equal, since summing in a different order can leave 1e-17 where the other engine has 0.
pub const REL_TOLERANCE: f64 = 1e-9;
/// See [`REL_TOLERANCE`].
pub const ABS_TOLERANCE: f64 = 1e-12;

fn same_value(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    diff <= REL_TOLERANCE * a.abs().max(b.abs())
        || (a.abs() <= ABS_TOLERANCE && b.abs() <= ABS_TOLERANCE)
}

fn show_labels(l: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// The differences between `ours` and Prometheus's `theirs`, at most `limit` of them, in words.
/// Empty when the results agree.
pub fn differences(ours: &QueryResult, theirs: &QueryResult, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    if ours.kind != theirs.kind {
        out.push(format!(
            "result type: ours {}, Prometheus {}",
            ours.kind, theirs.kind
        ));
    }
    if ours.series.len() != theirs.series.len() {
        out.push(format!(
            "series count: ours {}, Prometheus {}",
            ours.series.len(),
            theirs.series.len()
        ));
    }
    let index: BTreeMap<_, _> = ours.series.iter().map(|s| (&s.labels, s)).collect();
    for t in &theirs.series {
        let Some(o) = index.get(&t.labels) else {
            out.push(format!(
                "series {} missing from ours (Prometheus has {} points, first {:?})",
                show_labels(&t.labels),
                t.points.len(),
                t.points.first()
            ));
            continue;
        };
        if o.points.len() != t.points.len() {
            out.push(format!(
                "series {}: ours {} points, Prometheus {}",
                show_labels(&t.labels),
                o.points.len(),
                t.points.len()
            ));
        }
        let theirs_at: BTreeMap<i64, f64> = t.points.iter().copied().collect();
        for &(ts, v) in &o.points {
            match theirs_at.get(&ts) {
                None => out.push(format!(
                    "series {} at {ts}: ours {v}, Prometheus has no point",
                    show_labels(&t.labels)
                )),
                Some(&w) if !same_value(v, w) => out.push(format!(
                    "series {} at {ts}: ours {v}, Prometheus {w}",
                    show_labels(&t.labels)
                )),
                Some(_) => {}
            }
            if out.len() >= limit {
                return out;
            }
        }
    }
    let theirs_labels: std::collections::BTreeSet<_> =
        theirs.series.iter().map(|s| &s.labels).collect();
    for o in &ours.series {
        if !theirs_labels.contains(&o.labels) {
            out.push(format!(
                "series {} only in ours ({} points, first {:?})",
                show_labels(&o.labels),
                o.points.len(),
                o.points.first()
            ));
        }
    }
    out.truncate(limit);
    out
}

/// Our instant-query value as the embedded evaluator's `/api/v1/query` sends it.
pub fn encode_value(v: &Value) -> String {
    query_body(v).to_string()
}

/// Our range-query value as the embedded evaluator's `/api/v1/query_range` sends it.
pub fn encode_matrix(m: &[Series]) -> String {
    query_range_body(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{Point, Sample};

    fn vector(v: f64) -> Value {
        Value::Vector(vec![Sample {
            labels: Labels::from_pairs([("workload", "svc-0")]),
            t: 1_500,
            v,
        }])
    }

    #[test]
    fn our_encoding_decodes_back_to_the_same_result() {
        for v in [
            vector(0.1 + 0.2),
            vector(f64::NAN),
            vector(f64::INFINITY),
            Value::Scalar(Point { t: 2_000, v: -3.5 }),
        ] {
            let decoded = decode_api(encode_value(&v).as_bytes()).unwrap();
            assert!(differences(&QueryResult::from_value(&v), &decoded.result, 5).is_empty());
        }
        let m = vec![Series {
            labels: Labels::from_pairs([("a", "\"quoted\"")]),
            points: vec![
                Point { t: 0, v: 1.0 },
                Point {
                    t: 60_000,
                    v: 1e-300,
                },
            ],
        }];
        let decoded = decode_api(encode_matrix(&m).as_bytes()).unwrap();
        assert_eq!(decoded.result, QueryResult::from_matrix(&m));
    }

    #[test]
    fn a_value_off_by_more_than_the_tolerance_is_reported_with_both_numbers() {
        let ours = QueryResult::from_value(&vector(1.0));
        let theirs = QueryResult::from_value(&vector(1.0 + 1e-6));
        let diff = differences(&ours, &theirs, 5);
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(diff[0].contains("ours 1,"), "{}", diff[0]);
        let close = QueryResult::from_value(&vector(1.0 + 1e-12));
        assert!(differences(&ours, &close, 5).is_empty());
    }

    #[test]
    fn missing_and_extra_series_are_both_reported() {
        let ours = QueryResult::from_value(&vector(1.0));
        let theirs = QueryResult::from_value(&Value::Vector(vec![Sample {
            labels: Labels::from_pairs([("workload", "svc-1")]),
            t: 1_500,
            v: 1.0,
        }]));
        let diff = differences(&ours, &theirs, 5);
        assert!(
            diff.iter().any(|d| d.contains("missing from ours")),
            "{diff:?}"
        );
        assert!(diff.iter().any(|d| d.contains("only in ours")), "{diff:?}");
    }

    #[test]
    fn api_errors_and_stats_are_decoded() {
        let err = decode_api(br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
            .unwrap_err();
        assert!(err.contains("parse error"), "{err}");
        let ok = decode_api(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"+Inf"]}],"stats":{"timings":{"execTotalTime":0.25}}}}"#,
        )
        .unwrap();
        assert_eq!(ok.exec_seconds, Some(0.25));
        assert_eq!(ok.result.series[0].points, vec![(1_500, f64::INFINITY)]);
    }
}
