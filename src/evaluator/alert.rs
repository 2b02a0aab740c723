//! The alert state machine of one alerting rule, with Prometheus's semantics
//! (`rules/alerting.go`): inactive -> pending -> firing -> inactive (resolved), `for`,
//! `keep_firing_for`, resolved alerts kept for 15 minutes, resend delay and `endsAt`.
//!
//! The query itself happens elsewhere (it is async and may fail); this module only applies a
//! successful result at an evaluation timestamp. A failed query must not reach [`AlertingRule::apply`]:
//! that is how "a failed query changes no state" is guaranteed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::datasource::Sample;

/// A label set, ordered so that identity and output are deterministic.
pub type Labels = BTreeMap<String, String>;

/// How long a resolved alert is kept (and its resolution re-sent), as in Prometheus.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// The state of one alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved (kept for [`RESOLVED_RETENTION`] so the resolution can be re-sent).
    Inactive,
    /// Active for less than `for`; never sent.
    Pending,
    /// Active for at least `for`, or held by `keep_firing_for`.
    Firing,
}

impl AlertState {
    /// The lowercase name used by the APIs and the `alertstate` label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: one label set of the rule's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Labels: the sample's labels without `__name__`, the rule's labels, `alertname`.
    pub labels: Labels,
    /// Expanded annotations (frozen once the alert stops being active).
    pub annotations: Labels,
    /// Current state.
    pub state: AlertState,
    /// Sample value at the last evaluation that saw it.
    #[serde(with = "float_text")]
    pub value: f64,
    /// When the alert became pending.
    pub active_at: DateTime<Utc>,
    /// When it became firing.
    pub fired_at: Option<DateTime<Utc>>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When it was last sent.
    pub last_sent_at: Option<DateTime<Utc>>,
    /// The `endsAt` of the last firing send.
    pub valid_until: Option<DateTime<Utc>>,
    /// First evaluation at which the series was missing while `keep_firing_for` held it.
    pub keep_firing_since: Option<DateTime<Utc>>,
}

impl Alert {
    /// Prometheus's `needsSending`: pending never; a resolution not yet sent at once; otherwise
    /// when the last send is strictly older than the resend delay.
    pub fn needs_sending(&self, ts: DateTime<Utc>, resend_delay: Duration) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let Some(last) = self.last_sent_at else {
            return true;
        };
        if self.resolved_at.is_some_and(|r| r > last) {
            return true;
        }
        last + resend_delay < ts
    }
}

/// A change of an alert's state, as reported by replay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// The alert's labels.
    pub labels: Labels,
    /// The state it entered.
    pub state: AlertState,
    /// Its annotations at that moment (empty for a dropped pending alert).
    pub annotations: Labels,
}

/// Why applying a result failed; the rule's state is then unchanged (or, for the limit, cleared
/// exactly as Prometheus does).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlertError {
    /// Two samples gave the same labels once the rule's labels were applied.
    #[error("vector contains metrics with the same labelset after applying alert labels: {0}")]
    DuplicateLabelSet(String),
    /// More active alerts than the group's `limit`.
    #[error("exceeded limit of {limit} with {count} alerts")]
    LimitExceeded {
        /// The group's limit.
        limit: u64,
        /// How many alerts the rule had.
        count: usize,
    },
}

/// What a renderer is asked to expand: one template of a rule for one sample.
pub struct RenderInput<'a> {
    /// Template name for error messages (`label severity`, `annotation summary`).
    pub name: &'a str,
    /// The template text.
    pub text: &'a str,
    /// The sample's labels, with `__name__` when the result had one.
    pub labels: &'a Labels,
    /// The sample's value.
    pub value: f64,
    /// When the alert became active (`$activeAt`), if known.
    pub active_at: Option<DateTime<Utc>>,
}

/// Expands templates; errors are the renderer's business (Prometheus puts them in the text).
pub type Renderer<'r> = dyn FnMut(RenderInput<'_>) -> String + 'r;

/// An alerting rule and the alerts it currently holds.
#[derive(Clone, Debug)]
pub struct AlertingRule {
    /// `alert:` name.
    pub name: String,
    /// PromQL expression.
    pub expr: String,
    /// `for`.
    pub hold: Duration,
    /// `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// Label templates (group labels merged under the rule's).
    pub labels: Labels,
    /// Annotation templates.
    pub annotations: Labels,
    /// Alerts by label set.
    pub active: BTreeMap<Labels, Alert>,
}

