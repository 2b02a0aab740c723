//! Grouping, dedupe and inhibition, with Alertmanager's semantics.
//!
//! Alerts are put into aggregation groups by route and the route's `group_by` label values. A new
//! group waits `group_wait` before its first flush, then flushes every `group_interval`. At each
//! flush, each receiver of the group is notified only when the notification log says something
//! changed (Alertmanager's `needsUpdate`): new firing alerts, everything resolved, newly resolved
//! alerts (with `send_resolved`), or `repeat_interval` elapsed. Resolved alerts leave the group after
//! the flush that reported them; an alert resolved before the first flush is never notified.
//!
//! Inhibition: a `severity="ticket"` alert is muted while a firing `severity="page"` alert carries
//! the same `slo` label (the page tier of the same SLO already woke someone up).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Alert;
use super::owners::Resolution;
use super::routing::{Receiver, RouteSettings, RouteTarget, Routing};

/// What the notification log remembers about the last notification of a group to a receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NflogEntry {
    /// Fingerprints of the firing alerts notified.
    pub firing: BTreeSet<u64>,
    /// Fingerprints of the resolved alerts notified.
    pub resolved: BTreeSet<u64>,
    /// When it was notified.
    pub at: DateTime<Utc>,
}

/// Why a notification is sent (Alertmanager's `notification_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First notification of the group.
    FirstNotification,
    /// New firing alerts joined the group.
    NewAlertsInGroup,
    /// Every alert of the group resolved.
    AllAlertsResolved,
    /// Some alerts resolved.
    NewResolvedAlerts,
    /// Nothing changed but `repeat_interval` elapsed.
    RepeatIntervalElapsed,
}

/// Alertmanager's dedup decision for one receiver of one group.
pub fn needs_update(
    entry: Option<&NflogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: chrono::Duration,
    now: DateTime<Utc>,
) -> Option<Reason> {
    let Some(e) = entry else {
        return (!firing.is_empty()).then_some(Reason::FirstNotification);
    };
    if !firing.is_subset(&e.firing) {
        return Some(if e.firing.is_empty() {
            Reason::FirstNotification
        } else {
            Reason::NewAlertsInGroup
        });
    }
    if firing.is_empty() && !e.firing.is_empty() {
        return Some(Reason::AllAlertsResolved);
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return Some(Reason::NewResolvedAlerts);
    }
    // Alertmanager compares strictly; with flushes on exact group_interval ticks that repeats
    // one interval late, so a full repeat_interval is enough here.
    (!firing.is_empty() && e.at <= now - repeat).then_some(Reason::RepeatIntervalElapsed)
}

/// One notification of one group to one receiver, ready to be rendered.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The group key, e.g. `{route="payments"}:{alertname="HighErrorRate",namespace="shop"}`.
    pub group_key: String,
    /// Route name (owner or `triage`).
    pub route: String,
    /// The receiver.
    pub receiver: Receiver,
    /// Why it is sent.
    pub reason: Reason,
    /// Values of the route's `group_by` labels.
    pub group_labels: BTreeMap<String, String>,
    /// Alerts, firing ones first (resolved ones only when the route sends resolved notices).
    pub alerts: Vec<Alert>,
    /// Time of the flush.
    pub at: DateTime<Utc>,
    /// Idempotency key of this send: stable for the group, receiver and flush.
    pub key: String,
    /// Notification-log key (group and receiver).
    pub nflog_key: String,
    /// The new notification-log entry, persisted together with the notification.
    pub nflog: NflogEntry,
}

impl Notification {
    /// `firing` when any alert fires, `resolved` otherwise.
    pub fn status(&self) -> &'static str {
        if self.alerts.iter().any(|a| a.is_firing(self.at)) {
            "firing"
        } else {
            "resolved"
        }
    }
}

struct Group {
    route: String,
    labels: BTreeMap<String, String>,
    settings: RouteSettings,
    receivers: Vec<Receiver>,
    alerts: HashMap<u64, Alert>,
    next_flush: DateTime<Utc>,
}

/// The aggregation groups and the notification log.
#[derive(Default)]
pub struct Dispatcher {
    groups: HashMap<String, Group>,
    nflog: HashMap<String, NflogEntry>,
    dirty: HashSet<String>,
}

