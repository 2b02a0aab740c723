//! Slack incoming webhook with Block Kit blocks: a header, the key facts as fields, the templated
//! details (`slack.md`), buttons to the runbook, dashboard and source, and a context line.
//!
//! The webhook URL is a secret: it is read from its file at delivery time and never logged or
//! stored in the outbox.

use serde_json::{Value, json};

use super::context::NotificationContext;
use super::templates::{TemplateError, Templates};

/// Slack's limits: header text 150 characters, section text 3000, 10 fields.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders the webhook body (JSON).
pub fn render(
    templates: &Templates,
    ctx: &NotificationContext,
    channel: Option<&str>,
) -> Result<String, TemplateError> {
    let details = templates.render("slack.md", ctx)?;
    let subject = templates.render("email_subject.txt", ctx)?;
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let first = ctx.alerts.first();
    let icon = if ctx.status == "firing" {
        ":rotating_light:"
    } else {
        ":white_check_mark:"
    };
    let mut blocks: Vec<Value> = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&format!("{icon} {subject}"), HEADER_MAX), "emoji": true}
    })];
    if let Some(a) = first {
        let mut fields = Vec::new();
        let mut field = |name: &str, value: &str| {
            if !value.is_empty() {
                fields.push(json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", esc(value))}));
            }
        };
        field("Service", &a.service);
        field("Namespace", &a.namespace);
        field("Owner", &a.owner);
        field("Severity", &a.severity);
        if a.status == "firing" {
            field(
                "Firing since",
                &format!("{} ({})", a.starts_at, a.firing_for),
            );
        } else {
            field("Lasted", &a.firing_for);
        }
        field("Value", a.value.as_deref().unwrap_or(""));
        if let Some(left) = a.slo.as_ref().and_then(|s| s.error_budget_left.as_deref()) {
            field("Error budget left", left);
        }
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !details.trim().is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(details.trim(), SECTION_MAX)}
        }));
    }
    if let Some(a) = first {
        let buttons: Vec<Value> = [
            ("Runbook", a.runbook_url.as_str()),
            ("Dashboard", a.grafana_url.as_deref().unwrap_or("")),
            ("Source", a.generator_url.as_str()),
        ]
        .iter()
        .filter(|(_, url)| url.starts_with("http://") || url.starts_with("https://"))
        .map(|(name, url)| {
            json!({"type": "button", "text": {"type": "plain_text", "text": name}, "url": url})
        })
        .collect();
        if !buttons.is_empty() {
            blocks.push(json!({"type": "actions", "elements": buttons}));
        }
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("kubesignal · {} · {}", ctx.reason, ctx.sent_at)}]
    }));
    let mut body = json!({"text": subject, "blocks": blocks});
    if let Some(c) = channel {
        body["channel"] = json!(format!("#{}", c.trim_start_matches('#')));
    }
    Ok(body.to_string())
}
