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

/// Which upstream to try next, and when: after every failure the next URL of the route's
/// list, after a capped exponential backoff per consecutive failure; the backoff restarts
/// once a connection proves useful; a fail-back returns to the first URL. The one policy
/// of every upstream connection: the route core's slots and the LNbits channel sockets.
#[derive(Debug, Clone)]
pub struct Failover {
    count: usize,
    index: usize,
    /// Where the list starts for this connection (its primary): 0, or a hedge lane's own.
    home: usize,
    backoff: Backoff,
}

impl Failover {
    pub fn new(count: usize, initial: Duration, max: Duration) -> Self {
        Failover::starting_at(count, 0, initial, max)
    }

    /// A failover whose primary is upstream `home` (then `home + 1`, …, wrapping): a
    /// hedge lane's connection starts at its own upstream.
    pub fn starting_at(count: usize, home: usize, initial: Duration, max: Duration) -> Self {
        let count = count.max(1);
        Failover {
            count,
            index: home % count,
            home: home % count,
            backoff: Backoff::new(initial, max),
        }
    }

    /// This connection's primary upstream.
    pub fn home(&self) -> usize {
        self.home
    }

    /// Move on to the next upstream of the list without a failure (and no backoff): the
    /// current one is taken by another hedge lane.
    pub fn skip(&mut self) {
        self.index = (self.index + 1) % self.count;
    }

    /// The upstream (index into the list) the current or next attempt uses.
    pub fn current(&self) -> usize {
        self.index
    }

    /// A connection failed or was lost: move to the next upstream; the delay before trying
    /// it (`jitter` is a uniform draw from [0, 1)).
    pub fn failed(&mut self, jitter: f64) -> Duration {
        self.index = (self.index + 1) % self.count;
        self.backoff.next_delay(jitter)
    }

    /// The connection proved useful: the next failure starts the backoff afresh.
    pub fn succeeded(&mut self) {
        self.backoff.reset();
    }

    /// Fail back to the primary (the first upstream, or the lane's own).
    pub fn to_primary(&mut self) {
        self.index = self.home;
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

    #[test]
    fn failover_walks_the_list_and_backs_off_until_success() {
        let ms = Duration::from_millis;
        let mut f = Failover::new(3, ms(100), ms(1000));
        assert_eq!(f.current(), 0);
        assert_eq!(f.failed(0.0), ms(50));
        assert_eq!(f.current(), 1);
        assert_eq!(f.failed(0.0), ms(100));
        assert_eq!(f.current(), 2);
        assert_eq!(f.failed(0.0), ms(200));
        assert_eq!(f.current(), 0, "wraps to the first");
        f.succeeded();
        assert_eq!(f.failed(0.0), ms(50), "backoff restarted");
        f.to_primary();
        assert_eq!(f.current(), 0);
    }

    #[test]
    fn a_lane_starts_and_fails_back_at_its_own_upstream() {
        let ms = Duration::from_millis;
        let mut f = Failover::starting_at(3, 1, ms(100), ms(1000));
        assert_eq!((f.current(), f.home()), (1, 1));
        f.failed(0.0);
        assert_eq!(f.current(), 2);
        f.skip();
        assert_eq!(f.current(), 0, "skips wrap like failures, without backoff");
        f.to_primary();
        assert_eq!(f.current(), 1);
    }
}
