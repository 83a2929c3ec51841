//! `?since=N` older than a topic's history (issue 14 part 3): what the history cannot
//! vouch for is fetched from the node through the backfill's calls, within the same cap
//! (`backfill_max_blocks`), before the subscribe is answered. The resuming subscriber
//! then gets, in one step with the topic's fan-out: the gap notice for what the node
//! could not give (or lay beyond the cap), what was fetched (below the history's first
//! complete height, deduplicated against it), and the history. No gap and no duplicate
//! at either seam: fetch/history by identity and height, history/live as before.

use super::backfill::{merged, Step, IN_FLIGHT};
use super::{Outbox, RouteCore, Subscribing, Waiter};
use crate::dialect::backfill::{self, Item};
use crate::dialect::Call;
use crate::hub::table::{SlotId, TopicId};
use crate::hub::{Notice, WireText};
use crate::telemetry::RouteMetrics;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// A Solana key's first resume call (`None`: not a Solana key `?since=` fetches for).
fn sol_first(key: &crate::dialect::SubscriptionKey) -> Option<Call> {
    let kind = crate::dialect::backfill::solana::kind(key)?;
    super::resume_solana::resumable(key)
        .then(|| crate::dialect::backfill::solana::first_call(&kind))
}

/// One key's fetch for a resuming subscribe.
pub(super) struct Resume {
    pub(super) topic: TopicId,
    pub(super) slot: SlotId,
    /// Requests sent and not answered: (request id, step).
    pub(super) outstanding: Vec<(u64, Step)>,
    pub(super) queue: VecDeque<(Step, Call)>,
    pub(super) items: Vec<Item>,
    /// Ranges the node did not give (unanswered, or beyond the cap).
    pub(super) gaps: Vec<(u64, u64)>,
    /// The newest height asked for (`None`: the node did not tell its height).
    pub(super) end: Option<u64>,
    pub(super) done: bool,
    /// Solana accounts and programs: the items are current values (super::resume_solana).
    pub(super) current: bool,
    /// Solana logs: the signatures after `since`, oldest first (signature, slot).
    pub(super) sigs: Vec<(String, u64)>,
}

impl Resume {
    pub(super) fn topic(&self) -> TopicId {
        self.topic
    }
}

impl<O: Outbox> RouteCore<O> {
    /// Before a subscribe with `?since=` is answered: start fetching, for each of its keys
    /// whose history does not reach back to `since`, what the node still has. Returns
    /// whether the answer waits for that.
    pub(super) fn start_resumes(&mut self, waiter: Waiter, now: Instant) -> bool {
        let Some(s) = self.subscribing.get_mut(&waiter) else {
            return false;
        };
        let since = match s.since {
            Some(n) if !s.resumed && s.mailbox.is_none() => n,
            _ => return false,
        };
        s.resumed = true;
        if !self.settings.backfill || self.settings.history_len == 0 {
            return false;
        }
        let mut starts = Vec::new();
        for e in &s.keys {
            let Some(t) = self.table.get(e.topic) else {
                continue;
            };
            // What the height-ranged calls can fetch (Ethereum heads and logs), and
            // Solana accounts, programs and logs with mentions (super::resume_solana).
            let fetchable = e.ended.is_none()
                && t.data.track.is_some()
                && (backfill::supported(&t.key) || super::resume_solana::resumable(&t.key))
                && t.confirmed()
                && t.data.history.since(since).gap.is_some();
            // Any lane whose connection is up and holds the topic (lane 0 unhedged).
            let slot = t
                .lanes
                .iter()
                .find(|l| l.live() && self.table.slot_up(l.slot))
                .map(|l| l.slot);
            if let (true, Some(slot)) = (fetchable, slot) {
                if !starts.iter().any(|(id, _)| *id == e.topic) {
                    starts.push((e.topic, slot));
                }
            }
        }
        if starts.is_empty() {
            return false;
        }
        let mut resumes = Vec::with_capacity(starts.len());
        for (topic, slot) in starts {
            let (step, call) = match self.table.get(topic).and_then(|t| sol_first(&t.key)) {
                Some(call) => (Step::ResumeSFirst { waiter }, call),
                None => (Step::ResumeHead { waiter }, backfill::head_call()),
            };
            let req = self.send_backfill(slot, topic, step, call, now);
            resumes.push(Resume {
                topic,
                slot,
                outstanding: vec![(req, step)],
                queue: VecDeque::new(),
                items: Vec::new(),
                gaps: Vec::new(),
                end: None,
                done: false,
                current: false,
                sigs: Vec::new(),
            });
        }
        if let Some(s) = self.subscribing.get_mut(&waiter) {
            s.remaining += resumes.len();
            s.resumes = resumes;
        }
        true
    }

