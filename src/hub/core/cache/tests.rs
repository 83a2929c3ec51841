//! The call cache on simulated time: lifetimes, invalidation when the followed head
//! moves, the byte bound, never-cached kinds and errors, answers from the head, and a
//! consistent `latest` across a failover to a node that is behind.

use super::*;
use crate::config::CacheSettings;

fn cached(max_bytes: usize) -> H {
    let mut s = settings(DialectKind::Ethereum);
    s.cache = Some(CacheSettings {
        max_bytes,
        latest_wait: ms(2_000),
    });
    H::new(s)
}

fn eth_call(method: &str, params: &str) -> Call {
    Call {
        method: method.into(),
        params: Some(params.into()),
        class: 0,
    }
}

impl H {
    /// A cached route whose slot 0 is up, its own `newHeads` confirmed as `0xf` and head
    /// `n` delivered.
    fn following(n: u64) -> H {
        let mut h = cached(1 << 20);
        let acts = h.actions();
        let acts = h.connect(&acts, 0);
        let subs = sent(&acts);
        assert_eq!(subs.len(), 2, "follows the head without clients: {subs:?}");
        assert_eq!(subs[0].1["method"], "eth_subscribe");
        assert_eq!(subs[0].1["params"], json!(["newHeads"]));
        assert_eq!(
            subs[1].1["method"], "eth_blockNumber",
            "the connection's head"
        );
        h.text(0, ok(req_id(&subs[0].1), "0xf"));
        h.text(0, result(req_id(&subs[1].1), &format!("\"0x{n:x}\"")));
        h.text(0, head("0xf", n));
        h
    }
    fn ask(&mut self, reply: u32, method: &str, params: &str) -> Vec<Action> {
        self.ev(Event::Call {
            call: eth_call(method, params),
            reply: Some(reply),
        })
    }
    /// The answers recorded so far.
    fn answers(&self) -> Vec<(u32, Result<String, HubError>)> {
        self.out().answered.clone()
    }
}

