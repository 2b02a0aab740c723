//! The routing file (`--routing-file`, YAML): SMTP settings, owners and their receivers, the triage
//! receiver, per-route grouping timers, the Grafana base URL and Alertmanager receivers.
//!
//! The file is plain serde data with `deny_unknown_fields`, so a typo is an error naming the file,
//! line and field rather than a silently ignored key. [`Routing::load`] validates addresses, URLs and
//! durations after parsing; a reload that fails keeps the previous [`Routing`] (see
//! [`crate::notify::Notifier::reload`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::owners::Resolution;

/// Errors met while loading the routing file.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The file could not be read.
    #[error("reading routing file {file}: {source}")]
    Read {
        /// The routing file.
        file: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a valid routing file.
    #[error("routing file {file}, line {line}, field `{field}`: {message}")]
    Invalid {
        /// The routing file.
        file: String,
        /// 1-based line of the offending value (0 when unknown).
        line: usize,
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP (only for a relay on a trusted network or a test server).
    None,
    /// Plain connection upgraded with STARTTLS; fails when the server does not offer it.
    Starttls,
    /// Implicit TLS from the first byte (usually port 465).
    Tls,
}

/// `smtp:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Sender address (`Alerts <alerts@example.com>` or a bare address).
    pub from: String,
    /// Connection security.
    pub tls: TlsMode,
    /// User for SMTP AUTH; no authentication when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the SMTP password (read at each connection; never logged).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle trusted for the server's certificate (a private relay); the Mozilla roots
    /// otherwise.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A duration written as in Prometheus/Alertmanager (`30s`, `5m`, `4h`, `1d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `30s`, `5m`, `1h30m`, `1d`, `1w` (Prometheus units) into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (expected e.g. 30s, 5m, 4h, 1d)");
    let mut total = 0u64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let ms = match &rest[digits..unit_end] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_millis(total))
}

/// Grouping timers and options that a route may set (all optional; `defaults:` fills the gaps).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDefaults {
    /// Labels whose values split alerts into groups.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Wait before the first notification of a new group.
    #[serde(default)]
    pub group_wait: Option<Dur>,
    /// Wait between notifications about changes of a group.
    #[serde(default)]
    pub group_interval: Option<Dur>,
    /// Wait before repeating an unchanged firing notification.
    #[serde(default)]
    pub repeat_interval: Option<Dur>,
    /// Whether to notify when alerts resolve.
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

/// An owner's (or triage's) receivers and grouping options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerRoute {
    /// Email addresses.
    #[serde(default)]
    pub email: Vec<String>,
    /// File holding a Slack incoming-webhook URL (a secret: never logged).
    #[serde(default)]
    pub slack_webhook_url_file: Option<PathBuf>,
    /// Generic webhook receiving the Alertmanager webhook v4 payload.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Alertmanager (base URL) to forward this owner's alerts to (`POST /api/v2/alerts`).
    #[serde(default)]
    pub alertmanager_url: Option<String>,
    /// See [`RouteDefaults::group_by`].
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// See [`RouteDefaults::group_wait`].
    #[serde(default)]
    pub group_wait: Option<Dur>,
    /// See [`RouteDefaults::group_interval`].
    #[serde(default)]
    pub group_interval: Option<Dur>,
    /// See [`RouteDefaults::repeat_interval`].
    #[serde(default)]
    pub repeat_interval: Option<Dur>,
    /// See [`RouteDefaults::send_resolved`].
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

/// An Alertmanager that receives every alert (for teams that keep Alertmanager's own routing).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerReceiver {
    /// Base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
}

/// Dashboard UIDs the Grafana links point at.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardUids {
    /// SLO burn-rate dashboard (alerts with an `slo` label).
    #[serde(default = "default_slo_uid")]
    pub slo: String,
    /// RED service dashboard (alerts with a `service` or `workload` label).
    #[serde(default = "default_red_uid")]
    pub red: String,
    /// USE workload dashboard (other alerts with a `workload` or `pod`).
    #[serde(default = "default_workload_uid")]
    pub workload: String,
    /// USE node dashboard (alerts with only a `node`).
    #[serde(default = "default_node_uid")]
    pub node: String,
}

fn default_slo_uid() -> String {
    "kubesignal-slo".into()
}
fn default_red_uid() -> String {
    "kubesignal-red-service".into()
}
fn default_workload_uid() -> String {
    "kubesignal-use-workload".into()
}
fn default_node_uid() -> String {
    "kubesignal-use-node".into()
}

