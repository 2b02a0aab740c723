//! The Prometheus rule file format (`groups:` of recording and alerting rules), as plain serde
//! types. Unknown keys that other tools add (vmalert's `eval_offset`, `concurrency`, ...) are kept
//! in `extra` so files shared between tools still load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole rule file: `groups: [...]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleFile {
    /// Rule groups, evaluated independently of each other.
    pub groups: Vec<RuleGroup>,
}

/// One group of rules, evaluated in order at the group's interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleGroup {
    /// Group name, unique within a file.
    pub name: String,
    /// Evaluation interval as a Prometheus duration (`30s`, `1m`); global default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// How far in the past every query of the group is evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_offset: Option<String>,
    /// Maximum number of alerts or series a rule may produce; 0 means no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
    /// Labels added to every rule of the group (rule labels win on collision).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The rules, in evaluation order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Keys of other tools (vmalert and friends), accepted and ignored.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_yaml_ng::Value>,
}

/// A recording rule (`record`) or an alerting rule (`alert`); exactly one of the two is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Name of the series a recording rule writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Name of the alert an alerting rule raises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The PromQL expression.
    pub expr: String,
    /// How long an alert stays pending before it fires.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// How long an alert keeps firing after its condition cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// Labels added to the result (templated for alerts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of an alert (templated).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Keys of other tools, accepted and ignored.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_yaml_ng::Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_file_survives_a_yaml_round_trip() {
        let text = r#"
groups:
  - name: example
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 5m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} is down"}
"#;
        let file: RuleFile = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(file.groups[0].rules[1].for_.as_deref(), Some("5m"));
        let again: RuleFile =
            serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&file).unwrap()).unwrap();
        assert_eq!(file, again);
    }
}
