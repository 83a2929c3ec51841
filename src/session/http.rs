//! The HTTP POST path of a route: one body (a call or a batch) answered without a session.

use super::*;

/// Render a forwarded call's outcome with the client's own id.
pub fn render_reply(
    dialect: &dyn Dialect,
    id: &RequestId,
    res: Result<UpstreamReply, HubError>,
) -> String {
    match res {
        Ok(r) => dialect.splice_id(&r.text, r.id_range, id),
        Err(e) => dialect.render_error(id, &e.to_rpc(dialect)),
    }
}

/// Serve one HTTP POST body (single or batch); `None` when nothing is to be answered.
/// `key`: the API key's name the request presented (per-key accounting).
pub async fn handle_http(route: &RouteHandle, body: &str, key: Option<&str>) -> Option<String> {
    let dialect = route.dialect.clone();
    let over_ws = dialect.calls_over_websocket();
    let msgs = match dialect.parse_client(body, Transport::Http) {
        ClientFrame::Invalid(e) => return Some(dialect.render_error(&RequestId::null(), &e)),
        ClientFrame::Single(m) => (vec![m], false),
        ClientFrame::Batch(ms) => (ms, true),
    };
    let (msgs, batch) = msgs;
    let futs = msgs.into_iter().map(|m| {
        let dialect = dialect.clone();
        async move {
            match m {
                ClientMsg::Error { id, error } => Some(dialect.render_error(&id, &error)),
                ClientMsg::Ignore => None,
                ClientMsg::Leave { reply, .. } | ClientMsg::Reply(reply) => Some(reply),
                ClientMsg::Unsubscribe { id, .. } | ClientMsg::Subscribe { id, .. } => {
                    let e = dialect.error_for(Condition::SubscriptionNotFound);
                    Some(dialect.render_error(&id, &e))
                }
                ClientMsg::Call { id: None, call } => {
                    route.notify(call);
                    None
                }
                ClientMsg::Call { id: Some(id), .. } if !over_ws => {
                    let e = dialect.error_for(Condition::NoHttpUpstream);
                    Some(dialect.render_error(&id, &e))
                }
                ClientMsg::Call { id: Some(id), call } => {
                    let r = route.call(call).await;
                    route.count_key_call(key, &r);
                    Some(render_reply(&*dialect, &id, r))
                }
            }
        }
    });
    let parts: Vec<String> = join_all(futs).await.into_iter().flatten().collect();
    if batch {
        (!parts.is_empty()).then(|| dialect.render_batch(&parts))
    } else {
        parts.into_iter().next().map(|p| dialect.http_reply(p))
    }
}
