//! Admission: what a session checks before it sends a request or subscribe on (the
//! request rate, requests in flight, the per-key subscription cap) and the subscription
//! counters it keeps. Over a limit, the request gets the dialect's limit error naming it.

use super::*;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Over the request rate, a request becomes its limit error (id-less ones are dropped,
    /// as they cannot be answered).
    pub(super) fn rate_limit(&mut self, msg: ClientMsg, now: Instant) -> ClientMsg {
        let Some(bucket) = self.bucket.as_mut() else {
            return msg;
        };
        let id = match &msg {
            ClientMsg::Subscribe { id, .. }
            | ClientMsg::Unsubscribe { id, .. }
            | ClientMsg::Call { id: Some(id), .. } => Some(id.clone()),
            ClientMsg::Call { id: None, .. } | ClientMsg::Leave { .. } => None,
            ClientMsg::Error { .. } | ClientMsg::Ignore | ClientMsg::Reply(_) => return msg,
        };
        if bucket.try_take(now) {
            return msg;
        }
        match id {
            Some(id) => ClientMsg::Error {
                id,
                error: self.dialect.error_for(Condition::LimitExceeded(format!(
                    "max {} requests per second per connection",
                    self.settings.max_requests_per_second
                ))),
            },
            None => ClientMsg::Ignore,
        }
    }

    pub(super) fn over_inflight(&self, id: &RequestId) -> Option<String> {
        let max = self.settings.max_inflight_per_connection;
        (self.inflight.len() >= max).then(|| {
            let e = self.dialect.error_for(Condition::LimitExceeded(format!(
                "max {max} requests in flight per connection"
            )));
            self.dialect.render_error(id, &e)
        })
    }

    /// Reserve `n` subscriptions against the client's API key; the error reply if over.
    pub(super) fn over_key(&self, id: &RequestId, n: usize) -> Option<String> {
        let key = self.key.as_ref()?;
        if n == 0 || key.take_subscriptions(n) {
            return None;
        }
        let e = self.dialect.error_for(Condition::LimitExceeded(format!(
            "max {} subscriptions for API key {}",
            key.max_subscriptions, key.name
        )));
        Some(self.dialect.render_error(id, &e))
    }

    /// Subscriptions held changed by `delta`: the route gauge, and the API key's count
    /// (increments were reserved by [`over_key`] already).
    ///
    /// [`over_key`]: Session::over_key
    pub(super) fn sub_count(&self, delta: i64) {
        RouteMetrics::add(&self.route.metrics.client_subscriptions, delta);
        if delta < 0 {
            if let Some(k) = &self.key {
                k.release_subscriptions(delta.unsigned_abs() as usize);
            }
        }
    }

    /// Give back reservations that did not become subscriptions.
    pub(super) fn unreserve(&self, n: usize) {
        if let (Some(k), true) = (&self.key, n > 0) {
            k.release_subscriptions(n);
        }
    }
}