impl AlertingRule {
    /// A rule with no alerts yet.
    pub fn new(
        name: String,
        expr: String,
        hold: Duration,
        keep_firing_for: Duration,
        labels: Labels,
        annotations: Labels,
    ) -> Self {
        AlertingRule {
            name,
            expr,
            hold,
            keep_firing_for,
            labels,
            annotations,
            active: BTreeMap::new(),
        }
    }

    /// Applies a successful query result at evaluation time `ts` (Prometheus's
    /// `AlertingRule.Eval` after the query) and returns the state changes, in label order.
    pub fn apply(
        &mut self,
        ts: DateTime<Utc>,
        samples: &[Sample],
        limit: u64,
        render: &mut Renderer<'_>,
    ) -> Result<Vec<Transition>, AlertError> {
        // Build the candidates first: a duplicate label set fails the rule before any state
        // is touched.
        let mut candidates: BTreeMap<Labels, (f64, Labels)> = BTreeMap::new();
        for sample in samples {
            let mut labels: Labels = sample.labels.clone();
            labels.remove("__name__");
            for (name, text) in &self.labels {
                let expanded = render(RenderInput {
                    name: &format!("label {name}"),
                    text,
                    labels: &sample.labels,
                    value: sample.value,
                    active_at: None,
                });
                if expanded.is_empty() {
                    labels.remove(name);
                } else {
                    labels.insert(name.clone(), expanded);
                }
            }
            labels.insert("alertname".into(), self.name.clone());
            if candidates.contains_key(&labels) {
                return Err(AlertError::DuplicateLabelSet(format_labels(&labels)));
            }
            candidates.insert(labels, (sample.value, sample.labels.clone()));
        }

        let before: BTreeMap<Labels, AlertState> = self
            .active
            .iter()
            .map(|(k, a)| (k.clone(), a.state))
            .collect();

        for (labels, (value, sample_labels)) in &candidates {
            let keep = self
                .active
                .get(labels)
                .is_some_and(|a| a.state != AlertState::Inactive);
            if !keep {
                // New, or a resolved alert coming back: a brand-new alert.
                self.active.insert(
                    labels.clone(),
                    Alert {
                        labels: labels.clone(),
                        annotations: Labels::new(),
                        state: AlertState::Pending,
                        value: *value,
                        active_at: ts,
                        fired_at: None,
                        resolved_at: None,
                        last_sent_at: None,
                        valid_until: None,
                        keep_firing_since: None,
                    },
                );
            }
            let alert = self.active.get_mut(labels).expect("inserted above");
            alert.value = *value;
            let mut annotations = Labels::new();
            for (name, text) in &self.annotations {
                annotations.insert(
                    name.clone(),
                    render(RenderInput {
                        name: &format!("annotation {name}"),
                        text,
                        labels: sample_labels,
                        value: *value,
                        active_at: Some(alert.active_at),
                    }),
                );
            }
            alert.annotations = annotations;
        }

        let mut remove = Vec::new();
        for (labels, alert) in self.active.iter_mut() {
            if !candidates.contains_key(labels) {
                let mut keep_firing = false;
                if alert.state == AlertState::Firing && !self.keep_firing_for.is_zero() {
                    let since = *alert.keep_firing_since.get_or_insert(ts);
                    keep_firing = elapsed(since, ts) < self.keep_firing_for;
                }
                if alert.state == AlertState::Pending
                    || alert
                        .resolved_at
                        .is_some_and(|r| elapsed(r, ts) > RESOLVED_RETENTION)
                {
                    remove.push(labels.clone());
                    continue;
                }
                if alert.state != AlertState::Inactive && !keep_firing {
                    alert.state = AlertState::Inactive;
                    alert.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                alert.keep_firing_since = None;
            }
            if alert.state == AlertState::Pending && elapsed(alert.active_at, ts) >= self.hold {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(ts);
            }
            if alert.state == AlertState::Firing && elapsed(alert.active_at, ts) < self.hold {
                // `for` was raised by a reload: back to pending, as Prometheus does.
                alert.state = AlertState::Pending;
                alert.fired_at = None;
                alert.last_sent_at = None;
                alert.keep_firing_since = None;
            }
        }
        for labels in remove {
            self.active.remove(&labels);
        }

        if limit > 0 {
            let count = self
                .active
                .values()
                .filter(|a| a.state != AlertState::Inactive)
                .count();
            if count as u64 > limit {
                self.active.clear();
                return Err(AlertError::LimitExceeded { limit, count });
            }
        }

        // Both maps are sorted by labels: walk them side by side.
        let mut transitions = Vec::new();
        let mut old_iter = before.iter().peekable();
        let mut new_iter = self.active.iter().peekable();
        loop {
            let (labels, old, current) = match (old_iter.peek(), new_iter.peek()) {
                (None, None) => break,
                (Some((k, s)), None) => {
                    let item = (*k, **s, None);
                    old_iter.next();
                    item
                }
                (None, Some((k, a))) => {
                    let item = (*k, AlertState::Inactive, Some(*a));
                    new_iter.next();
                    item
                }
                (Some((ko, s)), Some((kn, a))) => match ko.cmp(kn) {
                    std::cmp::Ordering::Less => {
                        let item = (*ko, **s, None);
                        old_iter.next();
                        item
                    }
                    std::cmp::Ordering::Greater => {
                        let item = (*kn, AlertState::Inactive, Some(*a));
                        new_iter.next();
                        item
                    }
                    std::cmp::Ordering::Equal => {
                        let item = (*kn, **s, Some(*a));
                        old_iter.next();
                        new_iter.next();
                        item
                    }
                },
            };
            let new = current.map_or(AlertState::Inactive, |a| a.state);
            if old != new {
                transitions.push(Transition {
                    labels: labels.clone(),
                    state: new,
                    annotations: current.map(|a| a.annotations.clone()).unwrap_or_default(),
                });
            }
        }
        Ok(transitions)
    }

    /// Marks the alerts that must be sent at `ts` as sent and returns them (Prometheus's
    /// `sendAlerts`): `endsAt` of a firing alert is `ts + 4 × max(interval, resend_delay)`.
    pub fn take_to_send(
        &mut self,
        ts: DateTime<Utc>,
        resend_delay: Duration,
        interval: Duration,
    ) -> Vec<Alert> {
        let validity = 4 * interval.max(resend_delay);
        let mut out = Vec::new();
        for alert in self.active.values_mut() {
            if !alert.needs_sending(ts, resend_delay) {
                continue;
            }
            alert.last_sent_at = Some(ts);
            if alert.resolved_at.is_none() {
                alert.valid_until = Some(ts + validity);
            }
            out.push(alert.clone());
        }
        out
    }

    /// Alerts that are pending or firing (what `ALERTS` and `/api/v1/alerts` show).
    pub fn active_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
    }

