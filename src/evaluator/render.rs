//! Expansion of alert label and annotation templates with the data Prometheus gives them
//! (`$labels`, `$value`, `$externalLabels`, `$externalURL`) plus `$activeAt`.

use std::sync::OnceLock;

use regex::Regex;

use super::alert::{Labels, RenderInput};

/// What templates can see besides the sample.
#[derive(Clone, Debug, Default)]
pub struct Templater {
    /// `--external-label`s.
    pub external_labels: Labels,
    /// `--external-url`.
    pub external_url: String,
}

impl Templater {
    /// Expands one template; an error becomes the text Prometheus would put there.
    pub fn render(&self, input: RenderInput<'_>) -> String {
        static ACTION: OnceLock<Regex> = OnceLock::new();
        let action = ACTION.get_or_init(|| Regex::new(r"\{\{-?\s*(.*?)\s*-?\}\}").expect("valid"));
        let mut error = None;
        let out = action.replace_all(input.text, |caps: &regex::Captures<'_>| {
            let body = caps[1].trim();
            match self.action(body, &input) {
                Some(s) => s,
                None => {
                    error.get_or_insert_with(|| format!("unsupported action {{{{ {body} }}}}"));
                    String::new()
                }
            }
        });
        match error {
            Some(e) => {
                tracing::warn!(template = input.name, error = %e, "expanding template failed");
                format!("<error expanding template: {e}>")
            }
            None => out.into_owned(),
        }
    }

    fn action(&self, body: &str, input: &RenderInput<'_>) -> Option<String> {
        if let Some(name) = body
            .strip_prefix("$labels.")
            .or_else(|| body.strip_prefix(".Labels."))
        {
            return Some(input.labels.get(name).cloned().unwrap_or_default());
        }
        if let Some(name) = body
            .strip_prefix("$externalLabels.")
            .or_else(|| body.strip_prefix(".ExternalLabels."))
        {
            return Some(self.external_labels.get(name).cloned().unwrap_or_default());
        }
        match body {
            "$value" | ".Value" => Some(format_go_float(input.value)),
            "$externalURL" | ".ExternalURL" => Some(self.external_url.clone()),
            "$activeAt" => Some(input.active_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
            _ => None,
        }
    }
}

/// A float printed the way Go's `%v` prints it (`3`, `0.5`, `1e+21`).
pub fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_value_and_external_data_are_substituted() {
        let t = Templater {
            external_labels: [("cluster".to_string(), "eu1".to_string())].into(),
            external_url: "http://eval".into(),
        };
        let labels: Labels = [("instance".to_string(), "db-1".to_string())].into();
        let out = t.render(RenderInput {
            name: "summary",
            text: "{{ $labels.instance }} in {{$externalLabels.cluster}} is {{ $value }} ({{ $externalURL }})",
            labels: &labels,
            value: 0.25,
            active_at: None,
        });
        assert_eq!(out, "db-1 in eu1 is 0.25 (http://eval)");
    }

    #[test]
    fn go_float_formatting_matches_go_for_large_and_small_numbers() {
        assert_eq!(format_go_float(3.0), "3");
        assert_eq!(format_go_float(1e21), "1e+21");
        assert_eq!(format_go_float(1.5e-7), "1.5e-07");
    }
}
