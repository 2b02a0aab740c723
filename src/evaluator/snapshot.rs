//! Snapshots of the embedded store in `--state-dir`, so a restart keeps the rules' windows.
//!
//! The whole store is written at once, so a flat file of our own fits better than redb: the
//! write is one sequential pass (no per-sample B-tree inserts or page copies), the file is about
//! as small as the store in memory (labels once per series, samples in the store's own compressed
//! chunk encoding, which keeps every value's bits so staleness markers survive), and replacing
//! it is a rename. Layout:
//!
//! ```text
//! "KSEMBSN2"  magic and version
//! varint      series count, then per series:
//!   varint    label count, then per label: varint length + name bytes, varint length + value bytes
//!   varint    sample count
//!   varint    byte length, then the samples encoded by `promql::chunk::encode_points`
//! 8 bytes     FNV-1a 64 of everything above, little endian
//! ```
//!
//! Writes go to a temporary file that is synced and renamed over the old snapshot, so a crash
//! leaves either the old or the new file. A damaged file fails the checksum or the decoding and
//! is reported to the caller, which logs it and starts empty.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::promql::chunk::{decode_points, encode_points};
use crate::promql::{Labels, Storage};

const MAGIC: &[u8; 8] = b"KSEMBSN2";

/// The snapshot's file name in the state directory.
pub const FILE_NAME: &str = "embedded-store.snapshot";

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid snapshot.
    #[error("snapshot {path} is damaged: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes the whole store.
pub fn encode(storage: &Storage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + storage.sample_count() * 3);
    out.extend_from_slice(MAGIC);
    put_varint(&mut out, storage.series_count() as u64);
    for s in storage.iter() {
        put_varint(&mut out, s.labels.len() as u64);
        for (k, v) in s.labels.iter() {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
        let points = s.all_samples();
        put_varint(&mut out, points.len() as u64);
        let encoded = if points.is_empty() {
            Vec::new()
        } else {
            encode_points(&points)
        };
        put_bytes(&mut out, &encoded);
    }
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at byte {}", self.pos))
    }

    /// A count that must fit in the remaining bytes (each item needs at least `min_size`),
    /// so a damaged length cannot make us allocate gigabytes.
    fn count(&mut self, min_size: usize) -> Result<usize, String> {
        let n = self.varint()?;
        let left = (self.data.len() - self.pos) as u64;
        if n.saturating_mul(min_size as u64) > left {
            return Err(format!("count {n} at byte {} exceeds the file", self.pos));
        }
        Ok(n as usize)
    }

    /// A varint length followed by that many bytes.
    fn take_counted(&mut self) -> Result<&'a [u8], String> {
        let n = self.count(1)?;
        self.take(n)
    }

    fn string(&mut self) -> Result<&'a str, String> {
        let n = self.count(1)?;
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| format!("label at byte {at} is not UTF-8"))
    }
}

/// Decodes a snapshot, appending its samples to `storage`.
pub fn decode(data: &[u8], storage: &mut Storage) -> Result<(), String> {
    if data.len() < MAGIC.len() + 8 || &data[..MAGIC.len()] != MAGIC {
        return Err("not a kubesignal store snapshot (bad magic)".into());
    }
    let (body, sum) = data.split_at(data.len() - 8);
    let want = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    if fnv1a(body) != want {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader {
        data: body,
        pos: MAGIC.len(),
    };
    let series = r.count(2)?;
    for _ in 0..series {
        let nlabels = r.count(2)?;
        let mut pairs = Vec::with_capacity(nlabels);
        for _ in 0..nlabels {
            let k = r.string()?;
            let v = r.string()?;
            pairs.push((k, v));
        }
        let labels = Labels::from_pairs(pairs);
        let n = r.varint()?;
        let bytes = r.take_counted()?;
        // Each sample after the first takes at least two bits.
        if n > 1 + bytes.len() as u64 * 4 || n > u64::from(u32::MAX) {
            return Err(format!(
                "sample count {n} does not fit in {} bytes",
                bytes.len()
            ));
        }
        let mut prev = None;
        for p in decode_points(bytes, n as u32) {
            if prev.is_some_and(|t| p.t <= t) {
                return Err(format!("samples of {labels} are out of order"));
            }
            prev = Some(p.t);
            storage.append(&labels, p.t, p.v);
        }
    }
    if r.pos != body.len() {
        return Err(format!(
            "{} unexpected bytes at the end",
            body.len() - r.pos
        ));
    }
    Ok(())
}

/// Writes `data` to `dir/FILE_NAME` atomically (temporary file, fsync, rename, fsync of the
/// directory).
pub fn write(dir: &Path, data: &[u8]) -> Result<(), SnapshotError> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    f.write_all(data).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io("renaming into place", &path))?;
    // The rename is durable only once the directory entry is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Loads `dir/FILE_NAME` into a new store. `Ok(None)` when there is no snapshot yet.
pub fn load(dir: &Path) -> Result<Option<Storage>, SnapshotError> {
    let path = dir.join(FILE_NAME);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Io {
                action: "reading",
                path,
                source,
            });
        }
    };
    let mut storage = Storage::new();
    decode(&data, &mut storage).map_err(|message| SnapshotError::Corrupt { path, message })?;
    Ok(Some(storage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{is_stale, stale_nan};

    fn sample_store() -> Storage {
        let mut s = Storage::new();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("instance", "h:1")]);
        let b = Labels::from_pairs([("__name__", "x_total"), ("path", "/ü")]);
        s.append(&a, 1_700_000_000_000, 1.0);
        s.append(&a, 1_700_000_015_000, 0.0);
        s.append(&b, 1_699_999_999_000, 1e300);
        s.append(&b, 1_700_000_001_000, stale_nan());
        s.append(&b, 1_700_000_002_000, f64::NEG_INFINITY);
        s
    }

    fn dump(s: &Storage) -> Vec<(Labels, Vec<i64>, Vec<u64>)> {
        let mut v: Vec<_> = s
            .iter()
            .map(|x| {
                let points = x.all_samples();
                (
                    x.labels.clone(),
                    points.iter().map(|p| p.t).collect(),
                    points.iter().map(|p| p.v.to_bits()).collect(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn a_snapshot_round_trips_every_sample_bit_for_bit() {
        let store = sample_store();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &encode(&store)).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(dump(&back), dump(&store));
        assert_eq!(back.sample_count(), 5);
        let stale = dump(&back)[1].2[1];
        assert!(is_stale(f64::from_bits(stale)));
    }

    #[test]
    fn a_missing_snapshot_is_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_reported_as_damage() {
        let data = encode(&sample_store());
        let dir = tempfile::tempdir().unwrap();
        for at in [0, 9, data.len() / 2, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 0x5a;
            std::fs::write(dir.path().join(FILE_NAME), &bad).unwrap();
            let err = load(dir.path()).unwrap_err();
            assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
        }
        std::fs::write(dir.path().join(FILE_NAME), &data[..data.len() - 3]).unwrap();
        assert!(load(dir.path()).is_err());
    }

    #[test]
    fn decoding_garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in 0..300 {
            let mut data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if len >= 8 {
                data[..8].copy_from_slice(MAGIC);
            }
            if len >= 16 {
                let n = data.len();
                let sum = fnv1a(&data[..n - 8]);
                data[n - 8..].copy_from_slice(&sum.to_le_bytes());
            }
            let _ = decode(&data, &mut Storage::new());
        }
        assert!(decode(b"short", &mut Storage::new()).is_err());
    }
}
