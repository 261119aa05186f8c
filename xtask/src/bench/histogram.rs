//! A log-linear latency histogram in microseconds: exact below 128 µs, then
//! 64 buckets per power of two (about 1.6 % wide). Fixed size, so every
//! socket can keep its own and they merge by adding.

/// Values below this are their own bucket.
const LINEAR: u64 = 128;
/// Buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any u32 number of microseconds (over an hour).
const BUCKETS: usize = LINEAR as usize + (32 - 7) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max_us: 0 }
    }
}

fn bucket(us: u64) -> usize {
    let us = us.min(u64::from(u32::MAX));
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= 7
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + (exp as usize - 7) * SUB as usize + sub as usize
}

/// The smallest value of a bucket.
fn floor_of(index: usize) -> u64 {
    if index < LINEAR as usize {
        return index as u64;
    }
    let above = index - LINEAR as usize;
    let exp = (above / SUB as usize) as u32 + 7;
    let sub = (above % SUB as usize) as u64;
    (1 << exp) | (sub << (exp - SUB_BITS))
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// What is left of `self` once `part` (merged into it before) is taken
    /// out: e.g. the latencies outside a window. The maximum stays `self`'s,
    /// an upper bound that only caps the top bucket.
    pub fn without(&self, part: &Histogram) -> Histogram {
        let counts: Vec<u64> = self.counts.iter().zip(&part.counts).map(|(a, b)| a.saturating_sub(*b)).collect();
        let total = counts.iter().sum();
        Histogram { counts, total, max_us: if total > 0 { self.max_us } else { 0 } }
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1) in microseconds, or None when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                // The bucket's upper end, capped by the true maximum.
                let upper = if index + 1 < BUCKETS { floor_of(index + 1).saturating_sub(1) } else { self.max_us };
                return Some(upper.min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    pub fn max_us(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_and_quantiles_are_within_two_percent() {
        for v in [0, 1, 127, 128, 129, 1000, 4_999, 20_000, 1 << 30] {
            let b = bucket(v);
            assert!(floor_of(b) <= v && v < floor_of(b + 1), "{v}");
        }
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        let p99 = h.quantile_us(0.99).unwrap() as f64;
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.02, "{p99}");
        assert_eq!(h.quantile_us(1.0), Some(10_000));
    }

    #[test]
    fn without_a_part_leaves_the_rest() {
        let (mut all, mut slow) = (Histogram::default(), Histogram::default());
        for v in 1..=100 {
            all.record(v);
        }
        for v in 1_000..1_100 {
            all.record(v);
            slow.record(v);
        }
        let rest = all.without(&slow);
        assert_eq!(rest.count(), 100);
        assert_eq!(rest.quantile_us(0.99), Some(99));
    }
}
