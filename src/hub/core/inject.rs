//! Backfill by injection (Solana, issue 14 part 2): after a switch, a resubscribed topic
//! asks the node's HTTP endpoint (`Action::Fetch`) what its subscription missed, and what
//! the node answers is pushed through the core as the node's own notification on the
//! topic's upstream subscription — so routing, one-shot endings (a signature's final
//! notification ends the topic), history and fan-out are the live path's. Only what is
//! newer than what the topic delivered, and different from it, is pushed: an account's or
//! program account's current value if it changed, the logs of signatures after the last
//! delivered slot (oldest first; one that a newer live notification already overtook is
//! announced by the gap notice rather than delivered out of order), a pending signature's
//! final status.

use super::backfill::Step;
use super::{Outbox, RouteCore};
use crate::dialect::backfill::solana::{self as sol, Kind};
use crate::hub::table::{SlotId, TopicId};
use crate::hub::{Notice, Utf8Bytes, WireText};
use crate::telemetry::RouteMetrics;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tracing::debug;

/// Program accounts pushed per switch at most; beyond, the gap notice.
const PROGRAM_PUSH_MAX: usize = 10_000;

/// A `logsSubscribe` backfill in progress.
#[derive(Debug)]
pub(super) struct LogsFill {
    /// The slot delivered last before the switch.
    from: u64,
    /// The missed signatures, oldest first: (signature, slot).
    sigs: Vec<(String, u64)>,
    waiting: usize,
    /// Fetched: (slot, position, notification result).
    items: Vec<(u64, usize, String)>,
    gaps: Vec<(u64, u64)>,
}

impl<O: Outbox> RouteCore<O> {
    /// `topic` was resubscribed on `slot` after a switch; it had delivered up to `from`.
    pub(super) fn start_injected(&mut self, topic: TopicId, slot: SlotId, from: u64, now: Instant) {
        let Some(t) = self.table.get_mut(topic) else {
            return;
        };
        let Some(kind) = sol::kind(&t.key) else {
            return;
        };
        if let (Kind::Logs { .. }, Some(track)) = (&kind, t.data.track.as_mut()) {
            if from == 0 {
                return; // nothing delivered yet: nothing dates the missed range
            }
            track.logs_fill = Some(LogsFill {
                from,
                sigs: Vec::new(),
                waiting: 1,
                items: Vec::new(),
                gaps: Vec::new(),
            });
        }
        self.send_backfill(slot, topic, Step::SFirst, sol::first_call(&kind), now);
    }

    /// An answer to an injected backfill's request.
    pub(super) fn on_injected_answer(
        &mut self,
        topic: TopicId,
        step: Step,
        result: Result<&str, ()>,
        now: Instant,
    ) {
        let Some(t) = self.table.get(topic) else {
            return;
        };
        let (Some(kind), Some(up), Some(track)) = (
            sol::kind(&t.key),
            t.upstream().map(|u| u.0.to_string()),
            t.data.track.as_ref(),
        ) else {
            return;
        };
        let slot = t.slot;
        let (last, last_ids) = track.last();
        let newer = |s: u64| last.is_none_or(|l| s >= l);
        let method = sol::method(&kind);
        let mut push: Vec<String> = Vec::new();
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        match (&kind, step) {
            (Kind::Account { .. }, Step::SFirst) => {
                if let Some((s, r)) = result.ok().and_then(sol::read_account) {
                    let id = sol::identify(&r).map(|(_, _, id)| id);
                    let same = last == Some(s) || id.is_some_and(|id| last_ids.contains(&id));
                    if newer(s) && !same {
                        push.push(r);
                    }
                }
            }
            (Kind::Program { .. }, Step::SFirst) => {
                if let Some((s, accounts)) = result.ok().and_then(sol::read_program) {
                    let changed: Vec<String> = (accounts.into_iter())
                        .filter(|(_, r)| match sol::identify(r) {
                            Some((_, Some(k), id)) => track.program.get(&k) != Some(&id),
                            _ => false,
                        })
                        .map(|(_, r)| r)
                        .collect();
                    if !newer(s) {
                    } else if changed.len() > PROGRAM_PUSH_MAX {
                        gaps.push((last.map_or(s, |l| l + 1), s));
                    } else {
                        push = changed;
                    }
                }
            }
            (Kind::Signature { commitment, .. }, Step::SFirst) => {
                if let Some(r) = result.ok().and_then(|r| sol::read_status(r, commitment)) {
                    push.push(r);
                }
            }
            (Kind::Logs { commitment, .. }, Step::SFirst) => {
                self.on_signatures(topic, slot, result, commitment, now);
            }
            (Kind::Logs { .. }, Step::STx { i }) => {
                self.on_logs_transaction(topic, i as usize, result);
            }
            _ => {}
        }
        self.announce(topic, &gaps);
        for r in push {
            self.inject(slot, method, &up, &r, now);
        }
        self.finish_logs(topic, slot, now);
    }