    /// The rule's overall state: firing if any alert fires, else pending if any is pending.
    pub fn state(&self) -> AlertState {
        let mut state = AlertState::Inactive;
        for a in self.active.values() {
            match a.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => state = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        state
    }

    /// Prometheus's `for`-state restore after a restart: the evaluator was down from `down_at`
    /// to `now`. Pending alerts of rules whose `for` is at least `grace` get their `activeAt`
    /// moved so that the downtime does not count as pending time, and so that none fires
    /// sooner than `grace` after the restart; a downtime longer than `outage_tolerance`, or a
    /// `for` shorter than `grace`, forgets them (they start afresh). Firing and resolved
    /// alerts are kept as they are, with their send bookkeeping, so nothing is paged twice.
    pub fn restore(
        &mut self,
        down_at: DateTime<Utc>,
        now: DateTime<Utc>,
        outage_tolerance: Duration,
        grace: Duration,
    ) {
        let downtime = elapsed(down_at, now);
        let forget = downtime > outage_tolerance || self.hold < grace;
        let hold = chrono::Duration::from_std(self.hold).unwrap_or(chrono::Duration::MAX);
        let grace_c = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        self.active.retain(|_, alert| {
            if alert.state != AlertState::Pending {
                return true;
            }
            if forget {
                return false;
            }
            let spent = down_at - alert.active_at;
            let remaining = hold - spent;
            if remaining <= chrono::Duration::zero() {
                // Was due to fire: it fires at the next evaluation that still sees it.
            } else if remaining < grace_c {
                alert.active_at = now + grace_c - hold;
            } else {
                alert.active_at += now - down_at;
            }
            true
        });
    }
}

/// Floats as text, so NaN and infinities survive JSON.
mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `to - from` as a std duration, zero when negative.
pub fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

/// `{a="1", b="2"}` for messages.
pub fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn sample(instance: &str, value: f64) -> Sample {
        let mut labels = Labels::new();
        labels.insert("__name__".into(), "up".into());
        labels.insert("instance".into(), instance.into());
        Sample { labels, value }
    }

