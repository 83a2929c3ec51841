//! Session commands: subscribes (one key or a set, with the one-shot cache), calls (sent,
//! or waiting for a connection), and the answers when topics are confirmed or fail.

use super::slots::SlotState;
use super::{
    KeyEntry, KeyJoined, Outbox, Pending, RouteCore, Subscribing, TopicData, Waiter, ENDED_TTL,
    WAITING_CALLS,
};
use crate::dialect::{splice, Call, ClientSubId, SubscriptionKey};
use crate::hub::table::{Action as TableAction, Join, SlotId, TopicId};
use crate::hub::{HubError, Notice, UpstreamReply, WireText};
use crate::telemetry::RouteMetrics;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

impl<O: Outbox> RouteCore<O> {
    /// Join every key: a live topic at once, a new one created and subscribed upstream
    /// (batched per connection where the dialect allows). The answer goes out when the
    /// last key is confirmed or has failed.
    pub(super) fn on_subscribe(
        &mut self,
        keys: Vec<SubscriptionKey>,
        mailbox: Option<O::Mailbox>,
        reply: O::SubscribeReply,
        since: Option<u64>,
        now: Instant,
    ) {
        let waiter: Waiter = self.next_subscribe;
        self.next_subscribe += 1;
        let mb = mailbox.as_ref().map(|m| self.out.mailbox_id(m));
        let mut sub = Subscribing::<O> {
            remaining: 0,
            keys: Vec::with_capacity(keys.len()),
            mailbox: mb,
            error: None,
            reply,
            since,
            resumed: false,
            resumes: Vec::new(),
        };
        if let (Some(m), Some(n)) = (&mailbox, since) {
            self.since_hold(waiter, m, n); // held from the first key joined
        }
        let mut to_send: HashMap<SlotId, Vec<TopicId>> = HashMap::new();
        for key in keys {
            if let Some(ended) = self.join_ended(&key, now) {
                let (topic, ended) = (TopicId(0), Some(ended));
                sub.keys.push(KeyEntry { key, topic, ended });
                continue;
            }
            let tracked = self.settings.backfill && self.dialect.backfills(&key);
            let (dialect, out) = (&self.dialect, &mut self.out);
            let lanes = self.table.lanes();
            let joined = (self.table).subscribe(key.clone(), waiter, now, || {
                TopicData::new(dialect.as_ref(), out, tracked, lanes, now)
            });
            let topic = match joined {
                Ok(Join::Ready(id, _)) => id,
                Ok(Join::Queued(id, actions)) => {
                    sub.remaining += 1;
                    if actions.is_empty() {
                        let slots: Vec<SlotId> = (self.table.get(id).into_iter())
                            .flat_map(|t| t.lanes.iter().map(|l| l.slot))
                            .collect();
                        for slot in slots {
                            self.ensure_connecting(slot, now);
                        }
                    }
                    for action in actions {
                        match action {
                            TableAction::Subscribe { topic, slot } => {
                                to_send.entry(slot).or_default().push(topic);
                            }
                            TableAction::OpenSlot(slot) => self.ensure_connecting(slot, now),
                        }
                    }
                    id
                }
                Err((e, _)) => {
                    sub.error.get_or_insert(HubError::Full(e.to_string()));
                    continue;
                }
            };
            if let (Some(m), Some(mb), Some(t)) = (&mailbox, mb, self.table.get_mut(topic)) {
                t.data.subscribers.insert(mb, m.clone());
            }
            sub.keys.push(KeyEntry {
                key,
                topic,
                ended: None,
            });
        }
        self.store_topics();
        let done = sub.remaining == 0;
        self.subscribing.insert(waiter, sub);
        let mut to_send: Vec<_> = to_send.into_iter().collect();
        to_send.sort_by_key(|(slot, _)| *slot);
        for (slot, topics) in to_send {
            self.send_subscribes(topics, slot, now);
        }
        if done {
            self.finish_subscribe(waiter);
        }
    }

