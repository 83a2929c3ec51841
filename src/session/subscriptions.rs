//! The subscriptions a session holds: id-routed ones (a client id per topic, spliced when
//! it differs from the topic's public id) and content-routed keys (XRPL sets, delivered
//! through the session's mailbox); registering what a finished request confirmed, and
//! unsubscribing.

use super::*;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) fn unsubscribe(&mut self, id: &RequestId, sub: &ClientSubId) -> String {
        match self.by_client_id.remove(sub) {
            Some(local) => {
                self.streams.remove(&local);
                self.subs.remove(&local); // drops the guard: releases the topic
                self.sub_count(-1);
                self.dialect.render_unsubscribed(id)
            }
            None => {
                let e = self.dialect.error_for(Condition::SubscriptionNotFound);
                self.dialect.render_error(id, &e)
            }
        }
    }

    /// This session's mailbox for content-routed pushes, made on first use.
    pub(super) fn mailbox(&mut self) -> Mailbox {
        if let Some(m) = &self.mailbox {
            return m.clone();
        }
        let (tx, rx) = Mailbox::channel(self.settings.client_queue_len, self.options.gap_notices);
        self.mailbox = Some(tx.clone());
        self.mailbox_rx = Some(rx);
        tx
    }

    /// and queued in `activate` (they deliver only after the reply is written).
    pub(super) fn settle(
        &mut self,
        item: Item,
        parts: &mut Vec<String>,
        activate: &mut Vec<(
            u64,
            tokio::sync::broadcast::Receiver<Notice>,
            Option<Notice>,
        )>,
    ) {
        match item {
            Item::Held(guards, reserved, inner) => {
                let mut added = 0;
                for (k, g) in guards {
                    if self.held.insert(k, g).is_none() {
                        added += 1;
                    }
                }
                self.sub_count(added as i64);
                self.unreserve(reserved.saturating_sub(added));
                self.settle(*inner, parts, activate);
            }
            Item::Rendered(r) => parts.push(r),
            Item::Nothing => {}
            Item::Reply(id, res) => parts.push(render_reply(&*self.dialect, &id, res)),
            Item::Joined(id, Err(e)) => {
                self.unreserve(1);
                parts.push(self.dialect.render_error(&id, &e.to_rpc(&*self.dialect)));
            }
            Item::Joined(id, Ok(j)) => {
                let coalesce = j.steady && self.options.coalesce;
                let (local, client_id) = self.register(j.public_id.clone(), j.guard, coalesce);
                parts.push(self.dialect.render_subscribed(&id, &client_id));
                activate.push((local, j.rx, j.replay));
            }
        }
    }

    /// Record a new subscription; its client id is the topic's public id unless this
    /// client already holds that topic (then a fresh id, spliced into every frame).
    pub(super) fn register(
        &mut self,
        public_id: ClientSubId,
        guard: ReleaseGuard,
        coalesce: bool,
    ) -> (u64, ClientSubId) {
        let local = self.next_local;
        self.next_local += 1;
        let (client_id, splice) = if self.by_client_id.contains_key(&public_id) {
            let mut id = self.dialect.mint_sub_id();
            while self.by_client_id.contains_key(&id) {
                id = self.dialect.mint_sub_id();
            }
            (id, true)
        } else {
            (public_id, false)
        };
        self.by_client_id.insert(client_id.clone(), local);
        self.subs.insert(
            local,
            Local {
                client_id: client_id.clone(),
                splice,
                coalesce,
                _guard: guard,
            },
        );
        self.sub_count(1);
        (local, client_id)
    }

    pub(super) fn frame_for(&self, local: u64, n: &Notice) -> WireText {
        match self.subs.get(&local) {
            Some(l) if l.splice => {
                WireText::from(splice(&n.frame, n.id_range.clone(), l.client_id.as_str()))
            }
            _ => n.frame.clone(),
        }
    }
}

/// Join a set of content-routed keys, then produce the answer: the first join error, or
/// the dialect's rendered reply, or the upstream's answer to the follow-up call.
pub(super) async fn join_set(
    route: RouteHandle,
    mailbox: Mailbox,
    id: RequestId,
    keys: Vec<SubscriptionKey>,
    then: Answer,
    context: Option<Arc<str>>,
) -> Item {
    let reserved = keys.len();
    let (guards, error) = if keys.is_empty() {
        (Vec::new(), None)
    } else {
        match route.join(keys, mailbox).await {
            Ok(j) => (j.guards, j.error),
            Err(e) => (Vec::new(), Some(e)),
        }
    };
    let answer = match (error, then) {
        (Some(e), _) => {
            let d = &*route.dialect;
            Item::Rendered(d.render_join_error(&id, context.as_deref(), &e.to_rpc(d)))
        }
        (None, Answer::Rendered(r)) => Item::Rendered(r),
        (None, Answer::Call(call)) => {
            let res = route.call(call).await;
            Item::Reply(id, res)
        }
    };
    Item::Held(guards, reserved, Box::new(answer))
}