    fn rule(hold: u64, keep: u64) -> AlertingRule {
        let mut labels = Labels::new();
        labels.insert("severity".into(), "page".into());
        let mut annotations = Labels::new();
        annotations.insert("summary".into(), "{{ $labels.instance }}".into());
        AlertingRule::new(
            "Down".into(),
            "up == 0".into(),
            Duration::from_secs(hold),
            Duration::from_secs(keep),
            labels,
            annotations,
        )
    }

    /// A renderer good enough for one function's test: `$labels.instance` and `$value`.
    fn render(input: RenderInput<'_>) -> String {
        input
            .text
            .replace(
                "{{ $labels.instance }}",
                input
                    .labels
                    .get("instance")
                    .map(String::as_str)
                    .unwrap_or(""),
            )
            .replace("{{ $value }}", &input.value.to_string())
    }

    fn step(r: &mut AlertingRule, secs: i64, samples: &[Sample]) -> Vec<(String, AlertState)> {
        r.apply(t(secs), samples, 0, &mut render)
            .unwrap()
            .into_iter()
            .map(|tr| (tr.labels["instance"].clone(), tr.state))
            .collect()
    }

    fn state_of(r: &AlertingRule, instance: &str) -> Option<AlertState> {
        r.active
            .values()
            .find(|a| a.labels["instance"] == instance)
            .map(|a| a.state)
    }

    #[test]
    fn an_alert_goes_pending_then_fires_once_for_has_elapsed() {
        let mut r = rule(120, 0);
        let s = [sample("a", 0.0)];
        assert_eq!(step(&mut r, 0, &s), vec![("a".into(), AlertState::Pending)]);
        assert_eq!(step(&mut r, 60, &s), vec![]);
        assert_eq!(
            step(&mut r, 120, &s),
            vec![("a".into(), AlertState::Firing)]
        );
        let a = r.active.values().next().unwrap();
        assert_eq!(a.active_at, t(0));
        assert_eq!(a.fired_at, Some(t(120)));
        assert_eq!(a.labels["severity"], "page");
        assert_eq!(a.labels["alertname"], "Down");
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(a.annotations["summary"], "a");
    }

    #[test]
    fn a_rule_without_for_fires_on_its_first_evaluation() {
        let mut r = rule(0, 0);
        assert_eq!(
            step(&mut r, 0, &[sample("a", 0.0)]),
            vec![("a".into(), AlertState::Firing)]
        );
    }

