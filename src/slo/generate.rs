//! SLOs to rule groups: error-ratio recordings per window, budget series, and the page, ticket
//! and no-data alerts of the multiwindow, multi-burn-rate method.
//!
//! Burn-rate alerts compute their ratios inline from the SLI queries instead of reading the
//! recordings: an evaluator that writes recordings to remote storage may see them late, and a
//! late recording is a late page. The recordings are for dashboards and the budget series.

use std::collections::BTreeMap;

use super::{Decimal, NO_DATA_ALERT_NAME, SliQueries, Slo, TierAlert, render_window};
use crate::rules::file::{Rule, RuleFile, RuleGroup};

/// The short and long alert windows, with their length in seconds.
pub const ALERT_WINDOWS: [(&str, u64); 7] = [
    ("5m", 300),
    ("30m", 1800),
    ("1h", 3600),
    ("2h", 7200),
    ("6h", 21600),
    ("1d", 86400),
    ("3d", 259_200),
];

/// How long the SLI must be absent before the no-data alert fires.
pub const NO_DATA_FOR: &str = "10m";

/// Alert severity of a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Handle in working hours.
    Ticket,
}

impl Severity {
    /// The `severity` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One window pair of the method: alert when both windows burn faster than the factor that
/// spends `budget_percent` of the budget within the long window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurnWindowPair {
    /// Which alert rule the pair belongs to.
    pub severity: Severity,
    /// Long window name and seconds.
    pub long: (&'static str, u64),
    /// Short window name and seconds (a twelfth of the long one, as the workbook suggests).
    pub short: (&'static str, u64),
    /// Share of the whole budget (percent) this pair lets burn within the long window.
    pub budget_percent: i64,
}

/// The workbook's four pairs: 2% of the budget in 1h and 5% in 6h page; 10% in 1d and 10% in
/// 3d open a ticket. At a 30d window their factors are 14.4, 6, 3 and 1.
pub const WINDOW_PAIRS: [BurnWindowPair; 4] = [
    BurnWindowPair {
        severity: Severity::Page,
        long: ("1h", 3600),
        short: ("5m", 300),
        budget_percent: 2,
    },
    BurnWindowPair {
        severity: Severity::Page,
        long: ("6h", 21600),
        short: ("30m", 1800),
        budget_percent: 5,
    },
    BurnWindowPair {
        severity: Severity::Ticket,
        long: ("1d", 86400),
        short: ("2h", 7200),
        budget_percent: 10,
    },
    BurnWindowPair {
        severity: Severity::Ticket,
        long: ("3d", 259_200),
        short: ("6h", 21600),
        budget_percent: 10,
    },
];

/// Burn-rate factor that consumes `budget_percent` of the budget of a `window_days` SLO within
/// `long_secs`: `budget_percent / 100 × window / long window`.
pub fn burn_factor(budget_percent: i64, window_days: u32, long_secs: u64) -> Decimal {
    Decimal::ratio(budget_percent, 100)
        * Decimal::from_int(i64::from(window_days) * 86400)
        * Decimal::ratio(1, long_secs as i64)
}

/// The error budget as a ratio: `1 − objective/100`.
pub fn error_budget(objective_percent: Decimal) -> Decimal {
    Decimal::from_int(1) - objective_percent * Decimal::ratio(1, 100)
}

/// The error-ratio threshold of a pair: factor × budget.
pub fn threshold(pair: &BurnWindowPair, slo: &Slo) -> Decimal {
    burn_factor(pair.budget_percent, slo.window_days, pair.long.1) * error_budget(slo.objective)
}

/// All groups for the given SLOs, in order.
pub fn rule_file(slos: &[Slo]) -> RuleFile {
    RuleFile {
        groups: slos.iter().flat_map(slo_groups).collect(),
    }
}

/// The group of one SLO, `slo-<id>`: SLI recordings, then budget series, then alerts.
///
/// One group, because rules of a group run in order at the same timestamp: the budget series
/// read this evaluation's SLI recordings, and alert annotations read this evaluation's budget.
/// Across groups the order is unspecified, so a reader could see the previous interval's value.
pub fn slo_groups(slo: &Slo) -> Vec<RuleGroup> {
    let mut rules = sli_recordings(slo);
    rules.extend(budget_recordings(slo));
    rules.extend(alerts(slo));
    vec![group(format!("slo-{}", slo.id), rules)]
}

fn group(name: String, rules: Vec<Rule>) -> RuleGroup {
    RuleGroup {
        name,
        rules,
        ..RuleGroup::default()
    }
}

/// Labels every rule of an SLO carries.
pub fn base_labels(slo: &Slo) -> BTreeMap<String, String> {
    let mut labels = slo.labels.clone();
    labels.insert("slo".into(), slo.id.clone());
    labels.insert("service".into(), slo.service.clone());
    if let Some(ns) = &slo.namespace {
        labels.insert("namespace".into(), ns.clone());
    }
    if let Some(owner) = &slo.owner {
        labels.insert("owner".into(), owner.clone());
    }
    labels
}

fn record(name: String, expr: String, labels: BTreeMap<String, String>) -> Rule {
    Rule {
        record: Some(name),
        expr,
        labels,
        ..Rule::default()
    }
}

/// Name of the full SLO window (`30d`).
pub fn window_name(slo: &Slo) -> String {
    format!("{}d", slo.window_days)
}

fn sli_recordings(slo: &Slo) -> Vec<Rule> {
    let labels = base_labels(slo);
    let sel = format!("{{slo=\"{}\"}}", super::spec::promql_string(&slo.id));
    let full = window_name(slo);
    let mut rules = Vec::new();
    match &slo.sli {
        SliQueries::Events { errors, total, .. } => {
            for (w, _) in ALERT_WINDOWS {
                rules.push(record(
                    format!("slo:sli_errors:rate{w}"),
                    render_window(errors, w),
                    labels.clone(),
                ));
                rules.push(record(
                    format!("slo:sli_requests:rate{w}"),
                    render_window(total, w),
                    labels.clone(),
                ));
                rules.push(record(
                    format!("slo:sli_error:ratio_rate{w}"),
                    format!("slo:sli_errors:rate{w}{sel} / slo:sli_requests:rate{w}{sel}"),
                    labels.clone(),
                ));
            }
            // Averages of the 5m rates over the window: their quotient is total bad events over
            // total events (traffic-weighted), at the cost of reading recordings only.
            for kind in ["errors", "requests"] {
                rules.push(record(
                    format!("slo:sli_{kind}:rate{full}"),
                    format!("avg_over_time(slo:sli_{kind}:rate5m{sel}[{full}])"),
                    labels.clone(),
                ));
            }
            rules.push(record(
                format!("slo:sli_error:ratio_rate{full}"),
                format!("slo:sli_errors:rate{full}{sel} / slo:sli_requests:rate{full}{sel}"),
                labels.clone(),
            ));
        }
        SliQueries::Ratio { ratio } => {
            for (w, _) in ALERT_WINDOWS {
                rules.push(record(
                    format!("slo:sli_error:ratio_rate{w}"),
                    render_window(ratio, w),
                    labels.clone(),
                ));
            }
            // A ready-made ratio cannot be weighted by traffic: this is the mean 5m ratio.
            rules.push(record(
                format!("slo:sli_error:ratio_rate{full}"),
                format!("avg_over_time(slo:sli_error:ratio_rate5m{sel}[{full}])"),
                labels.clone(),
            ));
        }
    }
    rules
}

fn budget_recordings(slo: &Slo) -> Vec<Rule> {
    let labels = base_labels(slo);
    let sel = format!("{{slo=\"{}\"}}", super::spec::promql_string(&slo.id));
    let full = window_name(slo);
    let budget = error_budget(slo.objective);
    let objective_ratio = slo.objective * Decimal::ratio(1, 100);
    let mut info = labels.clone();
    info.insert("objective".into(), slo.objective.to_string());
    info.insert("window".into(), full.clone());
    info.insert("sli".into(), slo.sli_kind.clone());
    if !slo.description.is_empty() {
        info.insert("description".into(), slo.description.trim().to_string());
    }
    vec![
        record(
            "slo:objective:ratio".into(),
            format!("vector({objective_ratio})"),
            labels.clone(),
        ),
        record(
            "slo:error_budget:ratio".into(),
            format!("vector({budget})"),
            labels.clone(),
        ),
        record(
            "slo:error_budget:remaining_ratio".into(),
            format!("1 - slo:sli_error:ratio_rate{full}{sel} / {budget}"),
            labels.clone(),
        ),
        record("slo:info".into(), "vector(1)".into(), info),
    ]
}

/// Error ratio over a window, written out from the SLI queries.
fn inline_ratio(slo: &Slo, window: &str) -> String {
    match &slo.sli {
        SliQueries::Events { errors, total, .. } => format!(
            "({}) / ({})",
            one_line(&render_window(errors, window)),
            one_line(&render_window(total, window))
        ),
        SliQueries::Ratio { ratio } => format!("({})", one_line(&render_window(ratio, window))),
    }
}

/// Events over a window for the traffic guard.
fn inline_count(slo: &Slo, window: &str, secs: u64) -> Option<String> {
    match &slo.sli {
        SliQueries::Events {
            total_count: Some(count),
            ..
        } => Some(render_window(count, window)),
        SliQueries::Events { total, .. } => Some(format!(
            "({}) * {secs}",
            one_line(&render_window(total, window))
        )),
        SliQueries::Ratio { .. } => None,
    }
}

/// Collapses a multi-line query (Sloth specs use YAML block scalars) to one line.
fn one_line(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The alert expression of one window pair; its value is the long window's burn rate and it
/// carries `long_window`, `short_window` and `burn_rate_threshold` labels.
pub fn pair_expr(slo: &Slo, pair: &BurnWindowPair) -> String {
    let thr = threshold(pair, slo);
    let factor = burn_factor(pair.budget_percent, slo.window_days, pair.long.1);
    let budget = error_budget(slo.objective);
    let mut cond = format!(
        "    {} > {thr}\n  and\n    {} > {thr}",
        inline_ratio(slo, pair.long.0),
        inline_ratio(slo, pair.short.0)
    );
    if slo.alerting.min_requests > 0
        && let Some(count) = inline_count(slo, pair.long.0, pair.long.1)
    {
        cond.push_str(&format!(
            "\n  and\n    {count} >= {}",
            slo.alerting.min_requests
        ));
    }
    format!(
        "label_replace(label_replace(label_replace(\n  (\n{cond}\n  ) / {budget},\n  \"long_window\", \"{}\", \"\", \"\"), \"short_window\", \"{}\", \"\", \"\"), \"burn_rate_threshold\", \"{factor}\", \"\", \"\")",
        pair.long.0, pair.short.0
    )
}

fn alerts(slo: &Slo) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (severity, tier) in [
        (Severity::Page, &slo.alerting.page),
        (Severity::Ticket, &slo.alerting.ticket),
    ] {
        let Some(tier) = tier else { continue };
        let exprs: Vec<String> = WINDOW_PAIRS
            .iter()
            .filter(|p| p.severity == severity)
            .map(|p| pair_expr(slo, p))
            .collect();
        rules.push(burn_alert(slo, severity, tier, exprs.join("\nor\n")));
    }
    if slo.alerting.no_data {
        rules.push(no_data_alert(slo));
    }
    rules
}

fn common_annotations(slo: &Slo) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    if let Some(url) = &slo.alerting.runbook_url {
        a.insert("runbook_url".into(), url.clone());
    }
    a.insert("dashboard".into(), slo.alerting.dashboard_url.clone());
    a.insert(
        "suggested_action".into(),
        slo.alerting.suggested_action.clone(),
    );
    a
}

fn burn_alert(slo: &Slo, severity: Severity, tier: &TierAlert, expr: String) -> Rule {
    let full = window_name(slo);
    let window_secs = u64::from(slo.window_days) * 86400;
    let mut labels = base_labels(slo);
    labels.insert("severity".into(), severity.as_str().into());
    labels.extend(slo.alerting.labels.clone());
    labels.extend(tier.labels.clone());
    if slo.sli_kind.starts_with("sloth") {
        labels.insert("sloth_severity".into(), severity.as_str().into());
    }
    let mut annotations = common_annotations(slo);
    annotations.insert(
        "summary".into(),
        format!(
            "{}: SLO {} ({}% over {full}) is burning its error budget {{{{ printf \"%.1f\" $value }}}}x too fast",
            where_(slo),
            slo.id,
            slo.objective
        ),
    );
    annotations.insert(
        "description".into(),
        format!(
            "Over the last {{{{ $labels.long_window }}}} the error ratio of SLO {id} was {{{{ printf \"%.1f\" $value }}}} times the rate its {obj}% objective allows (alert threshold {{{{ $labels.burn_rate_threshold }}}}x over both {{{{ $labels.long_window }}}} and {{{{ $labels.short_window }}}}). Error budget left over {full}: {{{{ with query `slo:error_budget:remaining_ratio{{slo=\"{sel_id}\"}}` }}}}{{{{ $left := . | first | value }}}}{{{{ if gt $left 0.0 }}}}{{{{ humanizePercentage $left }}}}{{{{ else }}}}none, it is spent{{{{ end }}}}{{{{ else }}}}unknown{{{{ end }}}}. At this burn rate a full budget lasts {{{{ with printf \"vector({window_secs} / %f)\" $value | query }}}}{{{{ . | first | value | humanizeDuration }}}}{{{{ end }}}}.",
            id = slo.id,
            obj = slo.objective,
            // The id goes into a Go template raw string and a PromQL string.
            sel_id = super::spec::promql_string(&slo.id).replace('`', ""),
        ),
    );
    annotations.extend(slo.alerting.annotations.clone());
    annotations.extend(tier.annotations.clone());
    Rule {
        alert: Some(slo.alerting.name.clone()),
        expr,
        labels,
        annotations,
        ..Rule::default()
    }
}

fn where_(slo: &Slo) -> String {
    match &slo.namespace {
        Some(ns) => format!("{} in {ns}", slo.service),
        None => slo.service.clone(),
    }
}

fn no_data_alert(slo: &Slo) -> Rule {
    let presence = match &slo.sli {
        SliQueries::Events { presence, .. } => one_line(presence),
        SliQueries::Ratio { ratio } => one_line(&render_window(ratio, "10m")),
    };
    let mut labels = base_labels(slo);
    labels.insert("severity".into(), "ticket".into());
    labels.extend(slo.alerting.labels.clone());
    let mut annotations = common_annotations(slo);
    annotations.insert(
        "summary".into(),
        format!("{}: SLO {} has no data", where_(slo), slo.id),
    );
    annotations.insert(
        "description".into(),
        format!(
            "The SLI series of SLO {} have been absent for {NO_DATA_FOR}, so its burn-rate alerts cannot fire. Check that the workload still exists and is scraped, and that Prometheus scrapes the kubesignal agents.",
            slo.id
        ),
    );
    Rule {
        alert: Some(NO_DATA_ALERT_NAME.into()),
        expr: format!("absent({presence})"),
        for_: Some(NO_DATA_FOR.into()),
        labels,
        annotations,
        ..Rule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn slo(text: &str) -> Slo {
        super::super::load_str(Path::new("t.yaml"), text)
            .unwrap()
            .remove(0)
    }

    const BASE: &str = "service: checkout\nnamespace: shop\nowner: team-payments\n";

    #[test]
    fn thirty_day_factors_are_the_workbook_ones() {
        let f: Vec<String> = WINDOW_PAIRS
            .iter()
            .map(|p| burn_factor(p.budget_percent, 30, p.long.1).to_string())
            .collect();
        assert_eq!(f, ["14.4", "6", "3", "1"]);
    }

    #[test]
    fn factors_scale_with_the_window_like_sloths_28_day_table() {
        let f: Vec<String> = WINDOW_PAIRS
            .iter()
            .map(|p| burn_factor(p.budget_percent, 28, p.long.1).to_string())
            .collect();
        assert_eq!(f, ["13.44", "5.6", "2.8", "0.933333333333333"]);
        let week: Vec<String> = WINDOW_PAIRS
            .iter()
            .map(|p| burn_factor(p.budget_percent, 7, p.long.1).to_string())
            .collect();
        assert_eq!(week, ["3.36", "1.4", "0.7", "0.233333333333333"]);
    }

    #[test]
    fn thresholds_in_the_rules_are_exact_decimals() {
        let s = slo(&format!("{BASE}objective: 99.9\n"));
        let thr: Vec<String> = WINDOW_PAIRS
            .iter()
            .map(|p| threshold(p, &s).to_string())
            .collect();
        assert_eq!(thr, ["0.0144", "0.006", "0.003", "0.001"]);
        let page = pair_expr(&s, &WINDOW_PAIRS[0]);
        assert!(page.contains("> 0.0144\n"), "{page}");
        assert!(page.contains(") / 0.001,"), "{page}");
        assert!(!page.contains("000000"), "{page}");
    }

    #[test]
    fn alert_expressions_do_not_read_recorded_series() {
        let s = slo(&format!("{BASE}objective: 99.5\n"));
        let file = rule_file(&[s]);
        for rule in file.groups.iter().flat_map(|g| &g.rules) {
            if rule.alert.is_some() {
                assert!(!rule.expr.contains("slo:"), "{}", rule.expr);
                promql_parser::parser::parse(&rule.expr).unwrap();
            }
        }
    }

    #[test]
    fn the_traffic_guard_is_added_to_every_pair_only_when_asked_for() {
        let s = slo(&format!("{BASE}objective: 99.9\n"));
        assert!(!pair_expr(&s, &WINDOW_PAIRS[0]).contains("increase"));
        let guarded = slo(&format!(
            "{BASE}objective: 99.9\nalerting:\n  min_requests: 500\n"
        ));
        for p in &WINDOW_PAIRS {
            let e = pair_expr(&guarded, p);
            assert!(
                e.contains(&format!(
                    "sum(increase(kubesignal_red_requests_total{{namespace=\"shop\", workload=\"checkout\"}}[{}])) >= 500",
                    p.long.0
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn long_window_ratios_divide_recorded_totals_not_average_ratios() {
        let s = slo(&format!("{BASE}objective: 99.9\nwindow: 28d\n"));
        let file = rule_file(&[s]);
        let sli = &file.groups[0].rules;
        let full = sli
            .iter()
            .find(|r| r.record.as_deref() == Some("slo:sli_error:ratio_rate28d"))
            .unwrap();
        assert_eq!(
            full.expr,
            "slo:sli_errors:rate28d{slo=\"checkout-availability\"} / slo:sli_requests:rate28d{slo=\"checkout-availability\"}"
        );
        let errors = sli
            .iter()
            .find(|r| r.record.as_deref() == Some("slo:sli_errors:rate28d"))
            .unwrap();
        assert!(
            errors
                .expr
                .starts_with("avg_over_time(slo:sli_errors:rate5m{")
        );
        for w in ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] {
            assert!(
                sli.iter()
                    .any(|r| r.record.as_deref() == Some(&format!("slo:sli_error:ratio_rate{w}"))),
                "{w}"
            );
        }
    }
}
