//! Upstream frames in (notifications by id or by content, responses) and the
//! subscribe/unsubscribe requests out, with the resubscribe give-up policy.

use super::hedge::Admit;
use super::{Outbox, Pending, RouteCore, RESUBSCRIBE_GIVE_UP};
use crate::dialect::backfill::Item;
use crate::dialect::Dialect;
use crate::dialect::{backfill, splice, Group, SubscriptionKey, UpstreamFrame, UpstreamSubId};
use crate::hub::table::{Confirmed, Failed, SlotId, TopicId};
use crate::hub::{HubError, Notice, UpstreamReply, Utf8Bytes, WireText};
use crate::telemetry::RouteMetrics;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tracing::{debug, warn};

impl<O: Outbox> RouteCore<O> {
    pub(super) fn on_text(&mut self, slot: SlotId, text: Utf8Bytes, now: Instant) {
        match self.dialect.parse_upstream(&text) {
            UpstreamFrame::Notification {
                targets,
                id_range: Some(id_range),
                is_final,
                ..
            } => {
                for (sub, _) in &targets {
                    self.on_push_by_id(slot, &text, sub, id_range.clone(), is_final, now);
                }
            }
            UpstreamFrame::Notification {
                targets,
                id_range: None,
                identity,
                ..
            } => self.on_push_by_content(slot, text, targets, identity, now),
            UpstreamFrame::Response {
                id,
                id_range,
                outcome,
            } => {
                let Some(p) = self.pending.remove(&id.0) else {
                    debug!(
                        id = id.0,
                        "response to no pending request (late or duplicate)"
                    );
                    return;
                };
                match p {
                    Pending::Call {
                        replies,
                        key,
                        sent,
                        cache,
                        ..
                    } => {
                        if let Some(t) = cache {
                            self.cache_answer(t, slot, &text, &id_range, &outcome, now);
                        }
                        let us = now.duration_since(sent).as_micros() as u64;
                        self.metrics.request_micros.fetch_add(us, Relaxed);
                        let reply_text = UpstreamReply {
                            text: text.clone(),
                            id_range,
                            upstream: true,
                        };
                        self.answer_call(replies, key, Ok(reply_text));
                    }
                    Pending::Subscribe { topics, .. } => {
                        for (topic, key) in topics {
                            let result = outcome
                                .clone()
                                .map(|r| self.dialect.parse_subscribe_result(&key, &text[r]));
                            self.on_subscribe_outcome(slot, topic, key, result, now);
                        }
                    }
                    Pending::Unsubscribe { .. } => {
                        if let Err(e) = outcome {
                            debug!(error = %e, "upstream unsubscribe failed");
                        }
                    }
                    Pending::Backfill { topic, step, .. } => {
                        let result = outcome.map(|r| &text[r]).map_err(|_| ());
                        self.on_backfill_answer(topic, step, result, now);
                    }
                }
            }
            UpstreamFrame::Other => {}
            UpstreamFrame::Malformed(why) => {
                RouteMetrics::inc(&self.metrics.malformed_upstream);
                warn!(%why, "malformed upstream frame");
            }
        }
    }

    /// An id-routed push: every topic the upstream id names gets it, its public id
    /// spliced in and encoded once, on the topic's ring.
    fn on_push_by_id(
        &mut self,
        slot: SlotId,
        text: &Utf8Bytes,
        sub: &UpstreamSubId,
        id_range: std::ops::Range<usize>,
        is_final: bool,
        now: Instant,
    ) {
        let topics = self.table.route(slot, sub).to_vec();
        self.on_head_push(slot, &topics, text, now);
        if self.gaps_wanted() {
            let steady =
                (topics.iter()).any(|id| self.table.get(*id).is_some_and(|t| t.key.flags().steady));
            if steady {
                if let Some(h) = self.dialect.height(text) {
                    self.on_height(slot, h);
                }
            }
        } else {
            self.forget_height(slot);
        }
        if topics.is_empty() {
            RouteMetrics::inc(&self.metrics.unknown_notifications);
            debug!(sub = %sub.0, "notification for no known topic");
            return;
        }
        // Read once per frame: the item backfill dedupes by (tracked topics only), and the
        // height every topic's history (`?since=`) keeps it under.
        let tracked =
            (topics.iter()).any(|id| (self.table.get(*id)).is_some_and(|t| t.data.track.is_some()));
        let item = tracked.then(|| backfill::notification_item(text)).flatten();
        let cap = self.settings.history_len;
        let kept_at = match &item {
            _ if cap == 0 => None,
            Some(i) => Some(i.height),
            None => self.dialect.history_height(text),
        };
        // Hedged: the first copy of each event goes to clients, the others are dropped.
        let ident = self.hedged().then(|| self.dialect.identity(text)).flatten();
        for id in topics {
            RouteMetrics::inc(&self.metrics.notifications_in);
            let admit = match self.hedged() {
                true => self.hedge_admit(id, slot, ident, is_final, now),
                false => Admit::Deliver,
            };
            if admit == Admit::Drop {
                continue;
            }
            let Some(t) = self.table.get_mut(id) else {
                continue;
            };
            let public = t.data.public_id.as_str();
            let start = id_range.start;
            let notice = Notice {
                frame: WireText::from(splice(text, id_range.clone(), public)),
                id_range: start..start + public.len(),
                gap: false,
            };
            t.data.last_notice = now;
            if let Some(since) = t.data.resubscribing_since.take() {
                let us = now.duration_since(since).as_micros() as u64;
                self.metrics.resubscribe_micros.fetch_add(us, Relaxed);
                RouteMetrics::inc(&self.metrics.resubscribes);
            }
            match (admit, ident) {
                (Admit::Hold, Some(ident)) => {
                    self.hedge_hold(id, slot, ident, notice, item.clone(), kept_at, now);
                }
                _ => self.deliver_by_id(id, notice, item.clone(), kept_at, is_final, now),
            }
        }
        if is_final {
            self.store_topics();
        }
    }

