//! Per-user message rate on this node: a token bucket per username.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// `--message-rate` and `--message-burst`, enforced per node: a user's sockets share one bucket.
pub struct MessageRateLimit {
    /// Tokens per second; 0 turns the limit off.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl MessageRateLimit {
    /// `rate` tokens per second (0: no limit), holding at most `burst` (at least 1).
    pub fn new(rate: u32, burst: u32) -> Self {
        MessageRateLimit { rate: f64::from(rate), burst: f64::from(burst.max(1)), buckets: Mutex::default() }
    }

    /// Takes one token for `user`; false when the bucket is empty.
    pub fn allow(&self, user: &str) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 50_000 {
            // Forget buckets that have refilled: they hold no information.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket { tokens: self.burst, refilled: now });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies_per_user() {
        let limit = MessageRateLimit::new(20, 40);
        assert!((0..40).all(|_| limit.allow("a")));
        assert!(!limit.allow("a"));
        assert!(limit.allow("b"));
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert!(limit.allow("a"));
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let limit = MessageRateLimit::new(0, 1);
        assert!((0..10_000).all(|_| limit.allow("a")));
    }
}
