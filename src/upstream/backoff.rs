//! Capped exponential backoff with "equal jitter": the delay before attempt n is
//! d/2 + rand·d/2 where d = min(max, initial·2ⁿ). Pure: the random draw is an argument.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `jitter` is a uniform draw from [0, 1).
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.attempt.min(20));
        let d = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        d / 2 + d.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// Consecutive failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ds: Vec<u128> = (0..6).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(ds, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..3 {
            b.next_delay(0.5);
        }
        let d = b.clone().next_delay(0.0);
        let e = b.next_delay(0.999);
        assert_eq!(d, Duration::from_millis(400));
        assert!(e > d && e < Duration::from_millis(800));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..200 {
            assert!(b.next_delay(0.5) <= Duration::from_secs(30));
        }
    }
}