    /// An answer to a resume request (`Err`: an error, no answer in time, or the
    /// connection was lost).
    pub(super) fn on_resume_answer(
        &mut self,
        waiter: Waiter,
        topic: TopicId,
        step: Step,
        result: Result<&str, ()>,
        now: Instant,
    ) {
        if matches!(step, Step::ResumeSFirst { .. } | Step::ResumeSTx { .. }) {
            return self.on_resume_solana(waiter, topic, step, result, now);
        }
        let max = self.settings.backfill_max_blocks;
        let Some((r, since)) = resume_answered(&mut self.subscribing, waiter, topic, step) else {
            return;
        };
        let wanted = since.saturating_add(1);
        match step {
            Step::ResumeHead { .. } => match result.ok().and_then(backfill::parse_head) {
                Some(head) => {
                    // Up to below the history's first complete height (or the head).
                    let gap = (self.table.get(topic)).and_then(|t| t.data.history.since(since).gap);
                    let end = match gap {
                        Some((_, Some(e))) => e.min(head),
                        _ => head,
                    };
                    r.end = Some(end);
                    if end >= wanted {
                        let mut start = wanted;
                        if end - wanted + 1 > max {
                            r.gaps.push((wanted, end - max));
                            start = end - max + 1;
                        }
                        let key = self.table.get(topic).map(|t| t.key.clone());
                        let calls = key
                            .and_then(|k| backfill::calls(&k, start, end))
                            .unwrap_or_default();
                        let per = if calls.len() > 1 { 1 } else { end - start + 1 };
                        for (i, call) in calls.into_iter().enumerate() {
                            let lo = start + i as u64 * per;
                            let to = (lo + per - 1).min(end);
                            let step = Step::ResumeFetch {
                                waiter,
                                from: lo,
                                to,
                            };
                            r.queue.push_back((step, call));
                        }
                    }
                }
                None => r.gaps.push((wanted, u64::MAX)),
            },
            Step::ResumeFetch { from, to, .. } => match result.ok().and_then(backfill::items) {
                Some(items) => r.items.extend(items),
                None => r.gaps.push((from, to)),
            },
            _ => {}
        }
        self.pump_resume(waiter, topic, now);
    }

    /// Send a resume's queued requests up to the in-flight bound; answer the subscribe
    /// when everything is answered.
    pub(super) fn pump_resume(&mut self, waiter: Waiter, topic: TopicId, now: Instant) {
        let Some(r) = (self.subscribing.get_mut(&waiter))
            .and_then(|s| s.resumes.iter_mut().find(|r| r.topic == topic))
        else {
            return;
        };
        let slot = r.slot;
        let mut to_send = Vec::new();
        while r.outstanding.len() + to_send.len() < IN_FLIGHT {
            let Some(next) = r.queue.pop_front() else {
                break;
            };
            to_send.push(next);
        }
        let finished = to_send.is_empty() && r.outstanding.is_empty() && !r.done;
        if finished {
            r.done = true;
        }
        for (step, call) in to_send {
            let req = self.send_backfill(slot, topic, step, call, now);
            if let Some(r) = (self.subscribing.get_mut(&waiter))
                .and_then(|s| s.resumes.iter_mut().find(|r| r.topic == topic))
            {
                r.outstanding.push((req, step));
            }
        }
        if finished {
            self.resolve(waiter, Ok(()));
        }
    }

    /// Resume requests whose connection was lost (their pending entry is gone) count as
    /// unanswered: the subscribe is answered with what the others brought.
    pub(super) fn check_resumes(&mut self, now: Instant) {
        let mut lost = Vec::new();
        for (w, s) in &self.subscribing {
            for r in &s.resumes {
                for (req, step) in &r.outstanding {
                    if !self.pending.contains_key(req) {
                        lost.push((*w, r.topic, *step));
                    }
                }
            }
        }
        for (w, topic, step) in lost {
            self.on_resume_answer(w, topic, step, Err(()), now);
        }
    }

