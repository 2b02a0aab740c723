//! Backtest of the generated burn-rate alerts over synthetic incidents, with the real promtool
//! as the rule engine (until the evaluator's replay lands).
//!
//! Each scenario is three days of clean traffic (so every alert window is full), an incident,
//! and a tail. promtool evaluates the generated alert rules every minute; a final
//! `promql_expr_test` reads the first and last firing time and the number of firing
//! evaluations of each window pair from `ALERTS` (promtool prints what it got when the
//! expectation, deliberately empty, does not match). Those are compared with the SRE workbook's
//! formulas: a pair (long window L, short window S, factor F, budget B) fires once the incident
//! (error ratio e) has run for `F·B·L/e` (the long window is the bottleneck) and stops
//! `min(S − F·B·S/e, L − F·B·L/e)` after it ends (the first of its two windows to drop below
//! the threshold).
//!
//! Run with `--nocapture` to print the table that docs/slo.md carries.

#[path = "common/slo.rs"]
mod slo;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use kubesignal::rules::file::RuleFile;
use kubesignal::slo::generate::{self, WINDOW_PAIRS};

/// Requests per minute of the synthetic service (100 requests/s).
const REQUESTS_PER_MINUTE: f64 = 6000.0;
/// The SLO under test: 99.9% over 30 days.
const BUDGET: f64 = 0.001;
/// Clean minutes before each incident: the 3d window must be full.
const PREHISTORY_MIN: usize = 3 * 24 * 60;
/// Samples are one minute apart; the evaluation step is per scenario (1m, or 5m for the
/// multi-day burns whose detection times are hours, to keep the run short).
const SAMPLE_MIN: usize = 1;

const SPEC: &str = "apiVersion: kubesignal.io/v1
kind: SLO
service: bt
namespace: bt
owner: team-bt
objective: 99.9
runbook_url: https://runbooks.example.com/bt
";

/// A synthetic incident: error ratio per minute after the clean prehistory.
struct Scenario {
    name: &'static str,
    /// Error ratio of each minute from the end of the prehistory on (the incident and tail).
    minutes: Vec<f64>,
    /// Constant error ratio and length (minutes) of the incident, when it has one; `None` for
    /// noise, where no formula applies and nothing may fire.
    incident: Option<(f64, usize)>,
    /// Error ratio of every prehistory minute (clean = 0, noise otherwise).
    prehistory: Vec<f64>,
    /// Rule evaluation interval in minutes.
    step_min: u64,
}

fn incident(
    name: &'static str,
    ratio: f64,
    minutes: usize,
    tail: usize,
    step_min: u64,
) -> Scenario {
    let mut m = vec![ratio; minutes];
    m.extend(std::iter::repeat_n(0.0, tail));
    Scenario {
        name,
        minutes: m,
        incident: Some((ratio, minutes)),
        prehistory: vec![0.0; PREHISTORY_MIN],
        step_min,
    }
}

/// Steady noise under the budget: each minute's ratio is 2·B·u³ for a pseudo-random u in [0,1)
/// (mean B/2), plus one minute at 20·B every 97 minutes. Deterministic, so the test is.
fn noise(total: usize) -> Vec<f64> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..total)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            if i % 97 == 42 {
                20.0 * BUDGET
            } else {
                2.0 * BUDGET * u * u * u
            }
        })
        .collect()
}

/// What happened to one window pair in a run.
#[derive(Debug, Default, Clone)]
struct Observed {
    first_min: Option<f64>,
    last_min: Option<f64>,
    firing_evals: u64,
}

