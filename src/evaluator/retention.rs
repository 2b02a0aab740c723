//! How much history the embedded store must keep: enough for the longest look back of any loaded
//! rule, found by walking each expression's syntax tree.

use std::time::Duration;

use promql_parser::parser::{Expr, Offset};

use super::group::{Group, RuleKind};

/// What the embedded store must keep and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The longest look back of any expression: range or subquery windows, offsets and the
    /// lookback delta, nested windows added up.
    pub query_window: Duration,
    /// The longest `for` or `keep_firing_for` of any alerting rule; an alert's state after a
    /// restart can depend on this much history.
    pub hold: Duration,
    /// Extra time kept so evaluations that run late or a reload do not miss a sample.
    pub margin: Duration,
}

impl Retention {
    /// The total to keep.
    pub fn total(&self) -> Duration {
        self.query_window + self.hold + self.margin
    }
}

/// The window `expr` reads, relative to the evaluation time, with `lookback` for instant
/// selectors. Unparseable expressions count as zero (the rule loader reports them).
pub fn expr_window(expr: &str, lookback: Duration) -> Duration {
    match promql_parser::parser::parse(expr) {
        Ok(ast) => window(&ast, lookback),
        Err(_) => Duration::ZERO,
    }
}

fn positive_offset(offset: &Option<Offset>) -> Duration {
    match offset {
        Some(Offset::Pos(d)) => *d,
        // A negative offset looks into the future of the evaluation time: no extra history.
        Some(Offset::Neg(_)) | None => Duration::ZERO,
    }
}

fn window(expr: &Expr, lookback: Duration) -> Duration {
    match expr {
        Expr::VectorSelector(vs) => lookback + positive_offset(&vs.offset),
        Expr::MatrixSelector(ms) => ms.range + positive_offset(&ms.vs.offset),
        // The inner expression is evaluated at steps reaching `range` back, each of which
        // looks back by its own window.
        Expr::Subquery(sq) => sq.range + positive_offset(&sq.offset) + window(&sq.expr, lookback),
        Expr::Aggregate(a) => {
            let param = a
                .param
                .as_deref()
                .map_or(Duration::ZERO, |p| window(p, lookback));
            window(&a.expr, lookback).max(param)
        }
        Expr::Unary(u) => window(&u.expr, lookback),
        Expr::Binary(b) => window(&b.lhs, lookback).max(window(&b.rhs, lookback)),
        Expr::Paren(p) => window(&p.expr, lookback),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .map(|a| window(a, lookback))
            .max()
            .unwrap_or(Duration::ZERO),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Duration::ZERO,
    }
}

/// The retention the embedded store needs for `groups`: the longest expression window plus the
/// longest `for`/`keep_firing_for`, plus `margin`.
pub fn for_groups(groups: &[Group], lookback: Duration, margin: Duration) -> Retention {
    let mut query_window = lookback;
    let mut hold = Duration::ZERO;
    for g in groups {
        // A query offset shifts every query of the group back.
        let shift = g.query_offset;
        for rule in &g.rules {
            query_window = query_window.max(expr_window(rule.expr(), lookback) + shift);
            if let RuleKind::Alerting(r) = &rule.kind {
                hold = hold.max(r.hold).max(r.keep_firing_for);
            }
        }
    }
    Retention {
        query_window,
        hold,
        margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKBACK: Duration = Duration::from_secs(300);

    fn secs(expr: &str) -> u64 {
        expr_window(expr, LOOKBACK).as_secs()
    }

    #[test]
    fn an_instant_selector_needs_the_lookback_delta() {
        assert_eq!(secs("up"), 300);
        assert_eq!(secs("up offset 1h"), 3600 + 300);
        assert_eq!(secs("up offset -1h"), 300);
    }

    #[test]
    fn the_widest_range_in_any_branch_wins() {
        assert_eq!(
            secs("sum(rate(a[5m])) / sum(rate(b[30d] offset 1d)) > 2"),
            31 * 86400
        );
        assert_eq!(secs("quantile_over_time(0.9, a[2h])"), 7200);
        assert_eq!(secs("topk(scalar(b offset 2h), a)"), 7200 + 300);
    }

    #[test]
    fn a_subquery_adds_its_range_to_the_inner_window() {
        assert_eq!(secs("max_over_time(rate(a[5m])[1h:1m])"), 3600 + 300);
        assert_eq!(secs("max_over_time(a[1h:] offset 10m)"), 3600 + 600 + 300);
    }

    #[test]
    fn a_rule_set_needs_its_widest_window_plus_its_longest_hold() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.yaml");
        std::fs::write(
            &file,
            "groups:\n- name: a\n  query_offset: 1m\n  rules:\n  - record: r\n    expr: sum(rate(x[30d]))\n\
             - name: b\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 1h\n    keep_firing_for: 2h\n",
        )
        .unwrap();
        let groups = super::super::group::load_groups(
            &[file.display().to_string()],
            Duration::from_secs(60),
        )
        .unwrap();
        let r = for_groups(&groups, LOOKBACK, Duration::from_secs(600));
        assert_eq!(r.query_window, Duration::from_secs(30 * 86400 + 60));
        assert_eq!(r.hold, Duration::from_secs(7200));
        assert_eq!(r.total(), Duration::from_secs(30 * 86400 + 60 + 7200 + 600));
    }

    #[test]
    fn literals_and_broken_expressions_need_nothing() {
        assert_eq!(secs("1 + 2"), 0);
        assert_eq!(secs("rate(a[5m"), 0);
    }
}