    /// What a subscriber resuming after `since` gets before the live stream, given what
    /// was fetched for it: gap notices, the fetched notifications below the history,
    /// the history. Returns them and how many the history replayed.
    pub(super) fn resumed(
        &mut self,
        topic: TopicId,
        since: u64,
        fetched: Option<Resume>,
    ) -> (Vec<Notice>, u64) {
        let Some(t) = self.table.get(topic) else {
            return (Vec::new(), 0);
        };
        let public = &t.data.public_id;
        let r = t.data.history.since(since);
        let replayed = r.notices.len() as u64;
        let Some(fetched) = fetched else {
            let gap = r.gap.and_then(|(from, to)| {
                let rendered = self.dialect.render_gap(public, Some(from), to);
                rendered.map(|(frame, id_range)| Notice {
                    frame: WireText::from(frame),
                    id_range,
                    gap: true,
                })
            });
            return (gap.into_iter().chain(r.notices).collect(), replayed);
        };
        let wanted = since.saturating_add(1);
        // The history vouches for everything from `complete` on.
        let complete = match r.gap {
            None => Some(wanted),
            Some((_, Some(e))) => Some(e.saturating_add(1)),
            Some((_, None)) => None,
        };
        let mut gaps = fetched.gaps;
        if let (Some(c), Some(end)) = (complete, fetched.end) {
            if c > end.saturating_add(1) {
                gaps.push((end + 1, c - 1)); // evicted from the history meanwhile
            }
        }
        let mut out = Vec::new();
        for (from, to) in merged(gaps) {
            let to = match complete {
                Some(c) => to.min(c.saturating_sub(1)),
                None => to,
            };
            if to < from {
                continue;
            }
            let to = (to != u64::MAX).then_some(to);
            if let Some((frame, id_range)) = self.dialect.render_gap(public, Some(from), to) {
                RouteMetrics::inc(&self.metrics.gap_notices);
                out.push(Notice {
                    frame: WireText::from(frame),
                    id_range,
                    gap: true,
                });
            }
        }
        let history: Vec<Item> = (r.notices.iter())
            .filter_map(|n| backfill::notification_item(&n.frame))
            .collect();
        let mut seen: HashSet<u64> = history.iter().map(|i| i.identity).collect();
        // Solana current values: an account's unless the history has any value of it
        // after `since`, a program account's unless the history has that account.
        let keys: HashSet<u64> = history.iter().filter_map(|i| i.key).collect();
        let mut items = fetched.items;
        items.sort_by_key(|i| (i.height, i.index));
        let mut filled = 0;
        for i in items {
            let below = complete.is_none_or(|c| i.height < c);
            let skip = if fetched.current {
                match i.key {
                    Some(k) => keys.contains(&k),
                    None => !history.is_empty(),
                }
            } else {
                i.height < wanted || !below
            };
            if skip || !seen.insert(i.identity) {
                continue;
            }
            if let Some((frame, id_range)) =
                self.dialect.render_notification(public.as_str(), &i.result)
            {
                filled += 1;
                out.push(Notice {
                    frame: WireText::from(frame),
                    id_range,
                    gap: false,
                });
            }
        }
        self.metrics.backfilled.fetch_add(filled, Relaxed);
        out.extend(r.notices);
        (out, replayed)
    }
}

/// The resume of `topic` in subscribe `waiter` that was waiting for `step`'s answer
/// (now no longer outstanding), and its `since`; `None` when nothing
/// waits for it (the subscribe ended, or a late answer after a loss).
pub(super) fn resume_answered<O: Outbox>(
    subscribing: &mut HashMap<u64, Subscribing<O>>,
    waiter: u64,
    topic: TopicId,
    step: Step,
) -> Option<(&mut Resume, u64)> {
    let s = subscribing.get_mut(&waiter)?;
    let since = s.since?;
    let r = s.resumes.iter_mut().find(|r| r.topic == topic)?;
    let at = r.outstanding.iter().position(|(_, st)| *st == step)?;
    r.outstanding.swap_remove(at);
    Some((r, since))
}