    /// A subscribe for a one-shot key that just ended: its final notification under a
    /// fresh id (the subscription then ends).
    pub(super) fn join_ended(
        &mut self,
        key: &SubscriptionKey,
        now: Instant,
    ) -> Option<(ClientSubId, Notice)> {
        let (notice, at) = self.ended.get(key)?;
        if now.duration_since(*at) >= ENDED_TTL {
            self.ended.remove(key);
            return None;
        }
        let public_id = self.dialect.mint_sub_id();
        let start = notice.id_range.start;
        let frame = splice(&notice.frame, notice.id_range.clone(), public_id.as_str());
        let notice = Notice {
            frame: WireText::from(frame),
            id_range: start..start + public_id.as_str().len(),
            gap: false,
        };
        Some((public_id, notice))
    }

    /// One key of a waiting subscribe was confirmed (`Ok`) or failed.
    pub(super) fn resolve(&mut self, waiter: Waiter, outcome: Result<(), HubError>) {
        let Some(s) = self.subscribing.get_mut(&waiter) else {
            return;
        };
        s.remaining = s.remaining.saturating_sub(1);
        if let Err(e) = outcome {
            s.error.get_or_insert(e);
        }
        if s.remaining == 0 {
            self.finish_subscribe(waiter);
        }
    }

    /// Answer a subscribe with the keys whose topic still exists, so the client never
    /// believes it holds a key that failed. Done synchronously with the last
    /// confirmation, so a subscriber's ring is taken before its topic's next notification.
    fn finish_subscribe(&mut self, waiter: Waiter) {
        if self.start_resumes(waiter, self.now) {
            return; // answered when what the history lacks is fetched
        }
        let Some(mut s) = self.subscribing.remove(&waiter) else {
            return;
        };
        // `?since=`: each key's resume (what was fetched, the history), taken now, in the
        // same step as the fan-out below.
        let mut resumed = std::collections::HashMap::new();
        if let (Some(since), None) = (s.since, s.mailbox) {
            let mut fetched: std::collections::HashMap<_, _> =
                (s.resumes.drain(..)).map(|r| (r.topic(), r)).collect();
            for e in &s.keys {
                if e.ended.is_none() && !resumed.contains_key(&e.topic) {
                    let (notices, r) = self.resumed(e.topic, since, fetched.remove(&e.topic));
                    resumed.insert(e.topic, (notices, r));
                }
            }
        }
        let topics: Vec<TopicId> = (s.keys.iter())
            .filter(|e| e.ended.is_none())
            .map(|e| e.topic)
            .collect();
        let resume_routed = s.mailbox.filter(|_| s.since.is_some());
        let mut joined = Vec::with_capacity(s.keys.len());
        let mut replayed = 0u64;
        for e in s.keys {
            if let Some((public_id, notice)) = e.ended {
                joined.push(KeyJoined {
                    key: e.key,
                    topic: e.topic,
                    public_id,
                    fan: None,
                    replay: Some(notice),
                    steady: false,
                    history: Vec::new(),
                });
            } else if let Some(t) = self.table.get(e.topic) {
                let flags = t.key.flags();
                // The history and the fan-out are taken in this one step: the resuming
                // client gets neither a gap nor a duplicate at the seam.
                let history = match resumed.remove(&e.topic) {
                    Some((notices, r)) => {
                        replayed += r;
                        notices
                    }
                    None => Vec::new(),
                };
                joined.push(KeyJoined {
                    key: e.key,
                    topic: e.topic,
                    public_id: t.data.public_id.clone(),
                    fan: Some(&t.data.fan),
                    replay: flags.replay_last.then(|| t.data.last.clone()).flatten(),
                    steady: flags.steady,
                    history,
                });
            }
        }
        (self.metrics.history_replayed).fetch_add(replayed, std::sync::atomic::Ordering::Relaxed);
        self.out.subscribed(s.reply, s.mailbox, joined, s.error);
        if let Some(mb) = resume_routed {
            self.since_start(waiter, mb, &topics, self.now);
        }
    }