    /// Deliver one id-routed notification of `id` to its clients (and its history, its
    /// backfill queue, its replay and one-shot caches).
    pub(super) fn deliver_by_id(
        &mut self,
        id: TopicId,
        notice: Notice,
        item: Option<Item>,
        kept_at: Option<u64>,
        is_final: bool,
        now: Instant,
    ) {
        let cap = self.settings.history_len;
        let Some(t) = self.table.get_mut(id) else {
            return;
        };
        if t.key.flags().replay_last || is_final {
            t.data.last = Some(notice.clone());
        }
        if is_final {
            self.ended.insert(t.key.clone(), (notice.clone(), now));
        }
        if t.data.track.is_some() {
            self.deliver_tracked(id, notice, item, kept_at);
        } else {
            if let Some(h) = kept_at {
                t.data.history.record(h, notice.clone(), cap);
            }
            // No receivers is fine (all clients gone, topic lingering).
            self.out.broadcast(&t.data.fan, notice);
        }
        if is_final {
            drop(self.table.end(id));
        }
    }

    /// A content-routed push: dropped if it is the node's own repeat on this connection,
    /// else delivered to the mailboxes of the sessions holding a matching key.
    fn on_push_by_content(
        &mut self,
        slot: SlotId,
        text: Utf8Bytes,
        targets: Vec<(UpstreamSubId, Group)>,
        identity: Option<Box<str>>,
        now: Instant,
    ) {
        let kept = if self.settings.backfill {
            identity.clone()
        } else {
            None
        };
        // A resuming session's seam (super::since_routed) needs the validated ledger.
        let ledger = self
            .since_active()
            .then(|| validated_ledger(&*self.dialect, &text, identity.as_deref()))
            .flatten();
        let repeat = identity
            .is_some_and(|id| (self.slots.get_mut(slot.0)).is_some_and(|s| !s.recent.insert(id)));
        if repeat {
            return; // the node's own per-group copy: clients get theirs from us
        }
        // Only steady streams (ledger closes) carry a height, and only their
        // silence matters for stall detection: read it only when needed.
        let gaps = self.gaps_wanted();
        if gaps || self.settings.stall_timeout.is_some() {
            if let Some(h) = self.dialect.height(&text) {
                if gaps {
                    self.on_height(slot, h);
                }
                for (up, _) in &targets {
                    for i in self.table.route(slot, up).to_vec() {
                        if let Some(t) = self.table.get_mut(i) {
                            t.data.last_notice = now;
                        }
                        self.hedge_lane_seen(i, slot, now);
                    }
                }
            }
        }
        if !gaps {
            self.forget_height(slot);
        }
        self.on_head_push_by_content(slot, &targets, &text, now);
        if self.hedged() && !self.hedge_admit_content(slot, &text, now) {
            return; // a copy another lane delivered first
        }
        if self.observe_routed(slot, &text, &targets, kept.as_deref()) {
            return; // held while the slot's backfill runs (super::routed)
        }
        self.deliver_routed(slot, text, &targets, ledger)
    }

