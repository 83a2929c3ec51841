//! A topic's recent notifications by height, for clients resuming with `?since=N`:
//! bounded in count (`history_len`), oldest evicted first, and cleared when the topic's
//! connection is replaced (what it missed meanwhile is not known to be complete).

use crate::hub::Notice;
use std::collections::VecDeque;

/// What a resuming subscriber gets from a history.
#[derive(Debug, Default)]
pub(super) struct Resume {
    /// Heights `from..=to` the history cannot vouch for (`to: None`: up to now), if any.
    pub(super) gap: Option<(u64, Option<u64>)>,
    /// Everything after the first notification above `since`, in arrival order.
    pub(super) notices: Vec<Notice>,
}

#[derive(Debug, Default)]
pub(super) struct History {
    entries: VecDeque<(u64, Notice)>,
    /// Every notification of this height and above has been kept (until evicted); `None`:
    /// nothing recorded since the topic was made or its connection replaced.
    complete_from: Option<u64>,
}

impl History {
    /// Keep `notice` (at `height`), evicting the oldest beyond `cap`.
    pub(super) fn record(&mut self, height: u64, notice: Notice, cap: usize) {
        if cap == 0 {
            return;
        }
        if self.complete_from.is_none() {
            self.complete_from = Some(height);
        }
        while self.entries.len() >= cap {
            let Some((evicted, _)) = self.entries.pop_front() else {
                break;
            };
            // Entries of the evicted height may remain, but no longer all of them.
            let floor = evicted.saturating_add(1);
            self.complete_from = self.complete_from.map(|c| c.max(floor));
        }
        self.entries.push_back((height, notice));
    }

    /// The connection was replaced: what follows may not continue what is kept.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.complete_from = None;
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// What a subscriber that saw everything up to height `since` missed: the suffix of
    /// the history from its first notification above `since` (a reorg's lower heights
    /// after it included), and the range the history cannot vouch for.
    pub(super) fn since(&self, since: u64) -> Resume {
        let wanted = since.saturating_add(1);
        let gap = match self.complete_from {
            None => Some((wanted, None)),
            Some(c) if c > wanted => Some((wanted, Some(c - 1))),
            Some(_) => None,
        };
        let start = (self.entries.iter())
            .position(|(h, _)| *h > since)
            .unwrap_or(self.entries.len());
        let notices = self
            .entries
            .range(start..)
            .map(|(_, n)| n.clone())
            .collect();
        Resume { gap, notices }
    }
}
