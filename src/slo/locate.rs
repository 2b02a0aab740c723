//! Finds the line of a field path (`slos[1].sli.latency.threshold`) in block-style YAML, so
//! that errors found after deserialization can still point at a line. serde's errors carry
//! positions; checks on the values (objective range, PromQL, bucket bounds) need this.

/// One step of a field path.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Step::Index(i));
            }
        }
    }
    out
}

/// A line of content: where its key (after any `- `) starts, and the text from there.
struct Line<'a> {
    number: usize,
    dash: Option<usize>,
    column: usize,
    text: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let (dash, column, text) = match trimmed.strip_prefix("- ") {
            Some(rest) => {
                let inner = rest.trim_start();
                (Some(indent), raw.len() - inner.len(), inner)
            }
            None => (None, indent, trimmed),
        };
        out.push(Line {
            number: i + 1,
            dash,
            column,
            text,
        });
    }
    out
}

/// The 1-based line of the deepest part of `path` found, if any.
pub(crate) fn field_line(text: &str, path: &str) -> Option<usize> {
    let all = lines(text);
    // The current scope: lines [start, end) that are inside the value found so far, and the
    // column the parent key starts at (children are further right).
    let (mut start, mut end, mut parent): (usize, usize, Option<usize>) = (0, all.len(), None);
    let mut found = None;
    for step in steps(path) {
        match step {
            Step::Key(key) => {
                let Some(hit) = (start..end).find(|&i| {
                    let l = &all[i];
                    parent.is_none_or(|p| l.column > p)
                        && l.text
                            .strip_prefix(key)
                            .is_some_and(|rest| rest.starts_with(':'))
                }) else {
                    return found;
                };
                let column = all[hit].column;
                let stop = (hit + 1..end)
                    .find(|&i| all[i].column <= column && all[i].dash.is_none_or(|d| d < column))
                    .unwrap_or(end);
                found = Some(all[hit].number);
                (start, end, parent) = (hit, stop, Some(column));
                start += 1;
                if start > end {
                    return found;
                }
            }
            Step::Index(n) => {
                let Some(dash_column) = (start..end).filter_map(|i| all[i].dash).min() else {
                    return found;
                };
                let items: Vec<usize> = (start..end)
                    .filter(|&i| all[i].dash == Some(dash_column))
                    .collect();
                let Some(&hit) = items.get(n) else {
                    return found;
                };
                let stop = items.get(n + 1).copied().unwrap_or(end);
                found = Some(all[hit].number);
                // The item's first key sits on the dash line itself.
                (start, end, parent) = (hit, stop, Some(dash_column));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment
apiVersion: kubesignal.io/v1
slos:
  - name: a
    objective: 99
  - name: b
    objective: 100
    sli:
      latency:
        threshold: 0.3
    alerting: {page: true}
";

    #[test]
    fn a_nested_field_of_a_list_item_is_found_on_its_line() {
        assert_eq!(field_line(TEXT, "slos[1].objective"), Some(7));
        assert_eq!(field_line(TEXT, "slos[0].objective"), Some(5));
        assert_eq!(field_line(TEXT, "slos[1].sli.latency.threshold"), Some(10));
        assert_eq!(field_line(TEXT, "slos[1].name"), Some(6));
    }

    #[test]
    fn a_field_inside_flow_style_yaml_falls_back_to_its_deepest_block_parent() {
        assert_eq!(field_line(TEXT, "slos[1].alerting"), Some(11));
        assert_eq!(field_line(TEXT, "slos[1].alerting.page"), Some(11));
    }

    #[test]
    fn a_top_level_field_is_found_and_a_missing_one_is_not() {
        assert_eq!(field_line(TEXT, "apiVersion"), Some(2));
        assert_eq!(field_line("service: a\nwindow: 36h\n", "window"), Some(2));
        assert_eq!(field_line(TEXT, "nothing"), None);
    }
}
