//! Alert state persisted under `--state-dir` in an embedded redb database, so that a restart
//! neither re-sends a firing notification early (send times are kept) nor resets `for`
//! timers (activeAt is kept, then adjusted by Prometheus's restore rules).
//!
//! One record per rule: the time of its last evaluation and its alerts (pending, firing and
//! resolved-but-retained, with activeAt, firedAt, lastSentAt, resolvedAt, keepFiringSince).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::alert::Alert;
use super::group::{Group, RuleKind};

const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("rules");

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory could not be created.
    #[error("creating state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("state database {path}: {message}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// What is kept for one rule.
#[derive(Debug, Serialize, Deserialize)]
struct PersistedRule {
    last_evaluation: DateTime<Utc>,
    alerts: Vec<Alert>,
}

/// The state database.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `DIR/evaluator.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("evaluator.redb");
        let db = Database::create(&path).map_err(|e| StoreError::Db {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Store { db, path })
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Writes the state of every alerting rule of `group`, in one transaction.
    pub fn save_group(&self, group: &Group) -> Result<(), StoreError> {
        let Some(last_evaluation) = group.last_evaluation else {
            return Ok(());
        };
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(RULES).map_err(|e| self.err(e))?;
            for entry in &group.rules {
                let RuleKind::Alerting(rule) = &entry.kind else {
                    continue;
                };
                let record = PersistedRule {
                    last_evaluation: entry.status.last_evaluation.unwrap_or(last_evaluation),
                    alerts: rule.active.values().cloned().collect(),
                };
                let bytes = serde_json::to_vec(&record).map_err(|e| self.err(e))?;
                table
                    .insert(record_key(group, &entry.key).as_str(), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Loads saved alerts into the rules of `group` and marks the group for the `for`-state
    /// restore at its first evaluation. Returns how many alerts were loaded.
    pub fn load_into(&self, group: &mut Group) -> Result<usize, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match txn.open_table(RULES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(self.err(e)),
        };
        let mut loaded = 0;
        let mut down_at: Option<DateTime<Utc>> = None;
        let key_prefix = group.key();
        for entry in &mut group.rules {
            let RuleKind::Alerting(rule) = &mut entry.kind else {
                continue;
            };
            let key = format!("{key_prefix}\u{1e}{}", entry.key);
            let Some(value) = table.get(key.as_str()).map_err(|e| self.err(e))? else {
                continue;
            };
            let record: PersistedRule = match serde_json::from_slice(value.value()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "ignoring unreadable saved state");
                    continue;
                }
            };
            down_at =
                Some(down_at.map_or(record.last_evaluation, |d| d.max(record.last_evaluation)));
            loaded += record.alerts.len();
            rule.active = record
                .alerts
                .into_iter()
                .map(|a| (a.labels.clone(), a))
                .collect();
        }
        group.restore_from = down_at;
        Ok(loaded)
    }
}

impl Store {
    /// Deletes saved state of rules that are not in `groups` (removed from the rule files), so
    /// a rule added back later starts afresh instead of resurrecting old alerts.
    pub fn retain_only(&self, groups: &[Group]) -> Result<usize, StoreError> {
        let keep: std::collections::BTreeSet<String> = groups
            .iter()
            .flat_map(|g| g.rules.iter().map(move |r| record_key(g, &r.key)))
            .collect();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let removed;
        {
            let mut table = txn.open_table(RULES).map_err(|e| self.err(e))?;
            let before = table.len().map_err(|e| self.err(e))?;
            table
                .retain(|k, _| keep.contains(k))
                .map_err(|e| self.err(e))?;
            removed = before - table.len().map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(removed as usize)
    }
}

fn record_key(group: &Group, rule_key: &str) -> String {
    format!("{}\u{1e}{rule_key}", group.key())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::evaluator::alert::{AlertState, Labels};
    use crate::evaluator::datasource::Sample;

    #[test]
    fn alerts_and_their_times_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("r.yaml");
        std::fs::write(
            &rules,
            "groups:\n- name: g\n  rules:\n  - {alert: A, expr: up, for: 5m}\n",
        )
        .unwrap();
        let load = || {
            crate::evaluator::group::load_groups(
                &[rules.display().to_string()],
                Duration::from_secs(60),
            )
            .unwrap()
            .remove(0)
        };
        let mut g = load();
        let ts = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let RuleKind::Alerting(rule) = &mut g.rules[0].kind else {
            panic!()
        };
        let sample = Sample {
            labels: Labels::from([("job".into(), "x".into())]),
            value: f64::NAN,
        };
        rule.apply(ts, &[sample], 0, &mut |i| i.text.to_string())
            .unwrap();
        g.rules[0].status.last_evaluation = Some(ts);
        g.last_evaluation = Some(ts);
        let store = Store::open(&dir.path().join("state")).unwrap();
        store.save_group(&g).unwrap();
        drop(store);

        let store = Store::open(&dir.path().join("state")).unwrap();
        let mut fresh = load();
        assert_eq!(store.load_into(&mut fresh).unwrap(), 1);
        assert_eq!(fresh.restore_from, Some(ts));
        let RuleKind::Alerting(rule) = &fresh.rules[0].kind else {
            panic!()
        };
        let a = rule.active.values().next().unwrap();
        assert_eq!(a.state, AlertState::Pending);
        assert_eq!(a.active_at, ts);
        assert!(a.value.is_nan());

        assert_eq!(store.retain_only(std::slice::from_ref(&fresh)).unwrap(), 0);
        assert_eq!(store.retain_only(&[]).unwrap(), 1);
        let mut again = load();
        assert_eq!(
            store.load_into(&mut again).unwrap(),
            0,
            "removed rules are forgotten"
        );
    }
}
