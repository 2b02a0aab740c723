//! Notification templates (minijinja): email subject, text and HTML, and the Slack message text.
//!
//! Built-in templates live in `src/notify/templates/` and are compiled into the binary. A user
//! directory may override any of them by file name. `.html` templates auto-escape every value;
//! Slack text uses the `mrkdwn` filter (escapes `&`, `<`, `>` as Slack requires).

use std::path::Path;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

/// Template names and their built-in sources.
pub const BUILTIN: [(&str, &str); 4] = [
    (
        "email_subject.txt",
        include_str!("templates/email_subject.txt"),
    ),
    ("email.txt", include_str!("templates/email.txt")),
    ("email.html", include_str!("templates/email.html")),
    ("slack.md", include_str!("templates/slack.md")),
];

/// Errors loading or rendering templates.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// An override could not be read.
    #[error("reading template {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A template does not compile.
    #[error("template {name}: {source}")]
    Syntax {
        /// Template name (or override file).
        name: String,
        /// The error, with its line.
        source: minijinja::Error,
    },
    /// A template failed while rendering.
    #[error("rendering template {name}: {source}")]
    Render {
        /// Template name.
        name: String,
        /// The error, with its line.
        source: minijinja::Error,
    },
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

fn mrkdwn(v: String) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Templates {
    /// Built-in templates, with the files of `overrides` (if given) replacing them by name.
    pub fn load(overrides: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.add_filter("mrkdwn", mrkdwn);
        for (name, builtin) in BUILTIN {
            let source = match overrides.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        file: path.display().to_string(),
                        source,
                    })?
                }
                None => builtin.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|source| TemplateError::Syntax {
                    name: overrides
                        .map_or(name.to_string(), |d| d.join(name).display().to_string()),
                    source,
                })?;
        }
        Ok(Self { env })
    }

    /// Renders template `name` with `ctx`.
    pub fn render<S: Serialize>(&self, name: &str, ctx: &S) -> Result<String, TemplateError> {
        let err = |source| TemplateError::Render {
            name: name.to_string(),
            source,
        };
        self.env
            .get_template(name)
            .map_err(err)?
            .render(ctx)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::context::{AlertContext, NotificationContext};

    fn ctx() -> NotificationContext {
        NotificationContext {
            status: "firing".into(),
            owner: "payments".into(),
            firing_count: 1,
            title: "HighErrorRate".into(),
            alerts: vec![AlertContext {
                status: "firing".into(),
                alertname: "HighErrorRate".into(),
                summary: "<script>alert(1)</script> & more".into(),
                firing_for: "5m".into(),
                ..AlertContext::default()
            }],
            ..NotificationContext::default()
        }
    }

    #[test]
    fn html_escapes_values_and_text_does_not() {
        let t = Templates::load(None).unwrap();
        let html = t.render("email.html", &ctx()).unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; more"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        let text = t.render("email.txt", &ctx()).unwrap();
        assert!(text.contains("<script>alert(1)</script> & more"));
        let slack = t.render("slack.md", &ctx()).unwrap();
        assert!(
            slack.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
            "{slack}"
        );
        let subject = t.render("email_subject.txt", &ctx()).unwrap();
        assert_eq!(subject.trim(), "[FIRING:1] HighErrorRate · payments");
    }

    #[test]
    fn a_user_template_overrides_the_builtin_one_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("email_subject.txt"), "ALERT {{ owner }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(
            t.render("email_subject.txt", &ctx()).unwrap(),
            "ALERT payments"
        );
        std::fs::write(dir.path().join("email.txt"), "{% for %}").unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap();
        assert!(err.to_string().contains("email.txt"), "{err}");
    }
}