impl Default for DashboardUids {
    fn default() -> Self {
        Self {
            slo: default_slo_uid(),
            red: default_red_uid(),
            workload: default_workload_uid(),
            node: default_node_uid(),
        }
    }
}

/// The whole routing file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    /// SMTP server for email receivers (required when any email receiver exists).
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Route options used where an owner does not set its own.
    #[serde(default)]
    pub defaults: RouteDefaults,
    /// Owner name (the `owner`/`team` label or `kubesignal.io/owner` annotation value) to receivers.
    #[serde(default)]
    pub owners: BTreeMap<String, OwnerRoute>,
    /// Receivers for alerts nobody owns.
    pub triage: OwnerRoute,
    /// Slack webhook used for a `kubesignal.io/slack-channel` annotation when the owner has none.
    #[serde(default)]
    pub slack_webhook_url_file: Option<PathBuf>,
    /// Grafana base URL for dashboard links (no links when absent).
    #[serde(default)]
    pub grafana_url: Option<String>,
    /// Dashboard UIDs for the links.
    #[serde(default)]
    pub grafana_dashboards: DashboardUids,
    /// Alertmanagers that receive every alert group.
    #[serde(default)]
    pub alertmanager: Vec<AlertmanagerReceiver>,
}

/// Effective grouping options of a route.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSettings {
    /// Labels that split alerts into groups.
    pub group_by: Vec<String>,
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait between notifications about a changed group.
    pub group_interval: Duration,
    /// Wait before repeating an unchanged firing notification.
    pub repeat_interval: Duration,
    /// Notify resolutions.
    pub send_resolved: bool,
}

/// One place a group's notification goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Receiver {
    /// One email to all these addresses.
    Email {
        /// Recipients.
        to: Vec<String>,
    },
    /// A Slack incoming webhook whose URL is in a file.
    Slack {
        /// File with the URL.
        url_file: PathBuf,
        /// Channel override (from `kubesignal.io/slack-channel`).
        channel: Option<String>,
    },
    /// Generic webhook (Alertmanager webhook v4 payload).
    Webhook {
        /// Target URL.
        url: String,
    },
    /// Alertmanager v2 API.
    Alertmanager {
        /// Base URL.
        url: String,
    },
}

impl Receiver {
    /// The integration name used in metrics and logs (`email`, `slack`, `webhook`, `alertmanager`).
    pub fn kind(&self) -> &'static str {
        match self {
            Receiver::Email { .. } => "email",
            Receiver::Slack { .. } => "slack",
            Receiver::Webhook { .. } => "webhook",
            Receiver::Alertmanager { .. } => "alertmanager",
        }
    }

    /// A stable name of this receiver within its route, safe to log (no secrets).
    pub fn name(&self) -> String {
        match self {
            Receiver::Email { to } => format!("email:{}", to.join(",")),
            Receiver::Slack { url_file, channel } => format!(
                "slack:{}{}",
                url_file.display(),
                channel
                    .as_deref()
                    .map(|c| format!("#{c}"))
                    .unwrap_or_default()
            ),
            Receiver::Webhook { url } => format!("webhook:{}", redact_url(url)),
            Receiver::Alertmanager { url } => format!("alertmanager:{}", redact_url(url)),
        }
    }
}

/// Drops user info and query from a URL before it is logged or used as a name.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// Where an alert goes: the route name, its options and its receivers.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteTarget {
    /// Owner name, or `triage`.
    pub name: String,
    /// Grouping options.
    pub settings: RouteSettings,
    /// Receivers, deduplicated and sorted.
    pub receivers: Vec<Receiver>,
    /// Receivers added by `kubesignal.io/*` annotations, as text (they split groups).
    pub extra: Option<String>,
}

/// A loaded, validated routing file.
#[derive(Clone, Debug)]
pub struct Routing {
    /// The file it came from.
    pub path: PathBuf,
    /// The parsed content.
    pub file: RoutingFile,
}

