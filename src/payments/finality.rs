//! Ethereum finality, pure: a credit is `pending` in its block, `confirmed` once one block
//! sits on top of it, `final` at `ethereum_confirmations`, and `retracted` when a
//! reorganisation replaces its block (a head at its height, or a parent hash, that
//! differs from what was seen). Each transition is returned once, as the credit in its
//! new state, in block order.

use super::event::{Credit, Status};
use std::collections::BTreeMap;

/// Heads remembered beyond the finality depth (to notice a reorg that deep).
const SLACK: u64 = 64;

#[derive(Debug)]
struct Tracked {
    credit: Credit,
    block: u64,
    block_hash: String,
}

/// Credits waiting for finality, and the recent canonical heads.
#[derive(Debug)]
pub struct Finality {
    depth: u64,
    tracked: BTreeMap<String, Tracked>,
    heads: BTreeMap<u64, String>,
    head: Option<u64>,
}

impl Finality {
    /// `depth` = `ethereum_confirmations` (at least 1).
    pub fn new(depth: u64) -> Self {
        Finality {
            depth: depth.max(1),
            tracked: BTreeMap::new(),
            heads: BTreeMap::new(),
            head: None,
        }
    }

    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    fn status_at(&self, block: u64) -> Status {
        let confirmations = self.head.map_or(0, |h| h.saturating_sub(block));
        if confirmations >= self.depth {
            Status::Final
        } else if confirmations >= 1 {
            Status::Confirmed
        } else {
            Status::Pending
        }
    }

    /// A credit seen in block `block` (`block_hash`): its current state, to publish. A
    /// retracted credit (a removed log) is published as is and forgotten.
    pub fn track(&mut self, credit: Credit, block: u64, block_hash: &str) -> Credit {
        if credit.status == Status::Retracted {
            self.tracked.remove(&credit.id);
            return credit;
        }
        if self.heads.get(&block).is_some_and(|h| h != block_hash) {
            // Seen on a block that is no longer canonical: nothing to report yet.
            return credit.with_status(Status::Retracted);
        }
        let status = self.status_at(block);
        let credit = credit.with_status(status);
        if status != Status::Final {
            self.tracked.insert(
                credit.id.clone(),
                Tracked {
                    credit: credit.clone(),
                    block,
                    block_hash: block_hash.to_string(),
                },
            );
        }
        credit
    }