    #[test]
    fn a_pending_alert_that_disappears_is_dropped_without_a_resolution() {
        let mut r = rule(120, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        assert_eq!(
            step(&mut r, 60, &[]),
            vec![("a".into(), AlertState::Inactive)]
        );
        assert!(r.active.is_empty());
        assert!(
            r.take_to_send(t(60), Duration::from_secs(60), Duration::from_secs(60))
                .is_empty()
        );
    }

    #[test]
    fn a_firing_alert_that_disappears_is_resolved_and_kept_for_fifteen_minutes() {
        let mut r = rule(0, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        assert_eq!(
            step(&mut r, 60, &[]),
            vec![("a".into(), AlertState::Inactive)]
        );
        assert_eq!(state_of(&r, "a"), Some(AlertState::Inactive));
        assert_eq!(r.active.values().next().unwrap().resolved_at, Some(t(60)));
        step(&mut r, 60 + 900, &[]);
        assert_eq!(
            state_of(&r, "a"),
            Some(AlertState::Inactive),
            "15m exactly is kept"
        );
        step(&mut r, 60 + 960, &[]);
        assert_eq!(state_of(&r, "a"), None);
    }

    #[test]
    fn a_resolved_alert_coming_back_within_retention_is_a_new_alert() {
        let mut r = rule(60, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        step(&mut r, 60, &[sample("a", 0.0)]);
        step(&mut r, 120, &[]);
        assert_eq!(
            step(&mut r, 180, &[sample("a", 0.0)]),
            vec![("a".into(), AlertState::Pending)]
        );
        let a = r.active.values().next().unwrap();
        assert_eq!(a.active_at, t(180));
        assert_eq!(a.resolved_at, None);
        assert_eq!(a.fired_at, None);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert_then_resolves_it() {
        let mut r = rule(0, 120);
        step(&mut r, 0, &[sample("a", 0.0)]);
        assert_eq!(step(&mut r, 60, &[]), vec![]);
        assert_eq!(
            r.active.values().next().unwrap().keep_firing_since,
            Some(t(60))
        );
        assert_eq!(step(&mut r, 120, &[]), vec![]);
        assert_eq!(
            step(&mut r, 180, &[]),
            vec![("a".into(), AlertState::Inactive)]
        );
    }

    #[test]
    fn keep_firing_for_restarts_when_the_series_comes_back() {
        let mut r = rule(0, 120);
        step(&mut r, 0, &[sample("a", 0.0)]);
        step(&mut r, 60, &[]);
        step(&mut r, 120, &[sample("a", 0.0)]);
        assert_eq!(r.active.values().next().unwrap().keep_firing_since, None);
        step(&mut r, 180, &[]);
        step(&mut r, 240, &[]);
        assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
        step(&mut r, 300, &[]);
        assert_eq!(state_of(&r, "a"), Some(AlertState::Inactive));
    }

    #[test]
    fn keep_firing_for_does_not_hold_a_pending_alert() {
        let mut r = rule(120, 600);
        step(&mut r, 0, &[sample("a", 0.0)]);
        step(&mut r, 60, &[]);
        assert!(r.active.is_empty());
    }

    #[test]
    fn two_samples_with_the_same_labels_after_templating_fail_the_rule_and_change_nothing() {
        let mut r = rule(0, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        let before = r.active.clone();
        let mut x = sample("b", 1.0);
        x.labels.insert("__name__".into(), "other".into());
        x.labels.insert("instance".into(), "b".into());
        let mut y = x.clone();
        y.labels.insert("__name__".into(), "third".into());
        let err = r.apply(t(60), &[x, y], 0, &mut render).unwrap_err();
        assert!(matches!(err, AlertError::DuplicateLabelSet(_)), "{err}");
        assert_eq!(r.active, before);
    }

    #[test]
    fn exceeding_the_limit_clears_the_rule_and_fails() {
        let mut r = rule(0, 0);
        let err = r
            .apply(t(0), &[sample("a", 0.0), sample("b", 0.0)], 1, &mut render)
            .unwrap_err();
        assert_eq!(err, AlertError::LimitExceeded { limit: 1, count: 2 });
        assert!(r.active.is_empty());
    }

    #[test]
    fn raising_for_on_reload_sends_a_firing_alert_back_to_pending() {
        let mut r = rule(0, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        r.hold = Duration::from_secs(300);
        assert_eq!(
            step(&mut r, 60, &[sample("a", 0.0)]),
            vec![("a".into(), AlertState::Pending)]
        );
        assert_eq!(r.active.values().next().unwrap().fired_at, None);
    }

    #[test]
    fn values_and_annotations_follow_the_latest_sample_while_active() {
        let mut r = rule(0, 0);
        r.annotations.insert("value".into(), "{{ $value }}".into());
        step(&mut r, 0, &[sample("a", 1.0)]);
        step(&mut r, 60, &[sample("a", 2.0)]);
        let a = r.active.values().next().unwrap();
        assert_eq!(a.value, 2.0);
        assert_eq!(a.annotations["value"], "2");
        step(&mut r, 120, &[]);
        assert_eq!(r.active.values().next().unwrap().annotations["value"], "2");
    }

    #[test]
    fn firing_alerts_are_resent_only_once_the_resend_delay_has_strictly_passed() {
        let mut r = rule(0, 0);
        let iv = Duration::from_secs(60);
        let s = [sample("a", 0.0)];
        step(&mut r, 0, &s);
        let sent = r.take_to_send(t(0), iv, iv);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].valid_until, Some(t(240)));
        step(&mut r, 60, &s);
        assert!(
            r.take_to_send(t(60), iv, iv).is_empty(),
            "60s is not more than 1m"
        );
        step(&mut r, 120, &s);
        let sent = r.take_to_send(t(120), iv, iv);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].valid_until, Some(t(360)));
    }

    #[test]
    fn ends_at_uses_the_larger_of_interval_and_resend_delay() {
        let mut r = rule(0, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        let sent = r.take_to_send(t(0), Duration::from_secs(60), Duration::from_secs(300));
        assert_eq!(sent[0].valid_until, Some(t(1200)));
    }

    #[test]
    fn a_resolution_is_sent_at_once_even_inside_the_resend_delay() {
        let mut r = rule(0, 0);
        let iv = Duration::from_secs(60);
        step(&mut r, 0, &[sample("a", 0.0)]);
        r.take_to_send(t(0), iv, iv);
        step(&mut r, 30, &[]);
        let sent = r.take_to_send(t(30), iv, iv);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].state, AlertState::Inactive);
        assert_eq!(sent[0].resolved_at, Some(t(30)));
        assert!(r.take_to_send(t(60), iv, iv).is_empty());
        assert_eq!(
            r.take_to_send(t(91), iv, iv).len(),
            1,
            "resolutions are re-sent"
        );
    }

    #[test]
    fn pending_alerts_are_never_sent() {
        let mut r = rule(600, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        assert!(
            r.take_to_send(t(0), Duration::ZERO, Duration::ZERO)
                .is_empty()
        );
    }

    #[test]
    fn an_empty_label_template_removes_the_label() {
        let mut r = rule(0, 0);
        r.labels.insert("instance".into(), String::new());
        r.apply(t(0), &[sample("a", 0.0)], 0, &mut render).unwrap();
        assert!(
            !r.active
                .values()
                .next()
                .unwrap()
                .labels
                .contains_key("instance")
        );
    }

    #[test]
    fn restore_does_not_count_downtime_as_pending_time() {
        let mut r = rule(1800, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        // 10 minutes pending, then down for 20 minutes.
        r.restore(
            t(600),
            t(1800),
            Duration::from_secs(3600),
            Duration::from_secs(600),
        );
        assert_eq!(r.active.values().next().unwrap().active_at, t(1200));
    }

    #[test]
    fn restore_leaves_at_least_the_grace_period_before_firing() {
        let mut r = rule(1800, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        // 25 of 30 minutes spent pending: 5 minutes left is less than the 10m grace.
        r.restore(
            t(1500),
            t(2000),
            Duration::from_secs(3600),
            Duration::from_secs(600),
        );
        let a = r.active.values().next().unwrap();
        assert_eq!(a.active_at, t(2000 + 600 - 1800));
        step(&mut r, 2000, &[sample("a", 0.0)]);
        assert_eq!(state_of(&r, "a"), Some(AlertState::Pending));
        step(&mut r, 2600, &[sample("a", 0.0)]);
        assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
    }

    #[test]
    fn restore_after_a_downtime_beyond_the_outage_tolerance_starts_pending_alerts_afresh() {
        let mut r = rule(1800, 0);
        step(&mut r, 0, &[sample("a", 0.0)]);
        r.restore(
            t(600),
            t(600 + 7200),
            Duration::from_secs(3600),
            Duration::from_secs(600),
        );
        assert!(r.active.is_empty());
    }

    #[test]
    fn restore_keeps_firing_alerts_with_their_send_times() {
        let mut r = rule(0, 0);
        let iv = Duration::from_secs(60);
        step(&mut r, 0, &[sample("a", 0.0)]);
        r.take_to_send(t(0), iv, iv);
        r.restore(
            t(30),
            t(50),
            Duration::from_secs(3600),
            Duration::from_secs(600),
        );
        step(&mut r, 50, &[sample("a", 0.0)]);
        assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
        assert!(r.take_to_send(t(50), iv, iv).is_empty(), "no second page");
    }
}
