//! The subscriptions a session holds, one set whichever the routing: each named by the
//! client id it was given (id-routed; spliced into frames when it differs from the topic's
//! public id) or by its key (content-routed sets, delivered through the session's
//! mailbox); registering what a finished subscribe joined, and unsubscribing.

use super::*;

/// The local number of the session's mailbox in its deliveries.
pub(super) const MAILBOX: u64 = u64::MAX;

/// What a client calls a subscription it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum SubName {
    /// The subscription id it was given (id-routed).
    Id(ClientSubId),
    /// The key itself (content-routed: a set of keys, no ids).
    Key(SubscriptionKey),
}

/// A joined subscription's delivery, queued until its reply is written.
pub(super) type Activation = (u64, Delivery, Option<Notice>, Vec<Notice>);

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Admit a subscribe (per-connection cap, requests in flight, the API key's cap) and
    /// start it: the number of keys reserved and the future, or the error reply.
    /// `batched`: subscribes this frame started already.
    pub(super) fn start_subscribe(
        &mut self,
        id: RequestId,
        keys: Vec<SubscriptionKey>,
        then: Answer,
        context: Option<Arc<str>>,
        batched: usize,
    ) -> Result<(usize, BoxFuture<'static, Item>), String> {
        // A content-routed key already held is a no-op; an id-routed key held already is
        // a second subscription under a fresh id.
        let by_content = self.dialect.routing() == Routing::ByContent;
        let mut new: Vec<SubscriptionKey> = Vec::with_capacity(keys.len());
        for k in keys {
            let held = by_content
                && (new.contains(&k) || self.by_name.contains_key(&SubName::Key(k.clone())));
            if !held {
                new.push(k);
            }
        }
        let max = self.settings.max_subscriptions_per_connection;
        if self.subs.len() + self.pending_subscribes + batched + new.len() > max {
            let e = self.dialect.error_for(Condition::LimitExceeded(format!(
                "max {max} subscriptions per connection"
            )));
            return Err(self.dialect.render_error(&id, &e));
        }
        if let Some(r) = self.over_inflight(&id) {
            return Err(r);
        }
        if let Some(r) = self.over_key(&id, new.len()) {
            return Err(r);
        }
        let n = new.len();
        let mailbox = by_content.then(|| self.mailbox());
        let route = self.route.clone();
        let since = self.options.since;
        let fut = async move { subscribe(route, mailbox, since, id, new, then, context).await };
        Ok((n, fut.boxed()))
    }

    pub(super) fn unsubscribe(&mut self, id: &RequestId, sub: &ClientSubId) -> String {
        if self.drop_sub(&SubName::Id(sub.clone())) {
            self.dialect.render_unsubscribed(id)
        } else {
            let e = self.dialect.error_for(Condition::SubscriptionNotFound);
            self.dialect.render_error(id, &e)
        }
    }

    /// Stop holding `name` (dropping its guard releases the topic); whether it was held.
    pub(super) fn drop_sub(&mut self, name: &SubName) -> bool {
        let Some(local) = self.by_name.remove(name) else {
            return false;
        };
        self.streams.remove(&local);
        self.subs.remove(&local);
        self.sub_count(-1);
        true
    }

    /// This session's mailbox for content-routed pushes, made on first use and read from
    /// then on.
    pub(super) fn mailbox(&mut self) -> Mailbox {
        if let Some(m) = &self.mailbox {
            return m.clone();
        }
        let (tx, delivery) =
            Mailbox::channel(self.settings.client_queue_len, self.options.gap_notices);
        self.mailbox = Some(tx.clone());
        self.streams.insert(MAILBOX, delivery);
        tx
    }

    /// Turn one finished item into its reply part; joined subscriptions are registered
    /// and their deliveries queued in `activate` (read only after the reply is written).
    pub(super) fn settle(
        &mut self,
        item: Item,
        parts: &mut Vec<String>,
        activate: &mut Vec<Activation>,
    ) {
        match item {
            Item::Held(joined, reserved, inner) => {
                let mut added = 0;
                let mut named = None;
                for j in joined {
                    added += 1;
                    match j.delivery {
                        // The node's own answer to an identical subscribe on one
                        // connection: the id it gave already (the extra guard is dropped).
                        Some(_)
                            if self.dialect.same_params_same_id()
                                && self.holds_topic_under(&j.public_id) =>
                        {
                            added -= 1;
                            named = Some(j.public_id);
                        }
                        Some(delivery) => {
                            let coalesce = j.steady && self.options.coalesce;
                            let (local, client_id) = self.register(j.public_id, j.guard, coalesce);
                            activate.push((local, delivery, j.replay, j.history));
                            named = Some(client_id);
                        }
                        None => {
                            let name = SubName::Key(j.key);
                            if self.by_name.contains_key(&name) {
                                added -= 1; // joined twice concurrently: held already
                                continue;
                            }
                            self.hold(name, false, false, j.guard);
                        }
                    }
                }
                self.sub_count(added as i64);
                self.unreserve(reserved.saturating_sub(added));
                match (*inner, named) {
                    (Item::Subscribed(id), Some(client_id)) => {
                        parts.push(self.dialect.render_subscribed(&id, &client_id));
                    }
                    (inner, _) => self.settle(inner, parts, activate),
                }
            }
            Item::Rendered(r) => parts.push(r),
            Item::Nothing => {}
            Item::Reply(id, res) => parts.push(render_reply(&*self.dialect, &id, res)),
            // Nothing joined, and no error said why.
            Item::Subscribed(id) => {
                let e = HubError::Unavailable.to_rpc(&*self.dialect);
                parts.push(self.dialect.render_error(&id, &e));
            }
        }
    }

    /// Record a new id-routed subscription; its client id is the topic's public id unless
    /// this client already holds that topic (then a fresh id, spliced into every frame).
    pub(super) fn register(
        &mut self,
        public_id: ClientSubId,
        guard: ReleaseGuard,
        coalesce: bool,
    ) -> (u64, ClientSubId) {
        let taken = |s: &Self, id: &ClientSubId| s.by_name.contains_key(&SubName::Id(id.clone()));
        let (client_id, splice) = if taken(self, &public_id) {
            let mut id = self.dialect.mint_sub_id();
            while taken(self, &id) {
                id = self.dialect.mint_sub_id();
            }
            (id, true)
        } else {
            (public_id, false)
        };
        let local = self.hold(SubName::Id(client_id.clone()), splice, coalesce, guard);
        (local, client_id)
    }

    /// Whether this session holds the topic with this public id under that id itself.
    fn holds_topic_under(&self, public_id: &ClientSubId) -> bool {
        self.by_name
            .get(&SubName::Id(public_id.clone()))
            .and_then(|local| self.subs.get(local))
            .is_some_and(|l| !l.splice)
    }

    fn hold(&mut self, name: SubName, splice: bool, coalesce: bool, guard: ReleaseGuard) -> u64 {
        let local = self.next_local;
        self.next_local += 1;
        self.by_name.insert(name.clone(), local);
        let l = Local {
            name,
            splice,
            coalesce,
            _guard: guard,
        };
        self.subs.insert(local, l);
        local
    }

    pub(super) fn frame_for(&self, local: u64, n: &Notice) -> WireText {
        match self.subs.get(&local) {
            Some(Local {
                splice: true,
                name: SubName::Id(id),
                ..
            }) => WireText::from(splice(&n.frame, n.id_range.clone(), id.as_str())),
            _ => n.frame.clone(),
        }
    }
}

/// Subscribe to `keys` (none: all held already), then produce the answer: the first
/// error, or the dialect's rendered reply, or the upstream's answer to the follow-up
/// call, or the subscribed reply naming the new subscription.
async fn subscribe(
    route: RouteHandle,
    mailbox: Option<Mailbox>,
    since: Option<u64>,
    id: RequestId,
    keys: Vec<SubscriptionKey>,
    then: Answer,
    context: Option<Arc<str>>,
) -> Item {
    let reserved = keys.len();
    let Subscribed { joined, error } = if keys.is_empty() {
        Subscribed::default()
    } else {
        route.subscribe(keys, mailbox, since).await
    };
    let answer = match (error, then) {
        (Some(e), _) => {
            let d = &*route.dialect;
            Item::Rendered(d.render_subscribe_error(&id, context.as_deref(), &e.to_rpc(d)))
        }
        (None, Answer::Rendered(r)) => Item::Rendered(r),
        (None, Answer::Call(call)) => {
            let res = route.call(call).await;
            Item::Reply(id, res)
        }
        (None, Answer::Subscribed) => Item::Subscribed(id),
    };
    Item::Held(joined, reserved, Box::new(answer))
}