    /// A new head: every state change it causes.
    pub fn on_head(&mut self, number: u64, hash: &str, parent: &str) -> Vec<Credit> {
        let mut out = Vec::new();
        // The lowest height whose known hash the new chain contradicts.
        let mut fork = None;
        if number > 0 && self.heads.get(&(number - 1)).is_some_and(|h| h != parent) {
            fork = Some(number - 1);
        } else if self.heads.get(&number).is_some_and(|h| h != hash) {
            fork = Some(number);
        }
        if let Some(f) = fork {
            let keep = |block: u64, bh: &str| {
                (block == number && bh == hash)
                    || (number > 0 && block == number - 1 && bh == parent)
            };
            let gone: Vec<String> = self
                .tracked
                .iter()
                .filter(|(_, t)| t.block >= f && !keep(t.block, &t.block_hash))
                .map(|(id, _)| id.clone())
                .collect();
            let mut retracted: Vec<Tracked> = gone
                .iter()
                .filter_map(|id| self.tracked.remove(id))
                .collect();
            retracted.sort_by_key(|t| t.block);
            out.extend(
                retracted
                    .into_iter()
                    .map(|t| t.credit.with_status(Status::Retracted)),
            );
            self.heads.retain(|h, _| *h < f);
        }
        if number > 0 {
            self.heads.insert(number - 1, parent.to_string());
        }
        self.heads.insert(number, hash.to_string());
        self.heads.retain(|h, _| *h <= number);
        let keep_from = number.saturating_sub(self.depth + SLACK);
        self.heads.retain(|h, _| *h >= keep_from);
        self.head = Some(number);
        let mut changed: Vec<(u64, Credit)> = Vec::new();
        let mut done = Vec::new();
        for (id, t) in self.tracked.iter_mut() {
            if t.block > number {
                continue;
            }
            let confirmations = number - t.block;
            let status = if confirmations >= self.depth {
                Status::Final
            } else if confirmations >= 1 {
                Status::Confirmed
            } else {
                Status::Pending
            };
            if status != t.credit.status {
                t.credit.status = status;
                changed.push((t.block, t.credit.clone()));
            }
            if status == Status::Final {
                done.push(id.clone());
            }
        }
        for id in done {
            self.tracked.remove(&id);
        }
        changed.sort_by_key(|(b, _)| *b);
        out.extend(changed.into_iter().map(|(_, c)| c));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::event::{Asset, Chain};

    fn credit(id: &str, block: u64) -> Credit {
        Credit {
            id: id.into(),
            chain: Chain::Ethereum,
            status: Status::Pending,
            to: "0xTo".into(),
            from: None,
            amount: "1".into(),
            raw_amount: Some("1".into()),
            asset: Asset::native(Chain::Ethereum),
            tx: id.into(),
            height: Some(block),
            time: None,
        }
    }

    fn statuses(v: &[Credit]) -> Vec<(&str, Status)> {
        v.iter().map(|c| (c.id.as_str(), c.status)).collect()
    }

    #[test]
    fn pending_confirmed_final() {
        let mut f = Finality::new(3);
        assert!(f.on_head(10, "h10", "h9").is_empty());
        let c = f.track(credit("a", 10), 10, "h10");
        assert_eq!(c.status, Status::Pending);
        assert_eq!(
            statuses(&f.on_head(11, "h11", "h10")),
            [("a", Status::Confirmed)]
        );
        assert!(f.on_head(12, "h12", "h11").is_empty());
        assert_eq!(
            statuses(&f.on_head(13, "h13", "h12")),
            [("a", Status::Final)]
        );
        assert_eq!(f.tracked(), 0);
        assert!(f.on_head(14, "h14", "h13").is_empty());
        // A credit found in a block already deep enough is final at once.
        assert_eq!(f.track(credit("b", 10), 10, "h10").status, Status::Final);
        assert_eq!(f.tracked(), 0);
    }

    #[test]
    fn reorg_retracts_replaced_blocks_only() {
        let mut f = Finality::new(12);
        f.on_head(10, "h10", "h9");
        f.on_head(11, "h11", "h10");
        f.track(credit("old", 10), 10, "h10");
        f.track(credit("gone", 11), 11, "h11");
        // A sibling of block 11 becomes the head.
        let out = f.on_head(11, "h11b", "h10");
        assert_eq!(statuses(&out), [("gone", Status::Retracted)]);
        assert_eq!(f.tracked(), 1);
        // The same transaction in the new block 12 comes back as pending (same id).
        f.on_head(12, "h12", "h11b");
        assert_eq!(
            f.track(credit("gone", 12), 12, "h12").status,
            Status::Pending
        );
        // A deeper reorg noticed through the parent: 12's parent is not h11b.
        let out = f.on_head(12, "h12c", "h11c");
        let mut s = statuses(&out);
        s.sort();
        assert_eq!(s, [("gone", Status::Retracted)]);
        assert_eq!(f.tracked(), 1, "block 10 is still canonical");
        // Seen on a block that is no longer canonical: reported retracted, not tracked.
        assert_eq!(
            f.track(credit("late", 11), 11, "h11").status,
            Status::Retracted
        );
        // A removed log retracts its credit.
        let mut r = credit("old", 10);
        r.status = Status::Retracted;
        assert_eq!(f.track(r, 10, "h10").status, Status::Retracted);
        assert_eq!(f.tracked(), 0);
    }
}