    /// The missed signatures: ask for each one's transaction.
    fn on_signatures(
        &mut self,
        topic: TopicId,
        slot: SlotId,
        result: Result<&str, ()>,
        commitment: &str,
        now: Instant,
    ) {
        let max = self.settings.backfill_max_slots;
        let Some(fill) = self.logs_fill(topic) else {
            return;
        };
        fill.waiting = fill.waiting.saturating_sub(1);
        let from = fill.from;
        match result.ok().and_then(sol::read_signatures) {
            Some(mut sigs) => {
                // Newest first, at most a page: older ones beyond it are announced.
                let full = sigs.len() >= 1000;
                sigs.retain(|(_, s)| *s > from);
                // At most `backfill_max_slots` back from the newest: the rest announced.
                if let Some(&(_, newest)) = sigs.first() {
                    if newest - from > max {
                        fill.gaps.push((from + 1, newest - max));
                        sigs.retain(|(_, s)| *s > newest - max);
                    }
                }
                sigs.reverse();
                if let (true, Some((_, oldest))) = (full, sigs.first()) {
                    if *oldest > from + 1 {
                        fill.gaps.push((from + 1, oldest - 1));
                    }
                }
                fill.waiting += sigs.len();
                fill.sigs = sigs.clone();
                for (i, (sig, _)) in sigs.iter().enumerate() {
                    let call = sol::transaction_call(sig, commitment);
                    self.send_backfill(slot, topic, Step::STx { i: i as u32 }, call, now);
                }
            }
            None => fill.gaps.push((from + 1, u64::MAX)),
        }
    }

    fn on_logs_transaction(&mut self, topic: TopicId, i: usize, result: Result<&str, ()>) {
        let Some(fill) = self.logs_fill(topic) else {
            return;
        };
        fill.waiting = fill.waiting.saturating_sub(1);
        let Some((sig, s)) = fill.sigs.get(i).cloned() else {
            return;
        };
        match result.ok().and_then(|r| sol::read_transaction(r, &sig)) {
            Some((slot, r)) => fill.items.push((slot, i, r)),
            None => fill.gaps.push((s, s)),
        }
    }

    fn logs_fill(&mut self, topic: TopicId) -> Option<&mut LogsFill> {
        (self.table.get_mut(topic))
            .and_then(|t| t.data.track.as_mut())
            .and_then(|tr| tr.logs_fill.as_mut())
    }

    /// All of a logs backfill answered: push it in order (what a newer live notification
    /// overtook meanwhile is announced instead).
    fn finish_logs(&mut self, topic: TopicId, slot: SlotId, now: Instant) {
        let Some(t) = self.table.get_mut(topic) else {
            return;
        };
        let up = t.upstream().map(|u| u.0.to_string());
        let Some(track) = t.data.track.as_mut() else {
            return;
        };
        if track.logs_fill.as_ref().is_none_or(|f| f.waiting > 0) {
            return;
        }
        let Some(mut fill) = track.logs_fill.take() else {
            return;
        };
        let (last, last_ids) = track.last();
        fill.items.sort();
        let mut push = Vec::new();
        for (s, _, r) in fill.items {
            let id = sol::identify(&r).map(|(_, _, id)| id);
            if id.is_some_and(|id| last == Some(s) && last_ids.contains(&id)) {
                continue; // delivered live already
            }
            if last.is_some_and(|l| s < l && l > fill.from) {
                fill.gaps.push((s, s)); // overtaken by a newer live one
                continue;
            }
            push.push(r);
        }
        self.announce(topic, &fill.gaps);
        if let Some(up) = up {
            for r in push {
                self.inject(slot, "logsNotification", &up, &r, now);
            }
        }
    }

    /// Push `result` as the node's notification on upstream subscription `up`.
    fn inject(&mut self, slot: SlotId, method: &str, up: &str, result: &str, now: Instant) {
        let frame = sol::notification(method, up, result);
        debug!(%method, "backfill: pushing what the node answered");
        self.metrics.backfilled.fetch_add(1, Relaxed);
        self.on_text(slot, Utf8Bytes::from(frame), now);
    }

    /// The gap notice for `ranges` (slots) on `topic`.
    fn announce(&mut self, topic: TopicId, ranges: &[(u64, u64)]) {
        let Some(t) = self.table.get(topic) else {
            return;
        };
        for &(from, to) in ranges {
            let to = (to != u64::MAX).then_some(to);
            if let Some((frame, id_range)) =
                self.dialect.render_gap(&t.data.public_id, Some(from), to)
            {
                RouteMetrics::inc(&self.metrics.gap_notices);
                let notice = Notice {
                    frame: WireText::from(frame),
                    id_range,
                    gap: true,
                };
                self.out.broadcast(&t.data.fan, notice);
            }
        }
    }
}
