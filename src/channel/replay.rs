//! A channel's replay buffer: its last `cap` messages with increasing sequence numbers.
//! Sans-IO (no runtime, no clock): the actor owns one per channel.
//!
//! Numbering: locally a channel numbers its messages 1, 2, 3, …; with a backplane the
//! number comes with the message (assigned once, in Redis) and is kept when it is above the
//! last one. A number at or below the last (the numbering diverged, e.g. while Redis was
//! down) is replaced by last + 1, so on every instance numbers only ever increase.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct Replay<T> {
    cap: usize,
    items: VecDeque<(u64, T)>,
    last: u64,
    bytes: usize,
}

/// What a reconnecting client gets for `?since=SEQ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since<T> {
    pub items: Vec<(u64, T)>,
    /// Messages after SEQ were dropped from the buffer before this client came back (or the
    /// channel was reset): the client may have missed some.
    pub gap: bool,
}

/// Anything with a size in bytes (for the route's memory budget).
pub trait ByteSize {
    fn size(&self) -> usize;
}

impl<T: Clone + ByteSize> Replay<T> {
    pub fn new(cap: usize) -> Self {
        Replay {
            cap,
            items: VecDeque::with_capacity(cap.min(16)),
            last: 0,
            bytes: 0,
        }
    }

    /// The sequence number of the last message (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The number the next message gets: `hint` (from the backplane) when it is above the
    /// last, else last + 1.
    pub fn next_seq(&self, hint: Option<u64>) -> u64 {
        match hint {
            Some(s) if s > self.last => s,
            _ => self.last + 1,
        }
    }

    /// Append a message numbered `seq` (from [`next_seq`](Self::next_seq)); the oldest
    /// falls out beyond `cap`. Returns the bytes released.
    pub fn push(&mut self, seq: u64, item: T) -> usize {
        self.last = seq.max(self.last + 1);
        if self.cap == 0 {
            return 0;
        }
        self.bytes += item.size();
        self.items.push_back((self.last, item));
        let mut freed = 0;
        while self.items.len() > self.cap {
            freed += self.drop_oldest();
        }
        freed
    }

    /// Drop the oldest message; returns its size (0 when empty).
    pub fn drop_oldest(&mut self) -> usize {
        match self.items.pop_front() {
            Some((_, item)) => {
                let n = item.size();
                self.bytes -= n;
                n
            }
            None => 0,
        }
    }

    /// Drop every held message (the numbering continues). Returns the bytes released.
    pub fn clear(&mut self) -> usize {
        self.items.clear();
        std::mem::take(&mut self.bytes)
    }

    /// Messages after `since`. A cursor above the last number comes from an earlier life of
    /// the channel (it was evicted, or the instance restarted): everything held is new to
    /// that client, and the answer says there may be a gap.
    pub fn since(&self, since: u64) -> Since<T> {
        if since > self.last {
            return Since {
                items: self.items.iter().cloned().collect(),
                gap: true,
            };
        }
        let items: Vec<(u64, T)> = self
            .items
            .iter()
            .filter(|(s, _)| *s > since)
            .cloned()
            .collect();
        let first_held = self.items.front().map_or(self.last + 1, |(s, _)| *s);
        Since {
            gap: since + 1 < first_held && since < self.last,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ByteSize for &'static str {
        fn size(&self) -> usize {
            self.len()
        }
    }

    fn seqs(s: &Since<&str>) -> Vec<u64> {
        s.items.iter().map(|(n, _)| *n).collect()
    }

    fn push(r: &mut Replay<&'static str>, hint: Option<u64>, v: &'static str) -> u64 {
        let seq = r.next_seq(hint);
        r.push(seq, v);
        r.last_seq()
    }

    #[test]
    fn keeps_the_last_cap_messages_numbered_from_one() {
        let mut r = Replay::new(3);
        for (i, v) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            assert_eq!(push(&mut r, None, v), i as u64 + 1);
        }
        assert_eq!(r.last_seq(), 5);
        assert_eq!(r.bytes(), 3);
        let s = r.since(3);
        assert_eq!(seqs(&s), vec![4, 5]);
        assert!(!s.gap);
        assert_eq!(s.items[0].1, "d");
        assert!(r.since(5).items.is_empty() && !r.since(5).gap);
        // 1 is gone: a client at 1 missed 2.
        let s = r.since(1);
        assert_eq!(seqs(&s), vec![3, 4, 5]);
        assert!(s.gap);
        assert!(!r.since(2).gap, "3, 4, 5 are all there");
    }

    #[test]
    fn a_cursor_from_an_earlier_life_gets_everything() {
        let mut r = Replay::new(4);
        push(&mut r, None, "x");
        push(&mut r, None, "y");
        let s = r.since(57);
        assert_eq!(seqs(&s), vec![1, 2]);
        assert!(s.gap);
        // An empty, fresh channel: nothing, but say so.
        let fresh: Replay<&str> = Replay::new(4);
        assert!(fresh.since(3).items.is_empty());
        assert!(!fresh.since(0).gap);
    }

    #[test]
    fn backplane_numbers_are_kept_when_increasing_and_fixed_when_not() {
        let mut r = Replay::new(8);
        assert_eq!(push(&mut r, Some(10), "a"), 10);
        assert_eq!(push(&mut r, Some(12), "b"), 12, "a skipped number is kept");
        assert_eq!(
            push(&mut r, Some(5), "c"),
            13,
            "diverged (Redis restarted): renumbered, still increasing"
        );
        assert_eq!(push(&mut r, None, "d"), 14);
        let s = r.since(10);
        assert_eq!(seqs(&s), vec![12, 13, 14]);
        assert!(!s.gap, "numbers may skip without anything being lost here");
    }

    #[test]
    fn zero_capacity_only_counts() {
        let mut r = Replay::new(0);
        push(&mut r, None, "a");
        push(&mut r, None, "b");
        assert_eq!(r.last_seq(), 2);
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
        assert!(r.since(1).gap);
    }

    #[test]
    fn budget_helpers() {
        let mut r = Replay::new(8);
        push(&mut r, None, "aaa");
        push(&mut r, None, "bb");
        assert_eq!(r.drop_oldest(), 3);
        assert_eq!(r.bytes(), 2);
        assert_eq!(r.clear(), 2);
        assert!(r.is_empty());
        assert_eq!(push(&mut r, None, "c"), 3, "numbering continues");
    }
}