/// The rule file with only the burn-rate alerts (recordings do not affect alerts and would make
/// promtool evaluate 30d ranges every step).
fn alert_rules(dir: &Path) -> std::path::PathBuf {
    let spec = dir.join("bt.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let slos = kubesignal::slo::load_file(&spec).unwrap();
    let mut file: RuleFile = generate::rule_file(&slos);
    for g in &mut file.groups {
        g.rules
            .retain(|r| r.alert.is_some() && r.alert.as_deref() != Some("SLONoData"));
    }
    let path = dir.join("bt.rules.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&file).unwrap()).unwrap();
    path
}

fn counter_values(per_minute: impl Iterator<Item = f64>) -> String {
    let mut out = String::from("0");
    let mut total = 0.0;
    for v in per_minute {
        total += v;
        write!(out, " {total}").unwrap();
    }
    out
}

/// Runs promtool over a scenario and returns what each pair (by long window) did.
fn run(s: &Scenario) -> BTreeMap<String, Observed> {
    let dir = tempfile::tempdir().unwrap();
    alert_rules(dir.path());
    let ratios: Vec<f64> = s.prehistory.iter().chain(&s.minutes).copied().collect();
    let total_min = ratios.len();
    let requests = counter_values(ratios.iter().map(|_| REQUESTS_PER_MINUTE));
    let errors = counter_values(ratios.iter().map(|r| r * REQUESTS_PER_MINUTE));
    let range = format!("{}m", total_min * SAMPLE_MIN);
    let step = s.step_min;
    let test = format!(
        r#"rule_files: [bt.rules.yaml]
evaluation_interval: {step}m
tests:
  - interval: {SAMPLE_MIN}m
    input_series:
      - series: 'kubesignal_red_requests_total{{namespace="bt", workload="bt", route="/", method="GET", code="200"}}'
        values: '{requests}'
      - series: 'kubesignal_red_errors_total{{namespace="bt", workload="bt", route="/", method="GET", code="500"}}'
        values: '{errors}'
    promql_expr_test:
      - expr: min by (long_window) (min_over_time(timestamp(ALERTS{{alertstate="firing"}})[{range}:{step}m]))
        eval_time: {range}
        exp_samples: []
      - expr: max by (long_window) (max_over_time(timestamp(ALERTS{{alertstate="firing"}})[{range}:{step}m]))
        eval_time: {range}
        exp_samples: []
      - expr: sum by (long_window) (count_over_time(ALERTS{{alertstate="firing"}}[{range}]))
        eval_time: {range}
        exp_samples: []
"#
    );
    std::fs::write(dir.path().join("bt.test.yaml"), test).unwrap();
    let out = slo::promtool(dir.path(), &["test", "rules", "bt.test.yaml"]);
    let text = slo::text(&out);
    assert!(
        out.status.success() || text.contains("got:"),
        "promtool did not run the backtest:\n{text}"
    );
    parse(&text, PREHISTORY_MIN as f64)
}

fn parse(text: &str, origin_min: f64) -> BTreeMap<String, Observed> {
    let sample = regex::Regex::new(r#"\{long_window="([^"]+)"\} ([-+0-9.E]+)"#).unwrap();
    let mut out: BTreeMap<String, Observed> = BTreeMap::new();
    let mut current = "";
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("expr:") {
            current = if line.contains("min_over_time") {
                "first"
            } else if line.contains("max_over_time") {
                "last"
            } else {
                "count"
            };
        }
        if let Some(got) = line.strip_prefix("got:") {
            for c in sample.captures_iter(got) {
                let value: f64 = c[2].parse().unwrap();
                let o = out.entry(c[1].to_string()).or_default();
                match current {
                    "first" => o.first_min = Some(value / 60.0 - origin_min),
                    "last" => o.last_min = Some(value / 60.0 - origin_min),
                    _ => o.firing_evals = value as u64,
                }
            }
        }
    }
    out
}

/// Workbook formulas for one pair: (detection, reset) in minutes after the incident starts /
/// ends, or `None` when the pair cannot fire for this incident.
fn formula(pair: &generate::BurnWindowPair, ratio: f64, length_min: usize) -> Option<(f64, f64)> {
    let factor = generate::burn_factor(pair.budget_percent, 30, pair.long.1).to_f64();
    let long = pair.long.1 as f64 / 60.0;
    let short = pair.short.1 as f64 / 60.0;
    // Minutes of incident each window must hold to cross F·B.
    let need_long = factor * BUDGET * long / ratio;
    let need_short = factor * BUDGET * short / ratio;
    let d = length_min as f64;
    if ratio <= factor * BUDGET || need_long >= d {
        return None;
    }
    // After the end the windows hold min(d, W − τ) minutes of errors; the pair stops as soon
    // as either holds no more than it needs.
    let reset = (short - need_short).min(long - need_long);
    Some((need_long, reset))
}

fn fmt_min(m: f64) -> String {
    if m >= 120.0 {
        format!("{m:.1}m ({:.2}h)", m / 60.0)
    } else if m >= 1.0 {
        format!("{m:.1}m")
    } else {
        format!("{:.0}s", m * 60.0)
    }
}

/// Runs one scenario, prints its table rows and checks the measurements against the formulas.
fn backtest(s: Scenario) {
    let observed = run(&s);
    let step = s.step_min as f64;
    let mut table = String::new();
    for pair in &WINDOW_PAIRS {
        let o = observed.get(pair.long.0).cloned().unwrap_or_default();
        let factor = generate::burn_factor(pair.budget_percent, 30, pair.long.1);
        let expected = s.incident.and_then(|(r, d)| formula(pair, r, d));
        let measured_reset = o
            .last_min
            .zip(s.incident)
            .map(|(last, (_, d))| last + step - d as f64);
        writeln!(
            table,
            "| {} | {}m | {} {}/{} ({}x) | {} | {} | {} | {} |",
            s.name,
            s.step_min,
            pair.severity.as_str(),
            pair.long.0,
            pair.short.0,
            factor,
            expected.map_or("never".into(), |(d, _)| fmt_min(d)),
            o.first_min.map_or("never".into(), fmt_min),
            expected.map_or("–".into(), |(_, r)| fmt_min(r)),
            measured_reset.map_or("–".into(), fmt_min),
        )
        .unwrap();
        match expected {
            None => assert!(
                o.first_min.is_none(),
                "{}: the {} pair fired at {:?} min but the formula says it cannot",
                s.name,
                pair.long.0,
                o.first_min
            ),
            Some((detect, reset)) => {
                let first = o.first_min.unwrap_or_else(|| {
                    panic!(
                        "{}: the {} pair never fired; the formula says after {detect:.2} min",
                        s.name, pair.long.0
                    )
                });
                assert!(
                    (first - detect).abs() <= step,
                    "{}: the {} pair fired after {first} min, formula {detect:.2} min",
                    s.name,
                    pair.long.0
                );
                let last = o.last_min.unwrap();
                // One uninterrupted firing period: no flapping.
                assert_eq!(
                    o.firing_evals,
                    ((last - first) / step).round() as u64 + 1,
                    "{}: the {} pair flapped",
                    s.name,
                    pair.long.0
                );
                let measured = measured_reset.unwrap();
                assert!(
                    (measured - reset).abs() <= step,
                    "{}: the {} pair reset {measured} min after the end, formula {reset:.2} min",
                    s.name,
                    pair.long.0
                );
            }
        }
    }
    println!("{table}");
}

#[test]
fn a_total_outage_pages_within_a_minute_as_the_workbook_predicts() {
    backtest(incident("total outage, 30m", 1.0, 30, 7 * 60, 1));
}

#[test]
fn a_tenfold_burn_pages_on_the_six_hour_pair_and_tickets() {
    backtest(incident("10x burn, 10h", 0.01, 10 * 60, 6 * 60, 1));
}

#[test]
fn a_twofold_burn_only_opens_a_ticket_after_a_day_and_a_half() {
    backtest(incident("2x burn, 40h", 0.002, 40 * 60, 4 * 60, 5));
}

#[test]
fn a_burn_just_over_budget_is_caught_by_the_three_day_ticket() {
    backtest(incident("1.1x burn, 68h", 0.0011, 68 * 60, 60, 5));
}

#[test]
fn a_brief_blip_that_spends_little_budget_raises_nothing() {
    backtest(incident("blip: 30% errors for 2m", 0.3, 2, 10, 1));
}

#[test]
fn steady_noise_under_budget_never_pages_or_tickets() {
    let all = noise(PREHISTORY_MIN + 24 * 60);
    let s = Scenario {
        name: "noise under budget, 4d",
        prehistory: all[..PREHISTORY_MIN].to_vec(),
        minutes: all[PREHISTORY_MIN..].to_vec(),
        incident: None,
        step_min: 1,
    };
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    assert!(mean < BUDGET, "the noise must stay under budget: {mean}");
    let observed = run(&s);
    assert!(
        observed.values().all(|o| o.first_min.is_none()),
        "alerts fired on noise: {observed:?}"
    );
    println!(
        "| {} (mean {:.2}x, 20x spikes) | 1m | all | never | never | – | – |",
        s.name,
        mean / BUDGET
    );
}
