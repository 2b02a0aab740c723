//! The promtool unit-test file, as plain serde types. Unknown keys are errors, as in promtool
//! (`yaml.UnmarshalStrict`), so a field from a newer promtool (e.g. `start_timestamp`) fails
//! the file instead of being silently ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A whole test file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rule files (paths relative to the test file, globs allowed).
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Step of the rule evaluations; 1m when absent or zero.
    #[serde(default, deserialize_with = "duration")]
    pub evaluation_interval: Option<Duration>,
    /// Names of groups to evaluate first, in this order.
    #[serde(default)]
    pub group_eval_order: Vec<String>,
    /// Test groups, each with its own input series.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tests: Vec<TestGroup>,
}

/// A set of input series and the expectations checked against them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestGroup {
    /// Time between two values of the input series (0 when absent, as in promtool 2.42).
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    /// The input series.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_series: Vec<InputSeries>,
    /// Expected firing alerts at given times.
    #[serde(default, deserialize_with = "null_as_default")]
    pub alert_rule_test: Vec<AlertTestCase>,
    /// Expected results of PromQL expressions at given times.
    #[serde(default, deserialize_with = "null_as_default")]
    pub promql_expr_test: Vec<PromqlTestCase>,
    /// `$externalLabels` of the templates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` of the templates.
    #[serde(default)]
    pub external_url: String,
    /// Name shown in failure messages.
    #[serde(default)]
    pub name: String,
}

/// One input series.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    /// `metric{label="value"}`.
    #[serde(default, deserialize_with = "scalar_text")]
    pub series: String,
    /// Values in the expanding notation.
    #[serde(default, deserialize_with = "scalar_text")]
    pub values: String,
}

/// Expected alerts of one alert name at one time.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTestCase {
    /// When to check, from the start of the test.
    #[serde(default, deserialize_with = "duration")]
    pub eval_time: Option<Duration>,
    /// The alerting rule's name.
    #[serde(default)]
    pub alertname: String,
    /// The firing alerts expected, in any order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exp_alerts: Vec<ExpectedAlert>,
}

/// One expected alert.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    /// Labels besides `alertname`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exp_labels: BTreeMap<String, String>,
    /// Annotations after template expansion.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exp_annotations: BTreeMap<String, String>,
}

/// An expression and its expected result.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromqlTestCase {
    /// The PromQL expression.
    #[serde(default)]
    pub expr: String,
    /// When to evaluate it.
    #[serde(default, deserialize_with = "duration")]
    pub eval_time: Option<Duration>,
    /// The expected samples, in any order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exp_samples: Vec<ExpectedSample>,
}

/// One expected sample.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedSample {
    /// The series in `metric{label="value"}` form (empty for no labels).
    #[serde(default, deserialize_with = "scalar_text")]
    pub labels: String,
    /// The value.
    #[serde(default)]
    pub value: f64,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string field that YAML may also give as a number or boolean (`values: 1`). Like Go's YAML
/// decoder, the scalar's text is kept as written: `0x10` stays `0x10` (0, eleven times), it is
/// not read as the hexadecimal number 16.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    d.deserialize_str(Text)
}

/// A Prometheus duration (`5m`, `1h30m`, `0`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = scalar_text(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    crate::rules::duration::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_and_scalar_values_decode() {
        let f: TestFile = serde_yaml_ng::from_str(
            "rule_files: [r.yml]\ntests:\n- input_series:\n  - {series: x, values: 1}\n  - {series: y, values: 0x10}\n  promql_expr_test:\n  - {expr: x, eval_time: 0, exp_samples: [{labels: x, value: 1}]}\n",
        )
        .unwrap();
        assert_eq!(f.tests[0].input_series[0].values, "1");
        assert_eq!(f.tests[0].input_series[1].values, "0x10", "kept as written");
        assert_eq!(f.tests[0].interval, None);
        assert_eq!(
            f.tests[0].promql_expr_test[0].eval_time,
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn an_unknown_field_is_an_error_naming_it_and_its_line() {
        let e =
            serde_yaml_ng::from_str::<TestFile>("tests:\n- interval: 1m\n  start_timestamp: 0\n")
                .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("start_timestamp"), "{msg}");
        assert_eq!(e.location().map(|l| l.line()), Some(3), "{msg}");
    }
}