fn chrono_dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Dispatcher {
    /// A dispatcher that starts from a persisted notification log.
    pub fn with_nflog(nflog: HashMap<String, NflogEntry>) -> Self {
        Self {
            groups: HashMap::new(),
            nflog,
            dirty: HashSet::new(),
        }
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Number of alerts held.
    pub fn alert_count(&self) -> usize {
        self.groups.values().map(|g| g.alerts.len()).sum()
    }

    /// Adds or updates an alert in its group; returns whether the alert was new to the group.
    pub fn insert(&mut self, route: &RouteTarget, alert: Alert, now: DateTime<Utc>) -> bool {
        let labels: BTreeMap<String, String> = route
            .settings
            .group_by
            .iter()
            // As in Alertmanager, a label the alert lacks is not a group label.
            .filter_map(|l| alert.labels.get(l).map(|v| (l.clone(), v.clone())))
            .collect();
        let key = group_key(route, &labels);
        let group = self.groups.entry(key).or_insert_with(|| Group {
            route: route.name.clone(),
            labels,
            settings: route.settings.clone(),
            receivers: route.receivers.clone(),
            alerts: HashMap::new(),
            next_flush: now + chrono_dur(route.settings.group_wait),
        });
        // A reload may have changed the route's timers: later flushes use the new ones.
        group.settings = route.settings.clone();
        let fp = alert.fingerprint();
        match group.alerts.get_mut(&fp) {
            Some(existing) => {
                // Keep the earliest start: the evaluator re-sends with the same startsAt anyway.
                let starts_at = existing.starts_at.min(alert.starts_at);
                *existing = alert;
                existing.starts_at = starts_at;
                false
            }
            None => {
                group.alerts.insert(fp, alert);
                true
            }
        }
    }

    /// Resolves, routes and inserts a batch of alerts (one `submit`); returns how many new firing
    /// alerts have no known owner. Routes are computed once per distinct owner resolution.
    pub fn insert_all(
        &mut self,
        routing: &Routing,
        resolve: impl Fn(&BTreeMap<String, String>) -> Resolution,
        alerts: Vec<Alert>,
        now: DateTime<Utc>,
    ) -> u64 {
        let mut routes: HashMap<Resolution, (RouteTarget, bool)> = HashMap::new();
        let mut unowned = 0;
        for alert in alerts {
            let resolution = resolve(&alert.labels);
            let (route, owned) = routes.entry(resolution).or_insert_with_key(|r| {
                let owned = r.owner.as_deref().is_some_and(|o| routing.knows_owner(o));
                (routing.route_for(r), owned)
            });
            let firing = alert.is_firing(now);
            if self.insert(route, alert, now) && firing && !*owned {
                unowned += 1;
            }
        }
        unowned
    }

    /// The earliest time a group is due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// Flushes every due group and returns the notifications to send.
    pub fn flush_due(&mut self, now: DateTime<Utc>) -> Vec<Notification> {
        let paging_slos: HashSet<String> = self
            .groups
            .values()
            .flat_map(|g| g.alerts.values())
            .filter(|a| a.is_firing(now) && a.label("severity") == Some("page"))
            .filter_map(|a| a.label("slo").map(String::from))
            .collect();
        let inhibited = |a: &Alert| {
            a.label("severity") == Some("ticket")
                && a.label("slo").is_some_and(|s| paging_slos.contains(s))
        };
        let mut out = Vec::new();
        let mut emptied = Vec::new();
        for (key, group) in self.groups.iter_mut().filter(|(_, g)| g.next_flush <= now) {
            group.next_flush = now + chrono_dur(group.settings.group_interval);
            let mut alerts: Vec<&Alert> = group.alerts.values().filter(|a| !inhibited(a)).collect();
            alerts.sort_by(|a, b| {
                b.is_firing(now)
                    .cmp(&a.is_firing(now))
                    .then(a.starts_at.cmp(&b.starts_at))
                    .then(a.labels.cmp(&b.labels))
            });
            let firing: BTreeSet<u64> = alerts
                .iter()
                .filter(|a| a.is_firing(now))
                .map(|a| a.fingerprint())
                .collect();
            let resolved: BTreeSet<u64> = alerts
                .iter()
                .filter(|a| !a.is_firing(now))
                .map(|a| a.fingerprint())
                .collect();
            for receiver in &group.receivers {
                let nflog_key = format!("{key}|{}", receiver.name());
                let entry = self.nflog.get(&nflog_key);
                let Some(reason) = needs_update(
                    entry,
                    &firing,
                    &resolved,
                    group.settings.send_resolved,
                    chrono_dur(group.settings.repeat_interval),
                    now,
                ) else {
                    continue;
                };
                let new_entry = NflogEntry {
                    firing: firing.clone(),
                    resolved: resolved.clone(),
                    at: now,
                };
                self.nflog.insert(nflog_key.clone(), new_entry.clone());
                self.dirty.insert(nflog_key.clone());
                let chosen: Vec<Alert> = alerts
                    .iter()
                    .filter(|a| group.settings.send_resolved || a.is_firing(now))
                    .map(|a| (*a).clone())
                    .collect();
                let idempotency = format!(
                    "{:016x}",
                    super::fnv1a(
                        format!(
                            "{nflog_key}|{}|{firing:?}|{resolved:?}",
                            now.timestamp_nanos_opt().unwrap_or_default()
                        )
                        .as_bytes()
                    )
                );
                out.push(Notification {
                    group_key: key.clone(),
                    route: group.route.clone(),
                    receiver: receiver.clone(),
                    reason,
                    group_labels: group.labels.clone(),
                    alerts: chosen,
                    at: now,
                    key: idempotency,
                    nflog_key,
                    nflog: new_entry,
                });
            }
            // Resolved alerts were reported (or never will be): drop them.
            group.alerts.retain(|_, a| a.is_firing(now));
            if group.alerts.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            if let Some(g) = self.groups.remove(&key) {
                for r in &g.receivers {
                    // A finished group's log entry is kept only while it still says something.
                    let k = format!("{key}|{}", r.name());
                    if self.nflog.get(&k).is_some_and(|e| e.firing.is_empty()) {
                        self.nflog.remove(&k);
                        self.dirty.insert(k);
                    }
                }
            }
        }
        // Notifications whose alerts were all filtered out (resolved, send_resolved off) only
        // update the log.
        out.into_iter().filter(|n| !n.alerts.is_empty()).collect()
    }

    /// Notification-log changes since the last call (`None`: entry removed), to persist.
    pub fn take_nflog_changes(&mut self) -> Vec<(String, Option<NflogEntry>)> {
        let nflog = &self.nflog;
        self.dirty
            .drain()
            .map(|k| {
                let v = nflog.get(&k).cloned();
                (k, v)
            })
            .collect()
    }
}

/// Alertmanager-style group key: route matcher (with the annotation-added receivers, which make
/// a separate group so they get only their own alerts), then the group labels.
pub fn group_key(route: &RouteTarget, labels: &BTreeMap<String, String>) -> String {
    let mut key = format!("{{route={:?}", route.name);
    if let Some(extra) = &route.extra {
        key.push_str(&format!(",extra={extra:?}"));
    }
    key.push_str("}:{");
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    key.push_str(&parts.join(","));
    key.push('}');
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn alert(name: &str, extra: &[(&str, &str)], ends: Option<i64>) -> Alert {
        let mut labels: BTreeMap<String, String> =
            [("alertname".to_string(), name.to_string())].into();
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        Alert {
            labels,
            annotations: BTreeMap::new(),
            starts_at: t(0),
            ends_at: ends.map(t),
            generator_url: String::new(),
            value: None,
            expr: None,
        }
    }

    fn route(send_resolved: bool) -> RouteTarget {
        RouteTarget {
            name: "payments".into(),
            settings: RouteSettings {
                group_by: vec!["alertname".into()],
                group_wait: Duration::from_secs(30),
                group_interval: Duration::from_secs(300),
                repeat_interval: Duration::from_secs(3600),
                send_resolved,
            },
            receivers: vec![Receiver::Webhook {
                url: "http://h/".into(),
            }],
            extra: None,
        }
    }

    #[test]
    fn a_new_group_waits_group_wait_then_notifies_once_with_all_its_alerts() {
        let mut d = Dispatcher::default();
        let r = route(true);
        d.insert(&r, alert("A", &[("pod", "1")], None), t(0));
        d.insert(&r, alert("A", &[("pod", "2")], None), t(10));
        assert!(d.flush_due(t(29)).is_empty());
        let n = d.flush_due(t(30));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].alerts.len(), 2);
        assert_eq!(n[0].reason, Reason::FirstNotification);
        // Unchanged at the next interval: deduplicated.
        assert!(d.flush_due(t(330)).is_empty());
    }

    #[test]
    fn an_alert_resolved_before_group_wait_is_never_notified() {
        let mut d = Dispatcher::default();
        d.insert(&route(true), alert("A", &[], Some(20)), t(0));
        assert!(d.flush_due(t(30)).is_empty());
        assert_eq!(d.group_count(), 0);
    }

    #[test]
    fn a_new_alert_in_a_group_waits_for_group_interval() {
        let mut d = Dispatcher::default();
        let r = route(true);
        d.insert(&r, alert("A", &[("pod", "1")], None), t(0));
        assert_eq!(d.flush_due(t(30)).len(), 1);
        d.insert(&r, alert("A", &[("pod", "2")], None), t(40));
        assert!(d.flush_due(t(100)).is_empty());
        let n = d.flush_due(t(330));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].reason, Reason::NewAlertsInGroup);
    }

    #[test]
    fn an_unchanged_group_repeats_after_repeat_interval() {
        let mut d = Dispatcher::default();
        let r = route(true);
        d.insert(&r, alert("A", &[], None), t(0));
        assert_eq!(d.flush_due(t(30)).len(), 1);
        let mut repeats = Vec::new();
        for i in 1..=13 {
            let now = t(30 + i * 300);
            if let Some(n) = d.flush_due(now).first() {
                repeats.push((now, n.reason));
            }
        }
        assert_eq!(
            repeats,
            vec![(t(30 + 12 * 300), Reason::RepeatIntervalElapsed)]
        );
    }

    #[test]
    fn a_resolution_is_notified_only_when_send_resolved() {
        for send_resolved in [true, false] {
            let mut d = Dispatcher::default();
            let r = route(send_resolved);
            d.insert(&r, alert("A", &[], None), t(0));
            assert_eq!(d.flush_due(t(30)).len(), 1);
            d.insert(&r, alert("A", &[], Some(100)), t(100));
            let n = d.flush_due(t(330));
            assert_eq!(n.len(), usize::from(send_resolved));
            if let Some(n) = n.first() {
                assert_eq!(n.reason, Reason::AllAlertsResolved);
                assert_eq!(n.status(), "resolved");
            }
            assert_eq!(d.group_count(), 0);
        }
    }

    #[test]
    fn a_ticket_alert_is_inhibited_while_the_page_tier_of_the_same_slo_fires() {
        let mut d = Dispatcher::default();
        let r = route(true);
        d.insert(
            &r,
            alert("Burn", &[("severity", "page"), ("slo", "a")], None),
            t(0),
        );
        d.insert(
            &r,
            alert("Burn", &[("severity", "ticket"), ("slo", "a")], None),
            t(0),
        );
        d.insert(
            &r,
            alert("Burn", &[("severity", "ticket"), ("slo", "b")], None),
            t(0),
        );
        let n = d.flush_due(t(30));
        assert_eq!(n.len(), 1);
        let sev: Vec<(&str, &str)> = n[0]
            .alerts
            .iter()
            .map(|a| (a.label("severity").unwrap(), a.label("slo").unwrap()))
            .collect();
        assert_eq!(sev.len(), 2);
        assert!(sev.contains(&("page", "a")));
        assert!(sev.contains(&("ticket", "b")));
        // The page resolves: the ticket tier of `a` is now notified.
        d.insert(
            &r,
            alert("Burn", &[("severity", "page"), ("slo", "a")], Some(300)),
            t(300),
        );
        let n = d.flush_due(t(330));
        assert_eq!(n.len(), 1);
        assert!(
            n[0].alerts
                .iter()
                .any(|a| a.label("severity") == Some("ticket")
                    && a.label("slo") == Some("a")
                    && a.is_firing(t(330)))
        );
    }

    #[test]
    fn dedupe_follows_alertmanager_needs_update() {
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        let e = NflogEntry {
            firing: set(&[1, 2]),
            resolved: set(&[]),
            at: t(0),
        };
        let rep = chrono::Duration::hours(1);
        assert_eq!(
            needs_update(None, &set(&[]), &set(&[1]), true, rep, t(1)),
            None
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1]), &set(&[2]), false, rep, t(1)),
            None
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1]), &set(&[2]), true, rep, t(1)),
            Some(Reason::NewResolvedAlerts)
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1, 3]), &set(&[]), true, rep, t(1)),
            Some(Reason::NewAlertsInGroup)
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1, 2]), &set(&[]), true, rep, t(3599)),
            None
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1, 2]), &set(&[]), true, rep, t(3600)),
            Some(Reason::RepeatIntervalElapsed)
        );
    }
}
