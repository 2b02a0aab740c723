//! The durable outbox: rendered notifications waiting for delivery, in an embedded redb file
//! (`outbox.redb` under the state dir).
//!
//! A notification is written together with the notification-log update that caused it, in one
//! transaction: after a crash either both exist (and the notification is delivered) or neither
//! does (and the next flush decides again). Each entry is keyed by its idempotency key (group,
//! receiver and flush), so enqueueing the same send twice stores it once; the key also travels with
//! the delivery (`Message-ID`, `Idempotency-Key`) so receivers can drop a duplicate caused by a
//! crash between a delivery and its removal. Failed deliveries are retried with exponential backoff
//! and jitter until they succeed or expire.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::group::NflogEntry;

const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const NFLOG: TableDefinition<&str, &[u8]> = TableDefinition::new("nflog");

/// Notification-log entries older than this are forgotten at start (Alertmanager keeps 120h).
const NFLOG_RETENTION: chrono::Duration = chrono::Duration::hours(120);

/// Errors of the outbox store.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// redb failed.
    #[error("outbox store {path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// What went wrong.
        source: redb::Error,
    },
    /// An entry could not be encoded or decoded.
    #[error("outbox store {path}: entry {key}: {source}")]
    Codec {
        /// The database file.
        path: String,
        /// Entry key.
        key: String,
        /// What went wrong.
        source: serde_json::Error,
    },
}

/// Retry and expiry settings.
#[derive(Clone, Debug)]
pub struct OutboxOptions {
    /// A notification not delivered within this time is dropped (and counted as failed).
    pub max_age: Duration,
    /// First retry delay; doubled on each failure.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Deliveries attempted concurrently.
    pub concurrency: usize,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(12 * 3600),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: 64,
        }
    }
}

/// Where an HTTP notification goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpTarget {
    /// A URL from the routing file.
    Url(String),
    /// A file holding the URL (Slack: a secret, read at delivery time, never stored).
    UrlFile(PathBuf),
}

/// A rendered notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// An RFC 5322 message for the SMTP server of the routing file.
    Email {
        /// Envelope sender.
        from: String,
        /// Envelope recipients.
        to: Vec<String>,
        /// The formatted message (7-bit: every part is base64 or quoted-printable).
        message: String,
    },
    /// A JSON POST.
    Http {
        /// Where to.
        target: HttpTarget,
        /// The JSON body.
        body: String,
    },
}

/// One outbox entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Idempotency key (group, receiver, flush).
    pub key: String,
    /// Integration (`email`, `slack`, `webhook`, `alertmanager`), for metrics.
    pub receiver: String,
    /// Receiver name safe to log.
    pub target: String,
    /// What to send.
    pub delivery: Delivery,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it is dropped if still undelivered.
    pub expires_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Next attempt.
    pub next_attempt_at: DateTime<Utc>,
    /// Last delivery error.
    pub last_error: Option<String>,
}

/// What happened to a finished attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered and removed.
    Delivered,
    /// Failed; retried later.
    Retry(DateTime<Utc>),
    /// Failed and past its expiry: dropped.
    Expired,
}

