//! Backfill by injection (Solana, issue 14 part 2): after a switch, a resubscribed topic
//! asks the node's HTTP endpoint (`Action::Fetch`) what its subscription missed, and what
//! the node answers is pushed through the core as the node's own notification on the
//! topic's upstream subscription — so routing, one-shot endings (a signature's final
//! notification ends the topic), history and fan-out are the live path's. Only what is
//! newer than what the topic delivered, and different from it, is pushed: an account's or
//! program account's current value if it changed, a pending signature's final status.
//! The logs of signatures after the last delivered slot go through the backfill run of
//! [`super::backfill`] instead (live logs held meanwhile, then the fetched ones in slot
//! order, deduplicated by signature, then the held ones).

use super::backfill::Step;
use super::{Outbox, RouteCore};
use crate::dialect::backfill::solana::{self as sol, Kind};
use crate::dialect::backfill::Item;
use crate::hub::table::{SlotId, TopicId};
use crate::hub::{Notice, Utf8Bytes, WireText};
use crate::telemetry::RouteMetrics;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tracing::debug;

/// Program accounts pushed per switch at most; beyond, the gap notice.
const PROGRAM_PUSH_MAX: usize = 10_000;

/// A `logsSubscribe` backfill in progress: the missed signatures, oldest first
/// (signature, slot); what is fetched goes into the topic's backfill run.
#[derive(Debug, Default)]
pub(super) struct LogsFill {
    sigs: Vec<(String, u64)>,
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
            track.begin(slot, from);
            track.logs_fill = Some(LogsFill::default());
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
        // The lane whose upstream id was taken (lane 0 without hedging).
        let slot = t
            .lanes
            .iter()
            .find(|l| l.live())
            .map_or(t.slot(), |l| l.slot);
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
        self.finish_logs(topic);
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
        let Some(track) = self.track_mut(topic) else {
            return;
        };
        let from = track.last().0.unwrap_or(0);
        let Some(run) = track.run_mut() else {
            return;
        };
        run.waiting = run.waiting.saturating_sub(1);
        let sigs = match result.ok().and_then(sol::read_signatures) {
            Some(mut sigs) => {
                // Newest first, at most a page: older ones beyond it are announced.
                let full = sigs.len() >= 1000;
                sigs.retain(|(_, s)| *s > from);
                // At most `backfill_max_slots` back from the newest: the rest announced.
                if let Some(&(_, newest)) = sigs.first() {
                    if newest - from > max {
                        run.gaps.push((from + 1, newest - max));
                        sigs.retain(|(_, s)| *s > newest - max);
                    }
                }
                sigs.reverse();
                if let (true, Some((_, oldest))) = (full, sigs.first()) {
                    if *oldest > from + 1 {
                        run.gaps.push((from + 1, oldest - 1));
                    }
                }
                run.waiting += sigs.len();
                sigs
            }
            None => {
                run.gaps.push((from + 1, u64::MAX));
                Vec::new()
            }
        };
        for (i, (sig, _)) in sigs.iter().enumerate() {
            let call = sol::transaction_call(sig, commitment);
            self.send_backfill(slot, topic, Step::STx { i: i as u32 }, call, now);
        }
        if let Some(fill) = self.logs_fill(topic) {
            fill.sigs = sigs;
        }
    }

    fn on_logs_transaction(&mut self, topic: TopicId, i: usize, result: Result<&str, ()>) {
        let Some(track) = self.track_mut(topic) else {
            return;
        };
        let Some((sig, s)) = track
            .logs_fill
            .as_ref()
            .and_then(|f| f.sigs.get(i).cloned())
        else {
            return;
        };
        let Some(run) = track.run_mut() else {
            return;
        };
        run.waiting = run.waiting.saturating_sub(1);
        let read = result.ok().and_then(|r| sol::read_transaction(r, &sig));
        match read.and_then(|(slot, r)| Some((slot, sol::identify(&r)?.2, r))) {
            Some((slot, identity, r)) => run.items.push(Item {
                height: slot,
                index: i as u64,
                identity,
                block: 0,
                log: false,
                removed: false,
                key: None,
                result: r.into(),
            }),
            None => run.gaps.push((s, s)),
        }
    }

    fn logs_fill(&mut self, topic: TopicId) -> Option<&mut LogsFill> {
        self.track_mut(topic).and_then(|tr| tr.logs_fill.as_mut())
    }

    /// All of a logs backfill answered: the run delivers it (in slot order, deduplicated
    /// against the held live ones, then those).
    fn finish_logs(&mut self, topic: TopicId) {
        let Some(track) = self.track_mut(topic) else {
            return;
        };
        if track.logs_fill.is_none() || track.run_mut().is_none_or(|r| r.waiting > 0) {
            return;
        }
        track.logs_fill = None;
        self.finish_backfill(topic);
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