    fn on_subscribe_outcome(
        &mut self,
        slot: SlotId,
        topic: TopicId,
        key: SubscriptionKey,
        result: Result<Option<UpstreamSubId>, String>,
        now: Instant,
    ) {
        match result {
            Ok(Some(up)) => match self.table.on_subscribed_on(topic, slot, up.clone()) {
                Confirmed::Waiters(waiters) => {
                    if let Some(t) = self.table.get_mut(topic) {
                        t.data.refused_since = None;
                    }
                    self.reset_backoff(slot);
                    for w in waiters {
                        self.resolve(w, Ok(()));
                    }
                    self.hedge_rejoined(topic, slot, now);
                    self.start_backfill(topic, slot, now);
                }
                Confirmed::Stale => self.send_unsubscribes(vec![(slot, key, up)], now),
            },
            Ok(None) => {
                let e =
                    r#"{"code":-32603,"message":"upstream returned an invalid subscription id"}"#;
                self.fail_topic(topic, slot, HubError::Upstream(e.into()), now);
            }
            Err(raw) => self.fail_topic(topic, slot, HubError::Upstream(raw), now),
        }
    }

    /// A content-routed push: every session holding a matching key gets the frame once
    /// per matched group, in arrival order (one mailbox per session keeps it ordered).
    fn deliver_routed(
        &mut self,
        slot: SlotId,
        text: Utf8Bytes,
        targets: &[(UpstreamSubId, Group)],
        ledger: Option<u64>,
    ) {
        RouteMetrics::inc(&self.metrics.notifications_in);
        // Encoded once; every holder's session writes the same frame.
        let text = WireText::from(text);
        if self.since_active() {
            return self.deliver_routed_seam(slot, text, targets, ledger);
        }
        if let [(up, _)] = targets {
            // One target: each holder once, no bookkeeping.
            for &id in self.table.route(slot, up) {
                if let Some(t) = self.table.get(id) {
                    for mb in t.data.subscribers.values() {
                        self.out.push(mb, text.clone());
                    }
                }
            }
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        for (up, group) in targets {
            let bit = 1u8 << (group.0 & 7);
            for &id in self.table.route(slot, up) {
                if let Some(t) = self.table.get(id) {
                    for &mb in t.data.subscribers.keys() {
                        scratch.entry(mb).or_insert((id, 0)).1 |= bit;
                    }
                }
            }
        }
        for (mb, (topic, groups)) in scratch.drain() {
            let Some(mailbox) = (self.table.get(topic)).and_then(|t| t.data.subscribers.get(&mb))
            else {
                continue;
            };
            for _ in 0..groups.count_ones() {
                self.out.push(mailbox, text.clone());
            }
        }
        self.scratch = scratch;
    }

    /// As [`RouteCore::deliver_routed`] while some session resumes (`?since=`): per
    /// session, each copy with the topics it came through, for its seam filter.
    fn deliver_routed_seam(
        &mut self,
        slot: SlotId,
        text: WireText,
        targets: &[(UpstreamSubId, Group)],
        ledger: Option<u64>,
    ) {
        let mut per: HashMap<u64, (TopicId, HashMap<u8, Vec<TopicId>>)> = HashMap::new();
        for (up, group) in targets {
            for &id in self.table.route(slot, up) {
                if let Some(t) = self.table.get(id) {
                    for &mb in t.data.subscribers.keys() {
                        let e = per.entry(mb).or_insert((id, HashMap::new()));
                        e.1.entry(group.0).or_default().push(id);
                    }
                }
            }
        }
        let mut per: Vec<_> = per.into_iter().collect();
        per.sort_by_key(|(mb, _)| *mb);
        for (mb, (topic, groups)) in per {
            let Some(mailbox) = (self.table.get(topic))
                .and_then(|t| t.data.subscribers.get(&mb))
                .cloned()
            else {
                continue;
            };
            let mut copies: Vec<(u8, Vec<TopicId>)> = groups.into_iter().collect();
            copies.sort_by_key(|(g, _)| *g);
            let copies = copies.into_iter().map(|(_, t)| t).collect();
            self.since_deliver(mb, &mailbox, &text, ledger, copies);
        }
    }

    /// A subscribe was refused. A live topic's resubscribe is not given up at once: the
    /// answer may be a rate limit or a broken node. Replace the connection (failing over)
    /// and resubscribe there; only after RESUBSCRIBE_GIVE_UP of refusals does it end.
    pub(super) fn fail_topic(&mut self, topic: TopicId, slot: SlotId, err: HubError, now: Instant) {
        // Hedged, and another lane holds the topic: that lane keeps serving it; this lane
        // tries again on its connection's next (re)connect, and the topic never ends.
        if self.covered(topic, slot) && self.table.keep_for_retry(topic, slot).is_some() {
            warn!(topic = topic.0, slot = slot.0, error = %err, "subscribe refused on one hedge lane; the other lanes serve it");
            return;
        }
        let retry = self.table.get_mut(topic).and_then(|t| {
            let since = *t.data.refused_since.get_or_insert(now);
            (t.confirmed() && now.duration_since(since) < RESUBSCRIBE_GIVE_UP)
                .then(|| now.duration_since(since))
        });
        if let Some(refused_for) = retry {
            if let Some(slot) = self.table.keep_for_retry(topic, slot) {
                warn!(topic = topic.0, error = %err, ?refused_for, "resubscribe refused; replacing the upstream connection");
                if !self.dead.iter().any(|(s, _)| *s == slot) {
                    self.dead
                        .push((slot, format!("resubscribe refused: {err}")));
                }
                return;
            }
        }
        match self.table.on_subscribe_failed(topic) {
            Failed::Rejected(waiters, data) => {
                drop(data);
                for w in waiters {
                    self.resolve(w, Err(err.clone()));
                }
            }
            Failed::Ended(data) => {
                warn!(topic = topic.0, error = %err, "resubscribe failed; subscription ended for its clients");
                drop(data);
            }
            Failed::Unknown => {}
        }
        self.store_topics();
    }

    /// Subscribe `topics` on `slot`: one request each, or batches of up to the dialect's
    /// maximum (keys flagged `solo` always alone).
    pub(super) fn send_subscribes(&mut self, topics: Vec<TopicId>, slot: SlotId, now: Instant) {
        let max = self.dialect.subscribe_batch_max().max(1);
        let mut batch: Vec<(TopicId, SubscriptionKey)> = Vec::new();
        for id in topics {
            let Some(t) = self.table.get(id) else {
                continue;
            };
            let item = (id, t.key.clone());
            if item.1.flags().solo {
                self.send_subscribe(vec![item], slot, now);
                continue;
            }
            batch.push(item);
            if batch.len() == max {
                self.send_subscribe(std::mem::take(&mut batch), slot, now);
            }
        }
        if !batch.is_empty() {
            self.send_subscribe(batch, slot, now);
        }
    }

    fn send_subscribe(
        &mut self,
        topics: Vec<(TopicId, SubscriptionKey)>,
        slot: SlotId,
        now: Instant,
    ) {
        let req = self.next_id();
        let keys: Vec<&SubscriptionKey> = topics.iter().map(|(_, k)| k).collect();
        let text = self.dialect.render_upstream_subscribe(&keys, req);
        let deadline = now + self.settings.subscribe_timeout;
        let p = Pending::Subscribe {
            topics,
            slot,
            deadline,
        };
        self.pending.insert(req.0, p);
        RouteMetrics::inc(&self.metrics.upstream_subscribes);
        self.send(slot, text);
    }

    /// Unsubscribe upstream ids nobody needs any more, batched per slot where the dialect
    /// allows it.
    pub(super) fn send_unsubscribes(
        &mut self,
        mut items: Vec<(SlotId, SubscriptionKey, UpstreamSubId)>,
        now: Instant,
    ) {
        items.sort_by_key(|(slot, _, _)| *slot);
        let max = self.dialect.subscribe_batch_max().max(1);
        let mut start = 0;
        while start < items.len() {
            let slot = items[start].0;
            let mut end = start + 1;
            while end < items.len() && items[end].0 == slot && end - start < max {
                end += 1;
            }
            if self.table.slot_up(slot) {
                let req = self.next_id();
                let refs: Vec<(&SubscriptionKey, &UpstreamSubId)> =
                    items[start..end].iter().map(|(_, k, u)| (k, u)).collect();
                if let Some(text) = self.dialect.render_upstream_unsubscribe(&refs, req) {
                    let deadline = now + self.settings.request_timeout;
                    self.pending
                        .insert(req.0, Pending::Unsubscribe { slot, deadline });
                    RouteMetrics::inc(&self.metrics.upstream_unsubscribes);
                    self.send(slot, text);
                }
            } // else the connection is gone, and with it the subscriptions
            start = end;
        }
    }
}

/// The validated ledger of a content-routed message: a `ledgerClosed`'s index, or the
/// ledger of a validated transaction (its identity is "hash/true/ledger").
fn validated_ledger(dialect: &dyn Dialect, text: &str, identity: Option<&str>) -> Option<u64> {
    if let Some(n) = dialect.height(text) {
        return Some(n);
    }
    let mut parts = identity?.rsplitn(3, '/');
    let ledger = parts.next()?.parse::<u64>().ok()?;
    (parts.next() == Some("true")).then_some(ledger)
}