    pub(super) fn on_call(&mut self, call: Call, reply: Option<O::CallReply>, now: Instant) {
        let Some(reply) = reply else {
            // A client notification: forwarded if connected, otherwise dropped.
            if let Some(slot) = self.call_slot(call.class) {
                let text = self.dialect.render_upstream_call(&call, None);
                self.send(slot, text);
            }
            return;
        };
        RouteMetrics::inc(&self.metrics.requests);
        let Some((call, reply)) = self.answer_cached(call, reply) else {
            return;
        };
        self.dispatch_call(call, reply, now);
    }

    /// Send a call (or share an identical one in flight, or wait for a connection).
    pub(super) fn dispatch_call(&mut self, call: Call, reply: O::CallReply, now: Instant) {
        // An identical call already in flight: share its answer (each caller gets it under
        // its own id) instead of asking the node again.
        let key = self.dialect.coalesce_key(&call);
        if let Some(Pending::Call { replies, .. }) = key
            .as_ref()
            .and_then(|k| self.coalescing.get(k))
            .and_then(|req| self.pending.get_mut(req))
        {
            replies.push(reply);
            RouteMetrics::inc(&self.metrics.coalesced_calls);
            self.count_coalesced(&call);
            return;
        }
        match self.call_slot(call.class) {
            Some(slot) => self.send_call(slot, call, reply, now),
            None if self.waiting_calls.len() < WAITING_CALLS => {
                let deadline = now + self.settings.request_timeout;
                self.waiting_calls.push_back((call, reply, deadline));
            }
            None => {
                RouteMetrics::inc(&self.metrics.request_errors);
                self.out.answered(reply, Err(HubError::Unavailable));
            }
        }
    }

    /// Answer every caller of a finished call (coalesced callers share the answer, each
    /// under its own id) and stop coalescing onto it.
    pub(super) fn answer_call(
        &mut self,
        replies: Vec<O::CallReply>,
        key: Option<Box<str>>,
        answer: Result<UpstreamReply, HubError>,
    ) {
        if let Some(k) = key {
            self.coalescing.remove(&k);
        }
        if answer.is_err() {
            (self.metrics.request_errors)
                .fetch_add(replies.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // The first caller paid for the upstream call; the coalesced ones did not.
        for (i, reply) in replies.into_iter().enumerate() {
            let mut a = answer.clone();
            if let Ok(r) = a.as_mut() {
                r.upstream &= i == 0;
            }
            self.out.answered(reply, a);
        }
    }

    /// Calls go to the lowest connected slot (slot 0 unless it is down); a call of a
    /// connection class only to a connected slot of that class. Hedged routes: to the
    /// connected one furthest ahead (`hedge.rs`).
    pub(super) fn call_slot(&self, class: u8) -> Option<SlotId> {
        if self.hedged() {
            return self.ahead_slot(class);
        }
        (self.slots.iter().enumerate())
            .position(|(i, s)| {
                s.state == SlotState::Connected
                    && (class == 0 || self.table.slot_class(SlotId(i)) == Some(class))
            })
            .map(SlotId)
    }

    pub(super) fn send_call(
        &mut self,
        slot: SlotId,
        call: Call,
        reply: O::CallReply,
        now: Instant,
    ) {
        let Ok((call, reply, cache)) = self.ticket(slot, call, reply, now) else {
            return;
        };
        let req = self.next_id();
        let text = self.dialect.render_upstream_call(&call, Some(req));
        let deadline = now + self.settings.request_timeout;
        let key = self.dialect.coalesce_key(&call);
        if let Some(k) = &key {
            self.coalescing.insert(k.clone(), req.0);
        }
        let p = Pending::Call {
            replies: vec![reply],
            key,
            slot,
            deadline,
            sent: now,
            cache,
        };
        self.pending.insert(req.0, p);
        self.send(slot, text);
    }

    /// Send the calls that waited for a connection, in order; a call whose class has no
    /// connected slot yet keeps waiting.
    pub(super) fn flush_waiting_calls(&mut self, now: Instant) {
        let mut still = VecDeque::new();
        while let Some((call, reply, deadline)) = self.waiting_calls.pop_front() {
            match self.call_slot(call.class) {
                Some(slot) => self.send_call(slot, call, reply, now),
                None => still.push_back((call, reply, deadline)),
            }
        }
        self.waiting_calls = still;
    }
}
