//! Session commands: subscribe (with the one-shot cache), set joins, calls (sent, or
//! waiting for a connection), and the answers when topics are confirmed or fail.

use super::slots::SlotState;
use super::{
    Outbox, Pending, RouteCore, SetJoin, Subscribed, TopicData, Waiter, ENDED_TTL, WAITING_CALLS,
};
use crate::dialect::{splice, Call, ClientSubId, SubscriptionKey};
use crate::hub::table::{Action as TableAction, Join, SlotId, TopicId};
use crate::hub::{HubError, Notice, WireText};
use crate::telemetry::RouteMetrics;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

impl<O: Outbox> RouteCore<O> {
    pub(super) fn on_subscribe(
        &mut self,
        key: SubscriptionKey,
        reply: O::SubscribeReply,
        now: Instant,
    ) {
        if let Some((public_id, notice)) = self.join_ended(&key, now) {
            let ended = Subscribed {
                topic: TopicId(0),
                public_id,
                fan: None,
                replay: Some(notice),
                steady: false,
            };
            return self.out.subscribed(reply, Ok(ended));
        }
        let (dialect, out) = (&self.dialect, &mut self.out);
        let joined = (self.table).subscribe(key, Waiter::One(reply), now, || {
            TopicData::new(dialect.as_ref(), out, now)
        });
        self.store_topics();
        match joined {
            Ok(Join::Ready(id, w)) => self.resolve(w, id, Ok(())),
            Ok(Join::Queued(_, Some(TableAction::Subscribe { topic, slot }))) => {
                self.send_subscribes(vec![topic], slot, now);
            }
            Ok(Join::Queued(_, Some(TableAction::OpenSlot(slot)))) => {
                self.ensure_connecting(slot, now);
            }
            Ok(Join::Queued(id, None)) => {
                if let Some(slot) = self.table.get(id).map(|t| t.slot) {
                    self.ensure_connecting(slot, now);
                }
            }
            Err((e, w)) => {
                if let Waiter::One(w) = w {
                    self.out.subscribed(w, Err(HubError::Full(e.to_string())));
                }
            }
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

    pub(super) fn on_join(
        &mut self,
        keys: Vec<SubscriptionKey>,
        mailbox: O::Mailbox,
        reply: O::JoinReply,
        now: Instant,
    ) {
        let set = self.next_set;
        self.next_set += 1;
        let mb = self.out.mailbox_id(&mailbox);
        let mut join = SetJoin::<O> {
            remaining: 0,
            keys: Vec::with_capacity(keys.len()),
            mailbox: mb,
            error: None,
            reply,
        };
        let mut to_send: HashMap<SlotId, Vec<TopicId>> = HashMap::new();
        for key in keys {
            let (dialect, out) = (&self.dialect, &mut self.out);
            let joined = (self.table).subscribe(key.clone(), Waiter::Set(set), now, || {
                TopicData::new(dialect.as_ref(), out, now)
            });
            let topic = match joined {
                Ok(Join::Ready(id, _)) => id,
                Ok(Join::Queued(id, action)) => {
                    join.remaining += 1;
                    match action {
                        Some(TableAction::Subscribe { topic, slot }) => {
                            to_send.entry(slot).or_default().push(topic);
                        }
                        Some(TableAction::OpenSlot(slot)) => self.ensure_connecting(slot, now),
                        None => {
                            if let Some(slot) = self.table.get(id).map(|t| t.slot) {
                                self.ensure_connecting(slot, now);
                            }
                        }
                    }
                    id
                }
                Err((e, _)) => {
                    join.error.get_or_insert(HubError::Full(e.to_string()));
                    continue;
                }
            };
            if let Some(t) = self.table.get_mut(topic) {
                t.data.subscribers.insert(mb, mailbox.clone());
            }
            join.keys.push((key, topic));
        }
        self.store_topics();
        let done = join.remaining == 0;
        self.set_joins.insert(set, join);
        let mut to_send: Vec<_> = to_send.into_iter().collect();
        to_send.sort_by_key(|(slot, _)| *slot);
        for (slot, topics) in to_send {
            self.send_subscribes(topics, slot, now);
        }
        if done {
            self.finish_set(set);
        }
    }

    /// A waiter's topic was confirmed (`Ok`) or failed.
    pub(super) fn resolve(
        &mut self,
        waiter: Waiter<O>,
        topic: TopicId,
        outcome: Result<(), HubError>,
    ) {
        match waiter {
            Waiter::One(reply) => {
                let t = outcome.and_then(|()| self.table.get(topic).ok_or(HubError::Unavailable));
                let result = t.map(|t| Subscribed {
                    topic,
                    public_id: t.data.public_id.clone(),
                    fan: Some(&t.data.fan),
                    replay: if t.key.flags().replay_last {
                        t.data.last.clone()
                    } else {
                        None
                    },
                    steady: t.key.flags().steady,
                });
                self.out.subscribed(reply, result);
            }
            Waiter::Set(set) => {
                let Some(j) = self.set_joins.get_mut(&set) else {
                    return;
                };
                j.remaining = j.remaining.saturating_sub(1);
                if let Err(e) = outcome {
                    j.error.get_or_insert(e);
                }
                if j.remaining == 0 {
                    self.finish_set(set);
                }
            }
        }
    }

    /// Answer a set join with the keys whose topic still exists, so the client never
    /// believes it holds a key that failed.
    pub(super) fn finish_set(&mut self, set: u64) {
        let Some(j) = self.set_joins.remove(&set) else {
            return;
        };
        let keys = (j.keys.into_iter())
            .filter(|(_, topic)| self.table.get(*topic).is_some())
            .collect();
        self.out.joined(j.reply, j.mailbox, keys, j.error);
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

    /// Calls go to the lowest connected slot (slot 0 unless it is down); a call of a
    /// connection class only to a connected slot of that class.
    pub(super) fn call_slot(&self, class: u8) -> Option<SlotId> {
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
        let req = self.next_id();
        let text = self.dialect.render_upstream_call(&call, Some(req));
        let deadline = now + self.settings.request_timeout;
        let p = Pending::Call {
            reply,
            slot,
            deadline,
            sent: now,
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
