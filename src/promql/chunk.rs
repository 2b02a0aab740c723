//! Compressed sample chunks: delta-of-delta timestamps and XOR'd float values, bit-packed as in
//! Facebook's Gorilla paper (Pelkonen et al., VLDB 2015), the scheme Prometheus's head chunks
//! also use. Regular scrapes cost about two bytes per sample instead of sixteen.

use super::value::Point;

/// Appends bits to a byte vector, most significant bit first.
#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 means the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Writes the low `n` bits of `v`, highest first.
    fn push_bits(&mut self, v: u64, n: u8) {
        for i in (0..n).rev() {
            self.push_bit((v >> i) & 1 == 1);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// The 64 bits starting at byte `i`, zero-padded past the end.
    fn word(&self, i: usize) -> u64 {
        match self.bytes.get(i..i + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("slice of 8 bytes")),
            None => {
                let mut buf = [0u8; 8];
                if i < self.bytes.len() {
                    let rest = &self.bytes[i..];
                    buf[..rest.len()].copy_from_slice(rest);
                }
                u64::from_be_bytes(buf)
            }
        }
    }

    /// The next `n` bits (1 to 56) without consuming them.
    fn peek(&self, n: u8) -> u64 {
        (self.word(self.pos / 8) << (self.pos % 8)) >> (64 - n as u32)
    }

    fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    /// Reads `n` bits (0 to 64), highest first.
    fn bits(&mut self, n: u8) -> u64 {
        match n {
            0 => 0,
            // One unaligned 64-bit load covers up to 57 bits past any bit offset.
            1..=56 => {
                let v = (self.word(self.pos / 8) << (self.pos % 8)) >> (64 - n as u32);
                self.pos += n as usize;
                v
            }
            _ => {
                let hi = self.bits(n - 32);
                (hi << 32) | self.bits(32)
            }
        }
    }
}

/// A sealed, immutable run of samples.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) count: u32,
    bytes: Box<[u8]>,
}

/// Sign-extends the low `n` bits of `v`.
fn sign_extend(v: u64, n: u8) -> i64 {
    let shift = 64 - n as u32;
    ((v << shift) as i64) >> shift
}

impl Chunk {
    /// Encodes `points`, which must be non-empty and in time order.
    pub(crate) fn encode(points: &[Point]) -> Chunk {
        let mut w = BitWriter::default();
        let first = points[0];
        w.push_bits(first.t as u64, 64);
        w.push_bits(first.v.to_bits(), 64);
        let (mut prev_t, mut prev_delta) = (first.t, 0i64);
        let mut prev_bits = first.v.to_bits();
        let (mut lead, mut trail) = (u8::MAX, 0u8);
        for p in &points[1..] {
            let delta = p.t - prev_t;
            let dod = delta.wrapping_sub(prev_delta);
            match dod {
                0 => w.push_bit(false),
                -64..=63 => {
                    w.push_bits(0b10, 2);
                    w.push_bits(dod as u64, 7);
                }
                -256..=255 => {
                    w.push_bits(0b110, 3);
                    w.push_bits(dod as u64, 9);
                }
                -2048..=2047 => {
                    w.push_bits(0b1110, 4);
                    w.push_bits(dod as u64, 12);
                }
                _ => {
                    w.push_bits(0b1111, 4);
                    w.push_bits(dod as u64, 64);
                }
            }
            prev_t = p.t;
            prev_delta = delta;

            let bits = p.v.to_bits();
            let xor = bits ^ prev_bits;
            prev_bits = bits;
            if xor == 0 {
                w.push_bit(false);
                continue;
            }
            w.push_bit(true);
            let l = (xor.leading_zeros() as u8).min(31);
            let t = xor.trailing_zeros() as u8;
            if lead != u8::MAX && l >= lead && t >= trail {
                // Fits the previous window: write only the meaningful bits.
                w.push_bit(false);
                w.push_bits(xor >> trail, 64 - lead - trail);
            } else {
                lead = l;
                trail = t;
                let len = 64 - l - t;
                w.push_bit(true);
                w.push_bits(l as u64, 5);
                // A length of 64 is written as 0; 6 bits cannot hold 64.
                w.push_bits((len % 64) as u64, 6);
                w.push_bits(xor >> t, len);
            }
        }
        Chunk {
            min_t: first.t,
            max_t: points[points.len() - 1].t,
            count: points.len() as u32,
            bytes: w.bytes.into_boxed_slice(),
        }
    }