impl Routing {
    /// Reads, parses and validates a routing file.
    pub fn load(path: &Path) -> Result<Self, RoutingError> {
        let text = std::fs::read_to_string(path).map_err(|source| RoutingError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates routing-file text (`path` is used in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, RoutingError> {
        let file_name = path.display().to_string();
        let file: RoutingFile = serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            let message = e.to_string();
            // serde_yaml_ng prefixes the message with the dotted path of the field.
            let (field, message) = match message.split_once(": ") {
                Some((path, rest)) if !path.contains(' ') => (path.to_string(), rest.to_string()),
                _ => (String::from("(document)"), message),
            };
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.clone(), |(m, _)| m.to_string());
            RoutingError::Invalid {
                file: file_name.clone(),
                line,
                field,
                message,
            }
        })?;
        let routing = Routing {
            path: path.to_path_buf(),
            file,
        };
        routing.validate(text)?;
        Ok(routing)
    }

    fn validate(&self, text: &str) -> Result<(), RoutingError> {
        let invalid = |field: String, needle: &str, message: String| RoutingError::Invalid {
            file: self.path.display().to_string(),
            line: line_of(text, needle),
            field,
            message,
        };
        let mut routes: Vec<(String, &OwnerRoute)> = vec![("triage".into(), &self.file.triage)];
        routes.extend(
            self.file
                .owners
                .iter()
                .map(|(name, r)| (format!("owners.{name}"), r)),
        );
        let mut any_email = false;
        for (field, route) in &routes {
            for addr in &route.email {
                any_email = true;
                if addr.parse::<lettre::Address>().is_err() {
                    return Err(invalid(
                        format!("{field}.email"),
                        addr,
                        format!("{addr:?} is not an email address"),
                    ));
                }
            }
            for (key, url) in [
                ("webhook_url", &route.webhook_url),
                ("alertmanager_url", &route.alertmanager_url),
            ] {
                if let Some(url) = url {
                    check_url(url).map_err(|m| invalid(format!("{field}.{key}"), url, m))?;
                }
            }
        }
        if let Some(smtp) = &self.file.smtp {
            if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(invalid(
                    "smtp.from".into(),
                    &smtp.from,
                    format!("{:?} is not a sender address", smtp.from),
                ));
            }
            if smtp.password_file.is_some() && smtp.username.is_none() {
                return Err(invalid(
                    "smtp.username".into(),
                    "password_file",
                    "password_file is set but username is not".into(),
                ));
            }
        } else if any_email {
            return Err(invalid(
                "smtp".into(),
                "email:",
                "email receivers are configured but there is no smtp section".into(),
            ));
        }
        if let Some(url) = &self.file.grafana_url {
            check_url(url).map_err(|m| invalid("grafana_url".into(), url, m))?;
        }
        for (i, am) in self.file.alertmanager.iter().enumerate() {
            check_url(&am.url)
                .map_err(|m| invalid(format!("alertmanager[{i}].url"), &am.url, m))?;
        }
        Ok(())
    }

    /// Effective settings of a route: its own, else `defaults:`, else Alertmanager's defaults
    /// (group_wait 30s, group_interval 5m, repeat_interval 4h), with resolved notices on.
    pub fn settings(&self, route: &OwnerRoute) -> RouteSettings {
        let d = &self.file.defaults;
        RouteSettings {
            group_by: route
                .group_by
                .clone()
                .or_else(|| d.group_by.clone())
                .unwrap_or_else(|| vec!["alertname".into(), "namespace".into()]),
            group_wait: route
                .group_wait
                .or(d.group_wait)
                .map_or(Duration::from_secs(30), |d| d.0),
            group_interval: route
                .group_interval
                .or(d.group_interval)
                .map_or(Duration::from_secs(300), |d| d.0),
            repeat_interval: route
                .repeat_interval
                .or(d.repeat_interval)
                .map_or(Duration::from_secs(4 * 3600), |d| d.0),
            send_resolved: route.send_resolved.or(d.send_resolved).unwrap_or(true),
        }
    }

    /// Where an alert with this owner resolution goes.
    ///
    /// An owner missing from the file is treated like no owner (triage), so a typo in an
    /// annotation reaches someone; receivers added by annotations are kept in both cases.
    pub fn route_for(&self, res: &Resolution) -> RouteTarget {
        let (name, route) = match res
            .owner
            .as_ref()
            .and_then(|o| self.file.owners.get(o).map(|r| (o.clone(), r)))
        {
            Some(found) => found,
            None => ("triage".to_string(), &self.file.triage),
        };
        let mut receivers = Vec::new();
        let mut emails: Vec<String> = route.email.clone();
        emails.extend(res.emails.iter().cloned());
        emails.sort();
        emails.dedup();
        if !emails.is_empty() {
            receivers.push(Receiver::Email { to: emails });
        }
        let slack_file = route.slack_webhook_url_file.clone().or_else(|| {
            res.slack_channel
                .as_ref()
                .and(self.file.slack_webhook_url_file.clone())
        });
        if let Some(url_file) = slack_file {
            receivers.push(Receiver::Slack {
                url_file,
                channel: res.slack_channel.clone(),
            });
        }
        if let Some(url) = &route.webhook_url {
            receivers.push(Receiver::Webhook { url: url.clone() });
        }
        if let Some(url) = &route.alertmanager_url {
            receivers.push(Receiver::Alertmanager { url: url.clone() });
        }
        for am in &self.file.alertmanager {
            receivers.push(Receiver::Alertmanager {
                url: am.url.clone(),
            });
        }
        receivers.sort();
        receivers.dedup();
        let extra = (!res.emails.is_empty() || res.slack_channel.is_some()).then(|| {
            format!(
                "{}{}",
                res.emails.join(","),
                res.slack_channel
                    .as_deref()
                    .map(|c| format!("#{c}"))
                    .unwrap_or_default()
            )
        });
        RouteTarget {
            name,
            settings: self.settings(route),
            receivers,
            extra,
        }
    }

    /// Whether an owner name has an entry in the file.
    pub fn knows_owner(&self, owner: &str) -> bool {
        self.file.owners.contains_key(owner)
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(u) => Err(format!("unsupported URL scheme {:?}", u.scheme())),
        Err(e) => Err(format!("invalid URL: {e}")),
    }
}