/// The outbox.
pub struct Outbox {
    db: Database,
    path: PathBuf,
    options: OutboxOptions,
    /// Due time (ms) and key of every stored entry not being delivered right now.
    index: Mutex<BTreeSet<(i64, String)>>,
    depth: AtomicI64,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` and returns it with the persisted notification log.
    pub fn open(
        path: &Path,
        options: OutboxOptions,
    ) -> Result<(Self, HashMap<String, NflogEntry>), OutboxError> {
        let store = |source: redb::Error| OutboxError::Store {
            path: path.display().to_string(),
            source,
        };
        let db = Database::create(path).map_err(|e| store(e.into()))?;
        let mut index = BTreeSet::new();
        let mut nflog = HashMap::new();
        let now = Utc::now();
        {
            let txn = db.begin_write().map_err(|e| store(e.into()))?;
            {
                let outbox = txn.open_table(OUTBOX).map_err(|e| store(e.into()))?;
                for row in outbox.iter().map_err(|e| store(e.into()))? {
                    let (k, v) = row.map_err(|e| store(e.into()))?;
                    let item: OutboxItem =
                        serde_json::from_slice(v.value()).map_err(|source| OutboxError::Codec {
                            path: path.display().to_string(),
                            key: k.value().to_string(),
                            source,
                        })?;
                    index.insert((item.next_attempt_at.timestamp_millis(), item.key));
                }
                let mut log = txn.open_table(NFLOG).map_err(|e| store(e.into()))?;
                let mut stale = Vec::new();
                for row in log.iter().map_err(|e| store(e.into()))? {
                    let (k, v) = row.map_err(|e| store(e.into()))?;
                    match serde_json::from_slice::<NflogEntry>(v.value()) {
                        Ok(e) if e.at > now - NFLOG_RETENTION => {
                            nflog.insert(k.value().to_string(), e);
                        }
                        _ => stale.push(k.value().to_string()),
                    }
                }
                for k in stale {
                    log.remove(k.as_str()).map_err(|e| store(e.into()))?;
                }
            }
            txn.commit().map_err(|e| store(e.into()))?;
        }
        let depth = index.len() as i64;
        Ok((
            Self {
                db,
                path: path.to_path_buf(),
                options,
                index: Mutex::new(index),
                depth: AtomicI64::new(depth),
            },
            nflog,
        ))
    }

    fn store_err(&self, source: impl Into<redb::Error>) -> OutboxError {
        OutboxError::Store {
            path: self.path.display().to_string(),
            source: source.into(),
        }
    }

    fn codec_err(&self, key: &str, source: serde_json::Error) -> OutboxError {
        OutboxError::Codec {
            path: self.path.display().to_string(),
            key: key.to_string(),
            source,
        }
    }

    /// The retry settings.
    pub fn options(&self) -> &OutboxOptions {
        &self.options
    }

    /// Entries stored (waiting or being delivered).
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Stores new notifications and notification-log changes in one transaction. An item whose
    /// key is already stored is not stored again.
    pub fn enqueue(
        &self,
        items: Vec<OutboxItem>,
        nflog: Vec<(String, Option<NflogEntry>)>,
    ) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let mut added = Vec::new();
        {
            let mut table = txn.open_table(OUTBOX).map_err(|e| self.store_err(e))?;
            for item in items {
                if table
                    .get(item.key.as_str())
                    .map_err(|e| self.store_err(e))?
                    .is_some()
                {
                    continue;
                }
                let bytes = serde_json::to_vec(&item).map_err(|e| self.codec_err(&item.key, e))?;
                table
                    .insert(item.key.as_str(), bytes.as_slice())
                    .map_err(|e| self.store_err(e))?;
                added.push((item.next_attempt_at.timestamp_millis(), item.key));
            }
            let mut log = txn.open_table(NFLOG).map_err(|e| self.store_err(e))?;
            for (key, entry) in nflog {
                match entry {
                    Some(e) => {
                        let bytes = serde_json::to_vec(&e).map_err(|e| self.codec_err(&key, e))?;
                        log.insert(key.as_str(), bytes.as_slice())
                            .map_err(|e| self.store_err(e))?;
                    }
                    None => {
                        log.remove(key.as_str()).map_err(|e| self.store_err(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.store_err(e))?;
        self.depth.fetch_add(added.len() as i64, Ordering::Relaxed);
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(added);
        Ok(())
    }

    /// Time of the earliest waiting entry.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .first()
            .and_then(|(ms, _)| DateTime::from_timestamp_millis(*ms))
    }

    /// Takes up to `limit` entries due at `now` out of the waiting index; they come back through
    /// [`Outbox::finish`].
    pub fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, OutboxError> {
        let keys: Vec<String> = {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            let mut keys = Vec::new();
            while keys.len() < limit {
                match index.first() {
                    Some((ms, _)) if *ms <= now.timestamp_millis() => {
                        if let Some((_, k)) = index.pop_first() {
                            keys.push(k);
                        }
                    }
                    _ => break,
                }
            }
            keys
        };
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(|e| self.store_err(e))?;
        let table = txn.open_table(OUTBOX).map_err(|e| self.store_err(e))?;
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = table.get(key.as_str()).map_err(|e| self.store_err(e))? {
                items.push(serde_json::from_slice(v.value()).map_err(|e| self.codec_err(&key, e))?);
            }
        }
        Ok(items)
    }

    /// Records the results of delivery attempts in one transaction: delivered entries are
    /// removed, failed ones rescheduled with backoff and jitter, or dropped once expired.
    pub fn finish(
        &self,
        results: Vec<(OutboxItem, Result<(), String>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(OutboxItem, Outcome)>, OutboxError> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let mut outcomes = Vec::with_capacity(results.len());
        let mut requeue = Vec::new();
        {
            let mut table = txn.open_table(OUTBOX).map_err(|e| self.store_err(e))?;
            for (mut item, result) in results {
                let outcome = match result {
                    Ok(()) => {
                        table
                            .remove(item.key.as_str())
                            .map_err(|e| self.store_err(e))?;
                        Outcome::Delivered
                    }
                    Err(error) => {
                        item.attempts += 1;
                        item.last_error = Some(error);
                        let next = now
                            + chrono::Duration::from_std(self.backoff(item.attempts))
                                .unwrap_or(chrono::Duration::MAX);
                        if next >= item.expires_at {
                            table
                                .remove(item.key.as_str())
                                .map_err(|e| self.store_err(e))?;
                            Outcome::Expired
                        } else {
                            item.next_attempt_at = next;
                            let bytes = serde_json::to_vec(&item)
                                .map_err(|e| self.codec_err(&item.key, e))?;
                            table
                                .insert(item.key.as_str(), bytes.as_slice())
                                .map_err(|e| self.store_err(e))?;
                            requeue.push((next.timestamp_millis(), item.key.clone()));
                            Outcome::Retry(next)
                        }
                    }
                };
                outcomes.push((item, outcome));
            }
        }
        txn.commit().map_err(|e| self.store_err(e))?;
        let gone = outcomes
            .iter()
            .filter(|(_, o)| !matches!(o, Outcome::Retry(_)))
            .count();
        self.depth.fetch_sub(gone as i64, Ordering::Relaxed);
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(requeue);
        Ok(outcomes)
    }

    /// Delay before attempt `attempts + 1`: exponential, capped, with "equal jitter" (half fixed,
    /// half random) so that many failed sends to one receiver do not retry in lockstep.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .options
            .base_backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let capped = exp.min(self.options.max_backoff);
        capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, now: DateTime<Utc>) -> OutboxItem {
        OutboxItem {
            key: key.into(),
            receiver: "webhook".into(),
            target: "webhook:http://x/".into(),
            delivery: Delivery::Http {
                target: HttpTarget::Url("http://x/".into()),
                body: "{}".into(),
            },
            created_at: now,
            expires_at: now + chrono::Duration::seconds(60),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
        }
    }

    fn options() -> OutboxOptions {
        OutboxOptions {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            ..OutboxOptions::default()
        }
    }

    #[test]
    fn entries_and_the_notification_log_survive_a_reopen_and_keys_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        let now = Utc::now();
        let entry = NflogEntry {
            firing: [1, 2].into(),
            resolved: Default::default(),
            at: now,
        };
        {
            let (outbox, log) = Outbox::open(&path, options()).unwrap();
            assert!(log.is_empty());
            outbox
                .enqueue(
                    vec![item("a", now), item("a", now)],
                    vec![("g|r".into(), Some(entry.clone()))],
                )
                .unwrap();
            outbox.enqueue(vec![item("a", now)], vec![]).unwrap();
            assert_eq!(outbox.depth(), 1);
        }
        let (outbox, log) = Outbox::open(&path, options()).unwrap();
        assert_eq!(log.get("g|r"), Some(&entry));
        let due = outbox.take_due(now, 10).unwrap();
        assert_eq!(due, vec![item("a", now)]);
        let out = outbox.finish(vec![(due[0].clone(), Ok(()))], now).unwrap();
        assert_eq!(out[0].1, Outcome::Delivered);
        assert_eq!(outbox.depth(), 0);
    }

    #[test]
    fn a_failed_delivery_is_retried_later_and_dropped_once_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(&dir.path().join("o.redb"), options()).unwrap();
        let now = Utc::now();
        outbox.enqueue(vec![item("a", now)], vec![]).unwrap();
        let due = outbox.take_due(now, 10).unwrap();
        let out = outbox
            .finish(vec![(due[0].clone(), Err("500".into()))], now)
            .unwrap();
        let Outcome::Retry(next) = out[0].1 else {
            panic!("{:?}", out[0].1)
        };
        assert!(next > now && next <= now + chrono::Duration::seconds(1));
        assert!(outbox.take_due(now, 10).unwrap().is_empty());
        let mut item = outbox.take_due(next, 10).unwrap().remove(0);
        assert_eq!(item.attempts, 1);
        item.expires_at = next;
        let out = outbox
            .finish(vec![(item, Err("500".into()))], next)
            .unwrap();
        assert_eq!(out[0].1, Outcome::Expired);
        assert_eq!(outbox.depth(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_within_half() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(&dir.path().join("o.redb"), options()).unwrap();
        for (attempts, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)] {
            for _ in 0..20 {
                let d = outbox.backoff(attempts).as_secs_f64();
                assert!(d >= full / 2.0 && d <= full, "attempt {attempts}: {d}");
            }
        }
    }
}