    /// Appends every sample of the chunk to `out`.
    pub(crate) fn decode_into(&self, out: &mut Vec<Point>) {
        out.reserve(self.count as usize);
        let mut r = BitReader {
            bytes: &self.bytes,
            pos: 0,
        };
        let mut t = r.bits(64) as i64;
        let mut bits = r.bits(64);
        out.push(Point {
            t,
            v: f64::from_bits(bits),
        });
        let mut delta = 0i64;
        let (mut lead, mut trail) = (0u8, 0u8);
        for _ in 1..self.count {
            // Prefix codes 0, 10, 110, 1110, 1111 select the width of the delta-of-delta.
            let prefix = r.peek(4);
            let dod = if prefix & 0b1000 == 0 {
                r.skip(1);
                0
            } else if prefix & 0b0100 == 0 {
                r.skip(2);
                sign_extend(r.bits(7), 7)
            } else if prefix & 0b0010 == 0 {
                r.skip(3);
                sign_extend(r.bits(9), 9)
            } else if prefix & 0b0001 == 0 {
                r.skip(4);
                sign_extend(r.bits(12), 12)
            } else {
                r.skip(4);
                r.bits(64) as i64
            };
            delta = delta.wrapping_add(dod);
            t += delta;
            // Value codes: 0 same value, 10 same window, 11 new window.
            let prefix = r.peek(2);
            if prefix & 0b10 != 0 {
                r.skip(2);
                if prefix & 0b01 != 0 {
                    lead = r.bits(5) as u8;
                    let mut len = r.bits(6) as u8;
                    if len == 0 {
                        len = 64;
                    }
                    trail = 64 - lead - len;
                }
                let len = 64 - lead - trail;
                bits ^= r.bits(len) << trail;
            } else {
                r.skip(1);
            }
            out.push(Point {
                t,
                v: f64::from_bits(bits),
            });
        }
    }

    /// Bytes of compressed data.
    pub(crate) fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// Encodes points (non-empty, in time order) in the chunk format, for files that persist a
/// series; [`decode_points`] reads them back.
pub fn encode_points(points: &[Point]) -> Vec<u8> {
    Chunk::encode(points).bytes.into_vec()
}

/// Decodes `count` points written by [`encode_points`]. Damaged input gives wrong points, never
/// a panic; callers protect their files with a checksum and bound `count` by the data's size.
pub fn decode_points(bytes: &[u8], count: u32) -> Vec<Point> {
    if count == 0 {
        return Vec::new();
    }
    let chunk = Chunk {
        min_t: 0,
        max_t: 0,
        count,
        bytes: bytes.into(),
    };
    let mut out = Vec::new();
    chunk.decode_into(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(points: &[Point]) -> Vec<Point> {
        let c = Chunk::encode(points);
        let mut out = Vec::new();
        c.decode_into(&mut out);
        out
    }

    fn same(a: &[Point], b: &[Point]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
    }

    #[test]
    fn regular_counter_samples_survive_a_roundtrip_in_a_few_bytes_each() {
        let pts: Vec<Point> = (0..120)
            .map(|i| Point {
                t: 1_700_000_000_000 + i * 15_000 + (i % 3) * 7,
                v: (i * 37) as f64,
            })
            .collect();
        assert!(same(&roundtrip(&pts), &pts));
        let c = Chunk::encode(&pts);
        assert!(c.size() < pts.len() * 4, "{} bytes", c.size());
    }

    #[test]
    fn irregular_times_and_special_values_survive_a_roundtrip() {
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            crate::promql::value::stale_nan(),
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
            -123.456,
            f64::MAX,
            f64::MIN_POSITIVE,
            1.0,
            1.0,
        ];
        let times = [
            -5_000_000i64,
            -1,
            0,
            1,
            2,
            1000,
            1_000_000,
            1_000_001,
            i64::MAX / 4,
            i64::MAX / 4 + 60_000,
            i64::MAX / 4 + 60_001,
            i64::MAX / 2,
        ];
        let pts: Vec<Point> = times
            .iter()
            .zip(values)
            .map(|(&t, v)| Point { t, v })
            .collect();
        assert!(same(&roundtrip(&pts), &pts));
    }

    #[test]
    fn a_single_sample_chunk_roundtrips() {
        let pts = [Point { t: 42, v: 3.5 }];
        assert!(same(&roundtrip(&pts), &pts));
    }
}