/// A node's answer to request `id`.
fn result(id: u64, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

const BALANCE: &str = r#"["0x00000000000000000000000000000000000000aa","latest"]"#;

#[test]
fn a_head_scoped_answer_is_served_until_the_head_moves() {
    let mut h = H::following(0x10);
    let acts = h.ask(1, "eth_getBalance", BALANCE);
    let s = sent(&acts);
    assert_eq!(s.len(), 1);
    let answer = result(req_id(&s[0].1), "\"0x56bc75e2d63100000\"");
    h.text(0, answer.clone());
    // Same call, same head: from the cache, the node's own bytes, no upstream call.
    assert!(sent(&h.ask(2, "eth_getBalance", BALANCE)).is_empty());
    assert_eq!(h.answers(), vec![(1, Ok(answer.clone())), (2, Ok(answer))]);
    assert_eq!(h.metrics.cache_hits.load(Relaxed), 1);
    assert_eq!(h.metrics.cache_misses.load(Relaxed), 1);
    // The head moves: the answer is dropped, the next call goes upstream.
    h.text(0, head("0xf", 0x11));
    assert_eq!(h.metrics.cache_invalidations.load(Relaxed), 1);
    assert_eq!(sent(&h.ask(3, "eth_getBalance", BALANCE)).len(), 1);
    let by_method = h.metrics.calls_by_method();
    assert_eq!(by_method, vec![("eth_getBalance", [1, 2, 0, 0])]);
}

#[test]
fn an_answer_of_an_earlier_head_is_not_kept() {
    let mut h = H::following(0x10);
    let s = sent(&h.ask(1, "eth_call", r#"[{"to":"0x01","data":"0x"},"latest"]"#));
    // The head moves while the call is in flight: its answer may be of either head.
    h.text(0, head("0xf", 0x11));
    h.text(0, result(req_id(&s[0].1), "\"0x\""));
    assert_eq!(h.answers().len(), 1);
    let again = h.ask(2, "eth_call", r#"[{"to":"0x01","data":"0x"},"latest"]"#);
    assert_eq!(sent(&again).len(), 1);
}

#[test]
fn block_number_is_answered_from_the_followed_head() {
    let mut h = H::following(0x1b3);
    h.text(0, head("0xf", 0x1b4));
    assert!(sent(&h.ask(1, "eth_blockNumber", "[]")).is_empty());
    // In the envelope of the node's own answer to the probe (request 2), new result.
    let want = r#"{"jsonrpc":"2.0","id":2,"result":"0x1b4"}"#.to_string();
    assert_eq!(h.answers(), vec![(1, Ok(want))]);
    assert_eq!(h.metrics.head_answers.load(Relaxed), 1);
    assert_eq!(h.metrics.upstream_calls.load(Relaxed), 0);
}

#[test]
fn before_any_head_block_number_goes_upstream_and_its_answer_is_the_head() {
    let mut h = cached(1 << 20);
    let acts = h.actions();
    h.connect(&acts, 0);
    let s = sent(&h.ask(1, "eth_blockNumber", "[]"));
    assert_eq!(s[0].1["method"], "eth_blockNumber");
    assert_eq!(s.len(), 1);
    h.text(0, result(req_id(&s[0].1), "\"0x20\""));
    assert_eq!(h.metrics.followed_head.load(Relaxed), 0x20);
}

#[test]
fn errors_and_never_cached_kinds_always_go_upstream() {
    let mut h = H::following(0x10);
    for (method, params) in [
        ("eth_sendRawTransaction", r#"["0x02f8"]"#),
        ("eth_sign", r#"["0x01","0x02"]"#),
        ("eth_newFilter", r#"[{}]"#),
        ("eth_getFilterChanges", r#"["0x1"]"#),
        ("debug_traceTransaction", r#"["0x01"]"#),
        ("admin_nodeInfo", "[]"),
    ] {
        for reply in [1, 2] {
            let s = sent(&h.ask(reply, method, params));
            assert_eq!(s.len(), 1, "{method} sent each time");
            h.text(0, result(req_id(&s[0].1), "\"0x1\""));
        }
    }
    // An error is passed on and never kept.
    for reply in [3, 4] {
        let s = sent(&h.ask(reply, "eth_getBalance", BALANCE));
        assert_eq!(s.len(), 1, "an error is not kept");
        h.text(0, refused(req_id(&s[0].1)));
    }
    assert_eq!(h.metrics.cache_hits.load(Relaxed), 0);
    h.tick(100);
    assert_eq!(h.metrics.cache_entries.load(Relaxed), 0);
}

#[test]
fn the_cache_stays_within_its_byte_bound() {
    let mut h = cached(64 << 10);
    let acts = h.actions();
    let acts = h.connect(&acts, 0);
    let id = req_id(&sent(&acts)[0].1);
    h.text(0, ok(id, "0xf"));
    h.text(0, result(req_id(&sent(&acts)[1].1), "\"0x1\""));
    h.text(0, head("0xf", 1));
    let big = format!("\"0x{}\"", "ab".repeat(2_000));
    for i in 0..100u32 {
        let params = format!(r#"["0x{i:040x}","latest"]"#);
        let s = sent(&h.ask(i, "eth_getCode", &params));
        h.text(0, result(req_id(&s[0].1), &big));
    }
    h.tick(100);
    let bytes = h.metrics.cache_bytes.load(Relaxed) as usize;
    assert!(bytes <= 64 << 10, "{bytes}");
    assert!(bytes > 48 << 10, "{bytes}");
    assert!(h.metrics.cache_evictions.load(Relaxed) > 50);
    // The most recent is still there, the first long gone.
    assert!(sent(&h.ask(
        200,
        "eth_getCode",
        &format!(r#"["0x{:040x}","latest"]"#, 99)
    ))
    .is_empty());
    assert_eq!(
        sent(&h.ask(201, "eth_getCode", &format!(r#"["0x{:040x}","latest"]"#, 0))).len(),
        1
    );
}

#[test]
fn connection_scoped_answers_last_one_connection() {
    let mut h = H::following(0x10);
    let s = sent(&h.ask(1, "eth_chainId", "[]"));
    h.text(0, result(req_id(&s[0].1), "\"0x1\""));
    assert!(sent(&h.ask(2, "eth_chainId", "[]")).is_empty());
    // Survives a head move.
    h.text(0, head("0xf", 0x11));
    assert!(sent(&h.ask(3, "eth_chainId", "[]")).is_empty());
    // Not a new connection: that may be another node.
    let acts = h.lose(0);
    h.connect(&acts, 0);
    let again = sent(&h.ask(4, "eth_chainId", "[]"));
    assert!(again.iter().any(|(_, v)| v["method"] == "eth_chainId"));
}

#[test]
fn the_routes_own_head_subscription_is_not_a_client_topic() {
    let mut h = H::following(0x10);
    h.tick(100);
    assert_eq!(h.metrics.topics.load(Relaxed), 0);
    assert_eq!(h.topics(), 1);
    // A client's newHeads shares it.
    h.subscribe(HEADS, 1);
    assert!(matches!(h.out().one()[..], [(1, Ok(_))]));
    h.tick(200);
    assert_eq!(h.metrics.topics.load(Relaxed), 1);
    assert_eq!(h.topics(), 1);
}

/// After a failover to a node behind the delivered head: a call at `latest` waits for it
/// to catch up; `eth_blockNumber` never goes back.
#[test]
fn after_a_failover_latest_waits_for_the_lagging_node() {
    let mut h = H::following(0x10);
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    let s = sent(&acts);
    let resub = s
        .iter()
        .find(|(_, v)| v["method"] == "eth_subscribe")
        .expect("resubscribe");
    let probe = s
        .iter()
        .find(|(_, v)| v["method"] == "eth_blockNumber")
        .expect("head probe");
    let (resub, probe) = (req_id(&resub.1), req_id(&probe.1));
    h.text(0, ok(resub, "0xb"));
    // The node is at 0xe: behind what clients saw.
    h.text(0, result(probe, "\"0xe\""));
    let s = sent(&h.ask(1, "eth_getBalance", BALANCE));
    assert!(
        s.is_empty(),
        "held: {s:?} {:?}",
        h.core
            .cache
            .as_ref()
            .map(|c| (c.delivered, c.heads.clone()))
    );
    assert_eq!(h.metrics.latest_waits.load(Relaxed), 1);
    // The head clients saw does not go back.
    h.ask(2, "eth_blockNumber", "[]");
    // In the lagging node's own envelope (its probe answer, request 4).
    let want = r#"{"jsonrpc":"2.0","id":4,"result":"0x10"}"#.to_string();
    assert_eq!(h.answers(), vec![(2, Ok(want))]);
    // A call not at latest goes at once.
    let at = r#"["0x00000000000000000000000000000000000000aa","0x5"]"#;
    assert_eq!(sent(&h.ask(3, "eth_getBalance", at)).len(), 1);
    // Asked again for its head; then its own heads arrive, up to the one clients saw.
    let acts = h.tick(300);
    assert!(sent(&acts)
        .iter()
        .any(|(_, v)| v["method"] == "eth_blockNumber"));
    assert!(
        sent(&h.text(0, head("0xb", 0xf))).is_empty(),
        "still behind"
    );
    let s = sent(&h.text(0, head("0xb", 0x10)));
    assert_eq!(s.len(), 1, "released once caught up");
    assert_eq!(s[0].1["method"], "eth_getBalance");
    h.text(0, result(req_id(&s[0].1), "\"0x2\""));
    assert!(h.answers().iter().any(|(r, a)| *r == 1 && a.is_ok()));
}

#[test]
fn latest_on_a_node_that_stays_behind_ends_in_a_clear_error() {
    let mut h = H::following(0x10);
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    let probe = (sent(&acts).into_iter())
        .find(|(_, v)| v["method"] == "eth_blockNumber")
        .expect("head probe");
    h.text(0, result(req_id(&probe.1), "\"0x8\""));
    assert!(sent(&h.ask(1, "eth_call", r#"[{"to":"0x01"}]"#)).is_empty());
    h.tick(1_900);
    assert!(h.answers().is_empty());
    h.tick(2_100);
    let answers = h.answers();
    let [(1, Err(HubError::Upstream(e)))] = &answers[..] else {
        panic!("{answers:?}");
    };
    assert!(
        e.contains("-32000") && e.contains("behind block 0x10"),
        "{e}"
    );
    assert_eq!(h.metrics.latest_wait_errors.load(Relaxed), 1);
}

#[test]
fn coalesced_callers_do_not_pay_for_the_upstream_call() {
    let mut h = H::following(0x10);
    let s = sent(&h.ask(1, "eth_getBalance", BALANCE));
    assert!(sent(&h.ask(2, "eth_getBalance", BALANCE)).is_empty());
    h.text(0, result(req_id(&s[0].1), "\"0x1\""));
    assert_eq!(h.metrics.upstream_calls.load(Relaxed), 1);
    assert_eq!(h.metrics.upstream_calls_saved.load(Relaxed), 1);
    assert_eq!(
        h.metrics.calls_by_method(),
        vec![("eth_getBalance", [0, 1, 1, 0])]
    );
}

#[test]
fn with_the_cache_off_nothing_is_followed_or_kept() {
    let mut h = H::eth();
    let acts = h.actions();
    let acts = h.connect(&acts, 0);
    assert!(sent(&acts).is_empty(), "no head subscription, no probe");
    for reply in [1, 2] {
        let s = sent(&h.ask(reply, "eth_chainId", "[]"));
        assert_eq!(s.len(), 1);
        h.text(0, result(req_id(&s[0].1), "\"0x1\""));
    }
}

#[test]
fn calls_held_for_a_lagging_node_are_bounded() {
    let mut h = H::following(0x10);
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    let probe = (sent(&acts).into_iter())
        .find(|(_, v)| v["method"] == "eth_blockNumber")
        .expect("head probe");
    h.text(0, result(req_id(&probe.1), "\"0x8\""));
    let n = WAITING_CALLS as u32;
    for reply in 0..n + 2 {
        h.ask(reply, "eth_getBalance", BALANCE);
    }
    // The two beyond the bound are answered at once, with the error; the rest wait.
    let answers = h.answers();
    assert_eq!(answers.len(), 2);
    assert!(answers
        .iter()
        .all(|(r, a)| *r >= n && matches!(a, Err(HubError::Upstream(_)))));
    assert_eq!(h.metrics.latest_waits.load(Relaxed), u64::from(n));
}

// ---- XRPL: the validated ledger, followed on a class clients already use ----

fn xrpl_cached() -> H {
    let mut s = settings(DialectKind::Xrpl);
    s.cache = Some(CacheSettings {
        max_bytes: 1 << 20,
        latest_wait: ms(2_000),
    });
    H::new(s)
}

fn closed(n: u64) -> String {
    LEDGER_CLOSED.replace("\"ledger_index\":5", &format!("\"ledger_index\":{n}"))
}

const XRPL_VALIDATED: &str =
    r#"{"command":"account_info","account":"r1","ledger_index":"validated"}"#;

fn xrpl_answer(id: u64, ledger: u64) -> String {
    format!(
        r#"{{"id":{id},"result":{{"account_data":{{"Balance":"1"}},"ledger_index":{ledger},"validated":true}},"status":"success","type":"response"}}"#
    )
}

#[test]
fn xrpl_follows_the_validated_ledger_only_on_a_class_clients_use() {
    let mut h = xrpl_cached();
    let acts = h.actions();
    let acts = h.connect(&acts, 0);
    // No client: nothing is subscribed for the route itself (it would claim the
    // connection for one API version); the new connection is asked for its head.
    let s = sent(&acts);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].1["command"], "ledger");
    assert_eq!(s[0].1["ledger_index"], "validated");
    h.text(0, xrpl_answer(req_id(&s[0].1), 4));
    assert!(sent(&h.tick(1_000)).is_empty());
    // Not followed: an answer at "validated" is not kept.
    for reply in [1, 2] {
        let s = sent(&h.ask(reply, "account_info", XRPL_VALIDATED));
        assert_eq!(s.len(), 1, "asked every time");
        h.text(0, xrpl_answer(req_id(&s[0].1), 4));
    }
    // A client's `ledger` stream (API version 2): the route joins it, nothing more.
    let keys = h.keys(r#"{"id":1,"command":"subscribe","streams":["ledger"],"api_version":2}"#);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((7, false)),
        reply: 1,
        since: None,
    });
    let s = sent(&acts);
    assert_eq!(s.len(), 1);
    h.text(0, xrpl_ok(req_id(&s[0].1)));
    assert!(
        sent(&h.tick(2_000)).is_empty(),
        "the route shares the stream"
    );
    assert_eq!(h.core.table.get(TopicId(1)).map(|t| t.refs()), Some(2));
    h.text(0, closed(5));
    assert_eq!(h.metrics.followed_head.load(Relaxed), 5);
    // Followed: one upstream call per validated ledger, the node's bytes.
    let s = sent(&h.ask(3, "account_info", XRPL_VALIDATED));
    let answer = xrpl_answer(req_id(&s[0].1), 5);
    h.text(0, answer.clone());
    assert!(sent(&h.ask(4, "account_info", XRPL_VALIDATED)).is_empty());
    let last: Vec<_> = h.answers().into_iter().skip(2).collect();
    assert_eq!(last, vec![(3, Ok(answer.clone())), (4, Ok(answer))]);
    h.text(0, closed(6));
    assert_eq!(sent(&h.ask(5, "account_info", XRPL_VALIDATED)).len(), 1);
    assert_eq!(h.metrics.cache_hits.load(Relaxed), 1);
}

#[test]
fn xrpl_validated_waits_for_a_node_behind_the_ledger_clients_saw() {
    let mut h = xrpl_cached();
    let acts = h.actions();
    let acts = h.connect(&acts, 0);
    let probe = sent(&acts);
    h.text(0, xrpl_answer(req_id(&probe[0].1), 5));
    let keys = h.keys(r#"{"id":1,"command":"subscribe","streams":["ledger"]}"#);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((7, false)),
        reply: 1,
        since: None,
    });
    h.text(0, xrpl_ok(req_id(&sent(&acts)[0].1)));
    h.tick(100);
    h.text(0, closed(8));
    assert_eq!(h.metrics.followed_head.load(Relaxed), 8);
    // The connection is replaced by one whose last validated ledger is 6.
    let acts = h.lose(0);
    h.at(300);
    let acts = h.connect(&acts, 0);
    let s = sent(&acts);
    let probe = s
        .iter()
        .find(|(_, v)| v["command"] == "ledger")
        .expect("probe");
    h.text(0, xrpl_answer(req_id(&probe.1), 6));
    let resubscribe = s
        .iter()
        .find(|(_, v)| v["command"] == "subscribe")
        .expect("resub");
    h.text(0, xrpl_ok(req_id(&resubscribe.1)));
    let acts = h.ask(1, "account_info", XRPL_VALIDATED);
    assert!(sent(&acts).is_empty(), "held: the node is behind ledger 8");
    assert_eq!(h.metrics.latest_waits.load(Relaxed), 1);
    // It validates ledger 8: the call goes out.
    let acts = h.text(0, closed(8));
    let s = sent(&acts);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].1["command"], "account_info");
    h.text(0, xrpl_answer(req_id(&s[0].1), 8));
    assert_eq!(h.answers().len(), 1);
    // Behind again (a newer ledger seen, the node replaced): past latest_wait_ms the
    // call gets rippled's lgrNotFound naming the ledger.
    h.text(0, closed(9));
    let acts = h.lose(0);
    h.at(3_000);
    let acts = h.connect(&acts, 0);
    let probe = sent(&acts);
    let probe = probe
        .iter()
        .find(|(_, v)| v["command"] == "ledger")
        .expect("probe");
    h.text(0, xrpl_answer(req_id(&probe.1), 7));
    assert!(sent(&h.ask(2, "account_info", XRPL_VALIDATED)).is_empty());
    h.tick(5_100);
    let (reply, answer) = h.answers().pop().expect("answered");
    assert_eq!(reply, 2);
    let e = answer.expect_err("the behind error").to_string();
    assert!(
        e.contains("lgrNotFound") && e.contains("validated ledger 9"),
        "{e}"
    );
}