/// 1-based line of the first occurrence of `needle` in `text` (0 when absent).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map_or(0, |pos| text[..pos].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
smtp: {host: mail.example.com, port: 587, from: alerts@example.com, tls: starttls, username: u, password_file: /p}
defaults: {group_wait: 10s}
owners:
  payments:
    email: [pay@example.com]
    group_by: [alertname]
    repeat_interval: 1h
triage:
  email: [sre@example.com]
grafana_url: https://grafana.example.com
";

    fn res(owner: Option<&str>) -> Resolution {
        Resolution {
            owner: owner.map(String::from),
            ..Resolution::default()
        }
    }

    #[test]
    fn an_owner_gets_its_own_receivers_and_settings_over_the_defaults() {
        let r = Routing::parse(Path::new("r.yaml"), GOOD).unwrap();
        let t = r.route_for(&res(Some("payments")));
        assert_eq!(t.name, "payments");
        assert_eq!(
            t.receivers,
            vec![Receiver::Email {
                to: vec!["pay@example.com".into()]
            }]
        );
        assert_eq!(t.settings.group_by, vec!["alertname".to_string()]);
        assert_eq!(t.settings.group_wait, Duration::from_secs(10));
        assert_eq!(t.settings.repeat_interval, Duration::from_secs(3600));
        assert_eq!(t.settings.group_interval, Duration::from_secs(300));
    }

    #[test]
    fn an_unknown_or_missing_owner_goes_to_triage_only() {
        let r = Routing::parse(Path::new("r.yaml"), GOOD).unwrap();
        for owner in [None, Some("nobody")] {
            let t = r.route_for(&res(owner));
            assert_eq!(t.name, "triage");
            assert_eq!(
                t.receivers,
                vec![Receiver::Email {
                    to: vec!["sre@example.com".into()]
                }]
            );
        }
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_line_and_field() {
        let text = GOOD.replace("    repeat_interval: 1h", "    repeat_intervall: 1h");
        let err = Routing::parse(Path::new("r.yaml"), &text).unwrap_err();
        match err {
            RoutingError::Invalid {
                file, line, field, ..
            } => {
                assert_eq!(file, "r.yaml");
                assert_eq!(line, 7);
                assert!(field.contains("owners.payments"), "{field}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_bad_duration_and_a_bad_address_are_rejected_with_their_line() {
        let text = GOOD.replace("group_wait: 10s", "group_wait: 10x");
        let err = Routing::parse(Path::new("r.yaml"), &text).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("10x"), "{err}");
        let text = GOOD.replace("pay@example.com", "not-an-address");
        let err = Routing::parse(Path::new("r.yaml"), &text).unwrap_err();
        assert!(err.to_string().contains("line 5"), "{err}");
        assert!(err.to_string().contains("owners.payments.email"), "{err}");
    }

    #[test]
    fn durations_use_prometheus_units() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
    }
}
