//! Route core tests on simulated time: no runtime, no sockets. A recording outbox stands
//! in for the shell; frames are the real dialects'.

use super::hedge::REJOIN_HOLD;
use super::*;
use crate::config::LnbitsSettings;
use crate::dialect::{ClientFrame, ClientMsg, DialectKind, Transport};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
struct Sub {
    key: String,
    topic: TopicId,
    public_id: String,
    fan: Option<u64>,
    replay: Option<String>,
    steady: bool,
    /// `?since=`: (frame, gap) written before the live stream.
    history: Vec<(String, bool)>,
}

/// One subscribe answer: (reply, mailbox, keys joined, error).
type Answered = (u32, Option<u64>, Vec<Sub>, Option<HubError>);

/// Records everything the core answers and delivers.
#[derive(Default)]
struct Rec {
    topics_made: u64,
    /// (topic fan, frame, gap)
    notices: Vec<(u64, String, bool)>,
    /// (mailbox, frame)
    pushes: Vec<(u64, String)>,
    subscribed: Vec<Answered>,
    answered: Vec<(u32, Result<String, HubError>)>,
}

impl Outbox for Rec {
    type Topic = u64;
    /// (id, wants gap notices)
    type Mailbox = (u64, bool);
    type SubscribeReply = u32;
    type CallReply = u32;

    fn new_topic(&mut self) -> u64 {
        self.topics_made += 1;
        self.topics_made
    }
    fn broadcast(&mut self, topic: &u64, n: Notice) {
        self.notices
            .push((*topic, n.frame.as_str().to_owned(), n.gap));
    }
    fn mailbox_id(&self, m: &(u64, bool)) -> u64 {
        m.0
    }
    fn wants_gaps(&self, m: &(u64, bool)) -> bool {
        m.1
    }
    fn push(&mut self, m: &(u64, bool), frame: WireText) {
        self.pushes.push((m.0, frame.as_str().to_owned()));
    }
    fn subscribed(
        &mut self,
        reply: u32,
        mailbox: Option<u64>,
        joined: Vec<KeyJoined<'_, u64>>,
        error: Option<HubError>,
    ) {
        let joined = (joined.into_iter())
            .map(|s| Sub {
                key: format!("{:?}", s.key),
                topic: s.topic,
                public_id: s.public_id.as_str().to_owned(),
                fan: s.fan.copied(),
                replay: s.replay.map(|n| n.frame.as_str().to_owned()),
                steady: s.steady,
                history: (s.history.iter())
                    .map(|n| (n.frame.as_str().to_owned(), n.gap))
                    .collect(),
            })
            .collect();
        self.subscribed.push((reply, mailbox, joined, error));
    }
    fn answered(&mut self, reply: u32, r: Result<UpstreamReply, HubError>) {
        self.answered
            .push((reply, r.map(|u| u.text.as_str().to_owned())));
    }
}

impl Rec {
    /// Each subscribe answer as a one-key subscribe sees it: the key, or the error.
    fn one(&self) -> Vec<(u32, Result<Sub, HubError>)> {
        (self.subscribed.iter())
            .map(|(reply, _, joined, error)| match (joined.first(), error) {
                (Some(s), None) => (*reply, Ok(s.clone())),
                (_, e) => (*reply, Err(e.clone().unwrap_or(HubError::Unavailable))),
            })
            .collect()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn settings(kind: DialectKind) -> RouteSettings {
    RouteSettings {
        path: "/r".into(),
        dialect: kind,
        upstreams: vec!["ws://primary".into(), "ws://backup".into()],
        http_upstream: None,
        request_timeout: ms(10_000),
        subscribe_timeout: ms(5_000),
        linger: ms(2_000),
        max_upstream_connections: 2,
        topics_per_upstream_connection: 0,
        upstream_ping_interval: ms(10_000),
        upstream_idle_timeout: ms(30_000),
        connect_timeout: ms(5_000),
        backoff_initial: ms(100),
        backoff_max: ms(5_000),
        upstream_max_message_bytes: 1 << 20,
        client_queue_len: 16,
        lnbits: LnbitsSettings::default(),
        failback_interval: None,
        stall_timeout: None,
        history_len: 1024,
        backfill: false,
        backfill_max_blocks: 128,
        hedge: 1,
        backfill_max_ledgers: 256,
        backfill_max_slots: 1000,
        cache: None,
        deflate: None,
        payments: None,
    }
}

/// A core on simulated time.
struct H {
    core: RouteCore<Rec>,
    t0: Instant,
    now: Instant,
    gaps: Arc<AtomicUsize>,
    dialect: Arc<dyn Dialect>,
    metrics: Arc<RouteMetrics>,
}

impl H {
    fn new(s: RouteSettings) -> H {
        let dialect = s.dialect.build().expect("a dialect");
        let metrics = Arc::new(RouteMetrics::default());
        let gaps = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let core = RouteCore::new(
            s,
            dialect.clone(),
            metrics.clone(),
            Rec::default(),
            gaps.clone(),
            7,
            t0,
        );
        H {
            core,
            t0,
            now: t0,
            gaps,
            dialect,
            metrics,
        }
    }
    fn eth() -> H {
        H::new(settings(DialectKind::Ethereum))
    }
    /// A core whose slot 0 is connected.
    fn connected(kind: DialectKind) -> H {
        let mut h = H::new(settings(kind));
        let acts = h.actions();
        h.connect(&acts, 0);
        h
    }
    fn out(&self) -> &Rec {
        self.core.outbox()
    }
    fn at(&mut self, t: u64) {
        self.now = self.t0 + ms(t);
    }
    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.core.poll_action()).collect()
    }
    fn ev(&mut self, e: Event<Rec>) -> Vec<Action> {
        self.core.handle(e, self.now);
        self.actions()
    }
    fn tick(&mut self, t: u64) -> Vec<Action> {
        self.at(t);
        self.core.handle_timeout(self.now);
        self.actions()
    }
    fn generation(&self, slot: usize) -> u64 {
        self.core.slots[slot].generation
    }
    /// Answer the connect in `acts` for `slot` with an open connection.
    fn connect(&mut self, acts: &[Action], slot: usize) -> Vec<Action> {
        let (generation, _, _) = connect_of(acts, slot);
        self.ev(Event::Connected {
            slot: SlotId(slot),
            generation,
        })
    }
    fn lose(&mut self, slot: usize) -> Vec<Action> {
        let generation = self.generation(slot);
        self.ev(Event::Lost {
            slot: SlotId(slot),
            generation,
            reason: "test".into(),
        })
    }
    fn text(&mut self, slot: usize, text: impl Into<String>) -> Vec<Action> {
        let generation = self.generation(slot);
        self.ev(Event::Text {
            slot: SlotId(slot),
            generation,
            text: Utf8Bytes::from(text.into()),
        })
    }
    fn keys(&self, msg: &str) -> Vec<SubscriptionKey> {
        match self.dialect.parse_client(msg, Transport::WebSocket) {
            ClientFrame::Single(ClientMsg::Subscribe { keys, .. }) => keys,
            other => panic!("{other:?}"),
        }
    }
    /// An id-routed subscribe (one key, no mailbox).
    fn subscribe(&mut self, msg: &str, reply: u32) -> Vec<Action> {
        let keys = self.keys(msg);
        assert_eq!(keys.len(), 1);
        self.ev(Event::Subscribe {
            keys,
            mailbox: None,
            reply,
            since: None,
        })
    }
    /// An id-routed subscribe resuming after height `since`.
    fn subscribe_since(&mut self, msg: &str, reply: u32, since: u64) -> Vec<Action> {
        let keys = self.keys(msg);
        self.ev(Event::Subscribe {
            keys,
            mailbox: None,
            reply,
            since: Some(since),
        })
    }
    fn call(&mut self, reply: u32) -> Vec<Action> {
        let call = Call {
            method: "eth_blockNumber".into(),
            params: Some("[]".into()),
            class: 0,
        };
        self.ev(Event::Call {
            call,
            reply: Some(reply),
        })
    }
    /// Slot 0 up; `newHeads` subscribed (reply 1) and confirmed as upstream id `0xa`.
    fn with_heads() -> H {
        let mut h = H::eth();
        let acts = h.actions();
        h.connect(&acts, 0);
        let acts = h.subscribe(HEADS, 1);
        let id = req_id(&sent(&acts)[0].1);
        h.text(0, ok(id, "0xa"));
        assert!(matches!(h.out().one()[..], [(1, Ok(_))]));
        h
    }
    fn topics(&self) -> usize {
        self.core.table.len()
    }
}

const HEADS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#;

fn ok(id: u64, sub: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"{sub}"}}"#)
}
fn xrpl_ok(id: u64) -> String {
    format!(r#"{{"id":{id},"status":"success","type":"response","result":{{}}}}"#)
}
const LEDGER_CLOSED: &str = r#"{"type":"ledgerClosed","ledger_index":5,"ledger_hash":"AB","ledger_time":1,"fee_base":10,"reserve_base":1,"reserve_inc":1,"validated_ledgers":"1-5","txn_count":0}"#;
fn refused(id: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":"no"}}}}"#)
}
fn head(sub: &str, n: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{sub}","result":{{"number":"0x{n:x}"}}}}}}"#
    )
}

fn connect_of(acts: &[Action], slot: usize) -> (u64, usize, Duration) {
    (acts.iter())
        .find_map(|a| match a {
            Action::Connect {
                slot: s,
                generation,
                upstream,
                delay,
            } if s.0 == slot => Some((*generation, *upstream, *delay)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no connect for slot {slot} in {acts:?}"))
}
fn sent(acts: &[Action]) -> Vec<(usize, Value)> {
    (acts.iter())
        .filter_map(|a| match a {
            Action::Send { slot, text } => Some((slot.0, serde_json::from_str(text).unwrap())),
            _ => None,
        })
        .collect()
}
fn req_id(v: &Value) -> u64 {
    v["id"].as_u64().unwrap()
}
fn dropped(acts: &[Action], slot: usize) -> bool {
    acts.contains(&Action::Drop { slot: SlotId(slot) })
}

#[test]
fn joins_share_one_topic_and_make_its_ring_only_once() {
    let mut h = H::eth();
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(HEADS, 1);
    assert_eq!(sent(&acts).len(), 1);
    // Joins while pending and after confirmation: no second upstream subscribe, no ring.
    assert!(h.subscribe(HEADS, 2).is_empty());
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xa"));
    assert!(h.subscribe(HEADS, 3).is_empty());
    assert_eq!(h.out().topics_made, 1);
    let subs = &h.out().one();
    assert_eq!(subs.len(), 3);
    let ids: Vec<_> = subs
        .iter()
        .map(|(_, s)| s.as_ref().unwrap().public_id.clone())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    assert!(subs[0].1.as_ref().unwrap().steady);
    h.text(0, head("0xa", 5));
    assert_eq!(h.out().notices.len(), 1);
    assert!(h.out().notices[0].1.contains(&ids[0]));
}

#[test]
fn resubscribe_refusals_replace_the_connection_until_60s_then_end_the_topic() {
    let mut h = H::with_heads();
    let acts = h.lose(0);
    assert!(dropped(&acts, 0));
    assert_eq!(connect_of(&acts, 0).1, 1, "fails over to the backup");
    let acts = h.connect(&acts, 0);
    let id = req_id(&sent(&acts)[0].1);
    h.at(1_000);
    let acts = h.text(0, refused(id));
    assert!(
        dropped(&acts, 0),
        "a refused resubscribe replaces the connection"
    );
    assert_eq!(h.topics(), 1, "the topic is kept");
    // Still refused 59 s later: kept. Refused past 60 s: it ends.
    h.at(60_000);
    let acts = h.connect(&acts, 0);
    let id = req_id(&sent(&acts)[0].1);
    let acts = h.text(0, refused(id));
    assert!(dropped(&acts, 0));
    assert_eq!(h.topics(), 1);
    h.at(61_000);
    let acts = h.connect(&acts, 0);
    let id = req_id(&sent(&acts)[0].1);
    let acts = h.text(0, refused(id));
    assert!(!dropped(&acts, 0), "the connection stays");
    assert_eq!(h.topics(), 0, "given up");
    assert_eq!(h.out().one().len(), 1, "clients were told nothing new");
}

#[test]
fn an_accepted_resubscribe_resets_the_refusal_clock() {
    let mut h = H::with_heads();
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    let acts = h.text(0, refused(req_id(&sent(&acts)[0].1)));
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xb"));
    // A refusal 70 s later starts a new clock: the topic is kept.
    h.at(70_000);
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    let acts = h.text(0, refused(req_id(&sent(&acts)[0].1)));
    assert!(dropped(&acts, 0));
    assert_eq!(h.topics(), 1);
}

#[test]
fn one_shot_final_notification_serves_late_joiners_until_the_ttl() {
    let mut s = settings(DialectKind::Solana);
    (s.upstream_idle_timeout, s.upstream_ping_interval) = (ms(600_000), ms(600_000));
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let sig =
        "2EBVM6cB8vAAD93Ktr6Vd8p67XPbQzCJX47MpReuiCXJAtcjaxpvWpcg9Ege1Nr5Tk3a2GFrByT7WPBjdsTycY9b";
    let msg =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"signatureSubscribe","params":["{sig}"]}}"#);
    let acts = h.subscribe(&msg, 1);
    let id = req_id(&sent(&acts)[0].1);
    h.text(0, format!(r#"{{"jsonrpc":"2.0","id":{id},"result":5}}"#));
    let fin = r#"{"jsonrpc":"2.0","method":"signatureNotification","params":{"result":{"context":{"slot":9},"value":{"err":null}},"subscription":5}}"#;
    let acts = h.text(0, fin);
    assert!(sent(&acts).is_empty(), "a one-shot is not unsubscribed");
    assert_eq!(h.out().notices.len(), 1);
    assert_eq!(h.topics(), 0);
    // A late joiner gets the final notification under a fresh id, without a topic.
    h.at(59_000);
    h.tick(59_000);
    let acts = h.subscribe(&msg, 2);
    assert!(acts.is_empty());
    let (_, late) = h.out().one().last().unwrap().clone();
    let late = late.unwrap();
    assert_eq!(late.fan, None);
    let replay: Value = serde_json::from_str(late.replay.as_deref().unwrap()).unwrap();
    assert_eq!(replay["params"]["result"]["context"]["slot"], 9);
    assert_eq!(replay["params"]["subscription"].to_string(), late.public_id);
    // After the TTL the key subscribes upstream again.
    h.tick(60_000);
    let acts = h.subscribe(&msg, 3);
    assert_eq!(sent(&acts).len(), 1);
}

#[test]
fn linger_expiry_unsubscribes_upstream() {
    let mut h = H::with_heads();
    h.at(1_000);
    h.ev(Event::Release {
        topic: h.out().one()[0].1.as_ref().unwrap().topic,
        mailbox: None,
    });
    assert!(sent(&h.tick(2_900)).is_empty(), "still lingering");
    let acts = h.tick(3_000);
    let s = sent(&acts);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1["method"], "eth_unsubscribe");
    assert_eq!(s[0].1["params"][0], "0xa");
    assert_eq!(h.topics(), 0);
    assert_eq!(h.metrics.topics.load(Relaxed), 0);
}

#[test]
fn a_silent_steady_topic_is_a_stall() {
    let mut s = settings(DialectKind::Ethereum);
    s.stall_timeout = Some(ms(5_000));
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(HEADS, 1);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xa"));
    h.at(3_000);
    h.text(0, head("0xa", 1));
    assert!(!dropped(&h.tick(7_900), 0));
    let acts = h.tick(8_000);
    assert!(dropped(&acts, 0), "{acts:?}");
    assert_eq!(h.metrics.upstream_stalls.load(Relaxed), 1);
}

#[test]
fn a_set_subscribe_answers_with_the_keys_that_joined_and_the_first_error() {
    let mut h = H::connected(DialectKind::Xrpl);
    let keys = h.keys(r#"{"id":1,"command":"subscribe","streams":["ledger","peer_status"]}"#);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((7, false)),
        reply: 9,
        since: None,
    });
    let s = sent(&acts);
    assert_eq!(s.len(), 2, "peer_status goes alone");
    for (_, req) in &s {
        let id = req_id(req);
        let text = if req.to_string().contains("peer_status") {
            format!(
                r#"{{"id":{id},"status":"error","type":"response","error":"noPermission","error_code":6,"error_message":"You don't have permission for this command."}}"#
            )
        } else {
            xrpl_ok(id)
        };
        h.text(0, text);
    }
    let (reply, mailbox, held, error) = h.out().subscribed[0].clone();
    assert_eq!((reply, mailbox), (9, Some(7)));
    assert_eq!(held.len(), 1);
    assert!(held[0].key.contains("ledger"), "{held:?}");
    assert!(matches!(error, Some(HubError::Upstream(e)) if e.contains("noPermission")));
    assert_eq!(h.topics(), 1);
    // Pushes for the held key reach the mailbox.
    h.text(0, LEDGER_CLOSED);
    assert_eq!(h.out().pushes.len(), 1);
    assert_eq!(h.out().pushes[0].0, 7);
}

#[test]
fn a_call_past_its_deadline_times_out_and_its_late_answer_is_ignored() {
    let mut h = H::eth();
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.call(5);
    let id = req_id(&sent(&acts)[0].1);
    h.tick(9_900);
    assert!(h.out().answered.is_empty());
    h.tick(10_000);
    assert_eq!(h.out().answered, vec![(5, Err(HubError::Timeout))]);
    h.text(
        0,
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x1"}}"#),
    );
    assert_eq!(h.out().answered.len(), 1);
    assert_eq!(h.metrics.request_errors.load(Relaxed), 1);
}

#[test]
fn waiting_calls_expire_or_go_out_when_a_connection_comes() {
    let mut h = H::eth();
    let connect = h.actions();
    assert!(
        sent(&h.call(1)).is_empty(),
        "nothing connected: the call waits"
    );
    h.at(5_000);
    h.call(2);
    h.tick(10_000);
    assert_eq!(h.out().answered, vec![(1, Err(HubError::Unavailable))]);
    h.at(10_001);
    let acts = h.connect(&connect, 0);
    let s = sent(&acts);
    assert_eq!(s.len(), 1, "the waiting call is flushed on connect");
    let id = req_id(&s[0].1);
    let answer = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x1"}}"#);
    h.text(0, answer.clone());
    assert_eq!(h.out().answered[1], (2, Ok(answer)));
}

#[test]
fn an_unanswered_subscribe_marks_the_connection_hung() {
    let mut h = H::eth();
    let acts = h.actions();
    h.connect(&acts, 0);
    h.subscribe(HEADS, 1);
    assert!(!dropped(&h.tick(4_900), 0));
    let acts = h.tick(5_000);
    assert!(dropped(&acts, 0), "the hung connection is replaced");
    assert_eq!(connect_of(&acts, 0).1, 1);
    // The client's wait is bounded by the subscribe timeout.
    h.tick(5_100);
    assert_eq!(h.out().one(), vec![(1, Err(HubError::Unavailable))]);
}

#[test]
fn reconnects_back_off_and_fail_over_to_the_next_upstream() {
    let mut h = H::eth();
    let acts = h.actions();
    let (g, up, delay) = connect_of(&acts, 0);
    assert_eq!((up, delay), (0, Duration::ZERO));
    let fail = |h: &mut H, generation| {
        h.ev(Event::ConnectFailed {
            slot: SlotId(0),
            generation,
            reason: "refused".into(),
        })
    };
    let acts = fail(&mut h, g);
    let (g2, up, d1) = connect_of(&acts, 0);
    assert_eq!(up, 1);
    assert!(d1 >= ms(50) && d1 < ms(100), "{d1:?}");
    let acts = fail(&mut h, g2);
    let (_, up, d2) = connect_of(&acts, 0);
    assert_eq!(up, 0, "wraps around the list");
    assert!(d2 >= ms(100) && d2 < ms(200), "{d2:?}");
    assert!(fail(&mut h, g).is_empty(), "a stale result is ignored");
    assert_eq!(h.metrics.upstream_connect_failures.load(Relaxed), 2);
    let acts = h.connect(&acts, 0);
    assert!(matches!(acts[0], Action::Install { .. }));
    // Nothing to resubscribe: the backoff restarts at once.
    let acts = h.lose(0);
    let (_, up, d) = connect_of(&acts, 0);
    assert_eq!(up, 1);
    assert!(d < ms(100), "{d:?}");
    h.connect(&acts, 0);
    assert_eq!(h.metrics.upstream_reconnects.load(Relaxed), 1);
    assert_eq!(h.metrics.upstream_connections.load(Relaxed), 1);
    assert_eq!(h.metrics.active_upstream.load(Relaxed), 1);
}

#[test]
fn fail_back_waits_until_nothing_is_in_flight() {
    let mut s = settings(DialectKind::Ethereum);
    s.failback_interval = Some(ms(1_000));
    let mut h = H::new(s);
    let acts = h.actions();
    let (g, _, _) = connect_of(&acts, 0);
    let acts = h.ev(Event::ConnectFailed {
        slot: SlotId(0),
        generation: g,
        reason: "down".into(),
    });
    h.connect(&acts, 0); // on the backup
    assert!(h.tick(900).is_empty());
    let acts = h.tick(1_000);
    let probe = Action::Probe {
        slot: SlotId(0),
        generation: h.generation(0),
        upstream: 0,
    };
    assert_eq!(acts, vec![probe.clone()]);
    assert!(h.tick(1_500).is_empty(), "one probe at a time");
    // The primary is back, but a call is in flight: stay.
    let call = h.call(1);
    let generation = h.generation(0);
    let stay = Event::Probed {
        slot: SlotId(0),
        generation,
        ok: true,
    };
    assert!(h.ev(stay).is_empty());
    let id = req_id(&sent(&call)[0].1);
    h.text(
        0,
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x1"}}"#),
    );
    // The probe fails: stay.
    assert_eq!(h.tick(2_500), vec![probe.clone()]);
    let no = Event::Probed {
        slot: SlotId(0),
        generation,
        ok: false,
    };
    assert!(h.ev(no).is_empty());
    // Idle and the primary answers: make before break.
    assert_eq!(h.tick(3_500), vec![probe]);
    let acts = h.ev(Event::Probed {
        slot: SlotId(0),
        generation,
        ok: true,
    });
    assert_eq!(acts[0], Action::Close { slot: SlotId(0) });
    assert_eq!(
        acts[1],
        Action::Install {
            slot: SlotId(0),
            generation: generation + 1
        }
    );
    assert_eq!(h.metrics.upstream_failbacks.load(Relaxed), 1);
    assert_eq!(h.metrics.active_upstream.load(Relaxed), 0);
    assert_eq!(h.metrics.upstream_connections.load(Relaxed), 1);
}

#[test]
fn gap_notices_name_the_heights_that_may_be_missing() {
    let mut h = H::with_heads();
    h.gaps.store(1, Relaxed);
    h.text(0, head("0xa", 10));
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xb"));
    h.text(0, head("0xb", 15));
    let n = &h.out().notices;
    assert_eq!(n.len(), 3);
    assert!(n[1].2, "a gap notice");
    let gap: Value = serde_json::from_str(&n[1].1).unwrap();
    assert_eq!(gap["params"]["result"]["fromBlock"], "0xb");
    assert_eq!(gap["params"]["result"]["toBlock"], "0xe");
    assert!(!n[2].2);
    assert_eq!(h.metrics.gap_notices.load(Relaxed), 1);
    // Nothing missed (the next height follows on): no notice.
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xc"));
    h.text(0, head("0xc", 16));
    assert_eq!(h.out().notices.len(), 4);
    assert_eq!(h.metrics.gap_notices.load(Relaxed), 1);
}

#[test]
fn without_gap_listeners_heights_are_not_read_and_nothing_is_announced() {
    let mut h = H::with_heads();
    h.text(0, head("0xa", 10));
    assert_eq!(h.core.slots[0].last_height, None);
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xb"));
    // Nobody listened when the connection went: no gap is opened, so a listener
    // arriving now is not told of one it cannot date.
    h.gaps.store(1, Relaxed);
    h.text(0, head("0xb", 15));
    assert!(h.out().notices.iter().all(|n| !n.2));
    assert_eq!(h.metrics.gap_notices.load(Relaxed), 0);
}

#[test]
fn a_notification_for_an_unknown_id_is_counted_and_dropped() {
    let mut h = H::with_heads();
    h.text(0, head("0xdead", 1));
    assert!(h.out().notices.is_empty());
    assert_eq!(h.metrics.unknown_notifications.load(Relaxed), 1);
}

#[test]
fn a_one_key_subscribe_is_the_degenerate_set() {
    let mut h = H::connected(DialectKind::Ethereum);
    let acts = h.subscribe(HEADS, 1);
    h.text(0, refused(req_id(&sent(&acts)[0].1)));
    let logs = r#"{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["logs",{}]}"#;
    let acts = h.subscribe(logs, 2);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xb"));
    let answers = &h.out().subscribed;
    // Refused: nothing joined, the error. Accepted: one key, its ring, no mailbox.
    assert!(matches!(&answers[0], (1, None, j, Some(HubError::Upstream(_))) if j.is_empty()));
    let (reply, mailbox, joined, error) = &answers[1];
    assert_eq!((*reply, *mailbox, joined.len(), error), (2, None, 1, &None));
    assert!(joined[0].key.contains("logs") && joined[0].fan.is_some());
}

#[test]
fn a_set_of_live_keys_is_answered_at_once_and_each_session_gets_its_copy() {
    let mut h = H::connected(DialectKind::Xrpl);
    let msg = r#"{"id":1,"command":"subscribe","streams":["ledger","transactions"]}"#;
    let keys = h.keys(msg);
    let acts = h.ev(Event::Subscribe {
        keys: keys.clone(),
        mailbox: Some((7, false)),
        reply: 1,
        since: None,
    });
    let id = req_id(&sent(&acts)[0].1);
    h.text(0, xrpl_ok(id));
    // A second session's set: both topics live, no upstream request, answered at once.
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((8, false)),
        reply: 2,
        since: None,
    });
    assert!(sent(&acts).is_empty());
    let (reply, mailbox, joined, error) = h.out().subscribed[1].clone();
    assert_eq!((reply, mailbox, joined.len(), error), (2, Some(8), 2, None));
    h.text(0, LEDGER_CLOSED);
    let to: Vec<u64> = h.out().pushes.iter().map(|(m, _)| *m).collect();
    assert_eq!(to.len(), 2);
    assert!(to.contains(&7) && to.contains(&8), "{to:?}");
    assert!(
        h.out().notices.is_empty(),
        "content-routed: nothing on the rings"
    );
}

// ---- Hedged subscriptions (hedge = 2): two lanes on two upstreams ----

/// A head with a hash (hedged routes dedupe by it).
fn hhead(sub: &str, n: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{sub}","result":{{"number":"0x{n:x}","hash":"0x{:064x}"}}}}}}"#,
        n + 0xb10c
    )
}

/// The block numbers of the heads the topic's ring got, in order.
fn ring_heads(h: &H) -> Vec<u64> {
    (h.out().notices.iter())
        .filter(|(_, _, gap)| !gap)
        .map(|(_, f, _)| {
            let v: Value = serde_json::from_str(f).unwrap();
            u64::from_str_radix(
                v["params"]["result"]["number"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap()
        })
        .collect()
}

/// hedge = 2 over two upstreams: both lanes connected (slot k on upstream k), `newHeads`
/// subscribed and confirmed on both, as upstream ids `0xa` (lane 0) and `0xb` (lane 1).
fn hedged_heads(tweak: impl FnOnce(&mut RouteSettings)) -> H {
    let mut s = settings(DialectKind::Ethereum);
    s.hedge = 2;
    tweak(&mut s);
    let mut h = H::new(s);
    let acts = h.actions();
    assert_eq!(connect_of(&acts, 0).1, 0, "lane 0 starts at upstream 0");
    assert_eq!(connect_of(&acts, 1).1, 1, "lane 1 starts at upstream 1");
    h.connect(&acts, 0);
    h.connect(&acts, 1);
    let acts = h.subscribe(HEADS, 1);
    let s = sent(&acts);
    assert_eq!(
        s.iter().map(|(slot, _)| *slot).collect::<Vec<_>>(),
        vec![0, 1],
        "one subscribe per lane"
    );
    h.text(0, ok(req_id(&s[0].1), "0xa"));
    assert!(
        matches!(h.out().one()[..], [(1, Ok(_))]),
        "answered at the first lane's confirmation"
    );
    h.text(1, ok(req_id(&s[1].1), "0xb"));
    h
}

#[test]
fn hedged_each_head_reaches_clients_once_from_whichever_lane_is_first() {
    let mut h = hedged_heads(|_| {});
    h.text(0, hhead("0xa", 1));
    h.at(5);
    h.text(1, hhead("0xb", 1));
    h.text(1, hhead("0xb", 2)); // lane 1 leads now
    h.at(9);
    h.text(0, hhead("0xa", 2));
    assert_eq!(ring_heads(&h), vec![1, 2]);
    let m = &h.metrics;
    assert_eq!(m.hedge_duplicates.load(Relaxed), 2);
    assert_eq!(m.hedge_first[0].load(Relaxed), 1);
    assert_eq!(m.hedge_first[1].load(Relaxed), 1);
    // Leads: 5 ms (lane 0 first) and 4 ms (lane 1 first).
    assert_eq!(m.hedge_lead_micros.load(Relaxed), 9_000);
    // Without hedging the same frames are two notifications each (the check is off).
    let mut plain = H::with_heads();
    plain.text(0, hhead("0xa", 1));
    plain.text(0, hhead("0xa", 1));
    assert_eq!(ring_heads(&plain), vec![1, 1]);
}

#[test]
fn hedged_a_lane_dying_costs_no_gap_no_duplicate_and_no_backfill() {
    let mut h = hedged_heads(|s| s.backfill = true);
    for n in 1..=3 {
        h.text(0, hhead("0xa", n));
        h.text(1, hhead("0xb", n));
    }
    // Lane 0's node dies: lane 1 carries on alone.
    let acts = h.lose(0);
    assert!(dropped(&acts, 0));
    let (_, upstream, _) = connect_of(&acts, 0);
    assert_eq!(
        upstream, 0,
        "lane 0 does not double up on upstream 1 (lane 1 is connected there)"
    );
    for n in 4..=6 {
        h.text(1, hhead("0xb", n));
    }
    // Lane 0 back: resubscribed, and nothing is fetched (lane 1 covered the outage).
    h.at(1_000);
    let acts = h.connect(&acts, 0);
    let s = sent(&acts);
    assert_eq!(s.len(), 1, "only the resubscribe: {s:?}");
    assert_eq!(s[0].1["method"], "eth_subscribe");
    let s = sent(&h.text(0, ok(req_id(&s[0].1), "0xc")));
    assert!(s.is_empty(), "no backfill request: {s:?}");
    for n in 7..=8 {
        h.text(0, hhead("0xc", n));
        h.text(1, hhead("0xb", n));
    }
    assert_eq!(ring_heads(&h), (1..=8).collect::<Vec<_>>());
    assert_eq!(h.metrics.backfilled.load(Relaxed), 0);
}

#[test]
fn hedged_when_every_lane_was_down_the_backfill_still_runs() {
    let mut h = hedged_heads(|s| s.backfill = true);
    h.text(0, hhead("0xa", 1));
    h.text(1, hhead("0xb", 1));
    let a0 = h.lose(0);
    let a1 = h.lose(1);
    h.at(1_000);
    let acts = h.connect(&a0, 0);
    let s = sent(&acts);
    let s = sent(&h.text(0, ok(req_id(&s[0].1), "0xc")));
    assert!(
        s.iter()
            .any(|(_, v)| v["method"].as_str().is_some_and(|m| m != "eth_subscribe")),
        "nobody covered the outage: the backfill asks the node: {s:?}"
    );
    drop(a1);
}

#[test]
fn hedged_a_lagging_lane_never_duplicates_and_a_late_one_is_dropped() {
    let mut h = hedged_heads(|_| {});
    // Lane 1 lags 3 blocks behind lane 0 throughout.
    for n in 1..=20 {
        h.text(0, hhead("0xa", n));
        if n > 3 {
            h.text(1, hhead("0xb", n - 3));
        }
    }
    // Lane 0 stops; lane 1 catches up: what lane 0 never brought, lane 1 does, once.
    for n in 18..=25 {
        h.text(1, hhead("0xb", n));
    }
    assert_eq!(ring_heads(&h), (1..=25).collect::<Vec<_>>());
    assert_eq!(h.metrics.hedge_duplicates.load(Relaxed), 17 + 3);
}

#[test]
fn hedged_a_stalled_lane_is_replaced_while_the_other_delivers() {
    let mut h = hedged_heads(|s| s.stall_timeout = Some(ms(5_000)));
    // Lane 0's node stops producing (still answers pings); lane 1 keeps delivering.
    for t in 1..=8u64 {
        h.at(t * 1_000);
        h.text(1, hhead("0xb", t));
        h.ev(Event::Activity {
            slot: SlotId(0),
            generation: h.generation(0),
        });
        let acts = h.tick(t * 1_000);
        assert!(!dropped(&acts, 1), "lane 1 delivers");
        if t < 5 {
            assert!(!dropped(&acts, 0), "{t}: not yet");
        } else if t == 5 {
            assert!(dropped(&acts, 0), "lane 0 silent for 5 s: replaced");
        }
    }
    assert_eq!(h.metrics.upstream_stalls.load(Relaxed), 1);
    assert_eq!(ring_heads(&h), (1..=8).collect::<Vec<_>>());
}

#[test]
fn hedged_calls_go_to_the_connection_ahead() {
    let mut h = hedged_heads(|_| {});
    // Each call answered before the next (identical calls in flight would coalesce).
    let call = |h: &mut H, reply: u32| -> usize {
        let s = sent(&h.call(reply));
        let (slot, req) = &s[0];
        let answer = format!(r#"{{"jsonrpc":"2.0","id":{},"result":"0x1"}}"#, req_id(req));
        h.text(*slot, answer);
        *slot
    };
    h.text(0, hhead("0xa", 10));
    h.text(1, hhead("0xb", 10));
    h.text(1, hhead("0xb", 11));
    assert_eq!(call(&mut h, 1), 1, "slot 1 saw block 11");
    h.text(0, hhead("0xa", 11));
    h.text(0, hhead("0xa", 12));
    assert_eq!(call(&mut h, 2), 0, "slot 0 is ahead now");
    // Slot 0 falls silent for longer than 10 s while slot 1 moves on (below 12): slot 1.
    h.at(11_000);
    h.text(1, hhead("0xb", 12));
    h.at(20_000);
    h.text(1, hhead("0xb", 13));
    h.at(21_000);
    assert_eq!(call(&mut h, 3), 1);
    // Slot 1 lost: everything goes to slot 0.
    h.lose(1);
    assert_eq!(call(&mut h, 4), 0);
}

#[test]
fn hedged_lanes_fail_over_to_an_upstream_no_other_lane_uses() {
    let mut s = settings(DialectKind::Ethereum);
    s.hedge = 2;
    s.upstreams.push("ws://third".into());
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 1);
    let (g, _, _) = connect_of(&acts, 0);
    let acts = h.ev(Event::ConnectFailed {
        slot: SlotId(0),
        generation: g,
        reason: "down".into(),
    });
    assert_eq!(
        connect_of(&acts, 0).1,
        2,
        "upstream 1 is lane 1's: lane 0 goes to the third"
    );
}

#[test]
fn hedged_xrpl_messages_are_delivered_once_per_session() {
    let mut s = settings(DialectKind::Xrpl);
    s.hedge = 2;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    h.connect(&acts, 1);
    let keys = h.keys(r#"{"id":1,"command":"subscribe","streams":["ledger","server"]}"#);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((7, false)),
        reply: 1,
        since: None,
    });
    for (slot, req) in sent(&acts) {
        h.text(slot, xrpl_ok(req_id(&req)));
    }
    h.text(1, LEDGER_CLOSED);
    h.text(0, LEDGER_CLOSED);
    let next = LEDGER_CLOSED
        .replace("\"AB\"", "\"CD\"")
        .replace(":5,", ":6,");
    h.text(0, next.clone());
    h.text(1, next);
    assert_eq!(h.out().pushes.len(), 2, "each ledger once");
    // A message without an identity comes from the lowest connected lane only.
    let status = r#"{"type":"serverStatus","load_factor":256,"server_status":"full"}"#;
    h.text(1, status);
    assert_eq!(h.out().pushes.len(), 2, "lane 1's copy dropped");
    h.text(0, status);
    assert_eq!(h.out().pushes.len(), 3);
    h.lose(0);
    h.text(1, status);
    assert_eq!(
        h.out().pushes.len(),
        4,
        "lane 0 down: lane 1's copy is the one"
    );
}

#[test]
fn hedged_a_lane_rejoining_ahead_of_the_live_one_keeps_the_order() {
    let mut h = hedged_heads(|_| {});
    for n in 1..=3 {
        h.text(0, hhead("0xa", n));
        h.text(1, hhead("0xb", n));
    }
    let acts = h.lose(0);
    h.text(1, hhead("0xb", 4));
    h.text(1, hhead("0xb", 5));
    h.at(1_000);
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xc"));
    // Lane 0's node is ahead (at 7 already), lane 1's is still at 5.
    h.text(0, hhead("0xc", 7));
    h.text(0, hhead("0xc", 8));
    assert_eq!(
        ring_heads(&h),
        (1..=5).collect::<Vec<_>>(),
        "held: lane 1 has not brought 6 yet"
    );
    for n in 6..=8 {
        h.text(1, hhead("0xb", n));
    }
    h.text(0, hhead("0xc", 9)); // still ahead: held
    h.text(1, hhead("0xb", 9));
    h.text(1, hhead("0xb", 10));
    h.text(0, hhead("0xc", 10)); // a copy: lane 0 is level now, the hold ends
    h.text(0, hhead("0xc", 11)); // first from lane 0: delivered at once
    assert_eq!(ring_heads(&h), (1..=11).collect::<Vec<_>>());
    // A rejoining lane's copy nobody else brings goes out when the hold time is over.
    let acts = h.lose(0);
    h.at(2_000);
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xd"));
    h.text(1, hhead("0xb", 11));
    h.text(0, hhead("0xd", 12));
    h.tick(2_000 + 1_900);
    assert_eq!(ring_heads(&h).last(), Some(&11));
    h.tick(2_000 + REJOIN_HOLD.as_millis() as u64);
    assert_eq!(ring_heads(&h), (1..=12).collect::<Vec<_>>());
    // Copies: lane 1's 1..=3; lane 0's 10 and its held 7, 8, 9; lane 1's 11.
    assert_eq!(h.metrics.hedge_duplicates.load(Relaxed), 3 + 4 + 1);
}

#[test]
fn hedged_a_lane_refusing_a_topic_the_other_holds_neither_ends_it_nor_drops_the_connection() {
    let mut h = hedged_heads(|_| {});
    let acts = h.lose(1);
    h.at(100);
    let acts = h.connect(&acts, 1);
    let s = sent(&acts);
    let acts = h.text(1, refused(req_id(&s[0].1)));
    assert!(!dropped(&acts, 1), "lane 1's connection stays");
    assert_eq!(h.topics(), 1);
    // Far past the give-up: still held by lane 0 (alive), delivering.
    for t in (10_000..=120_000).step_by(10_000) {
        h.at(t);
        for slot in 0..2 {
            h.ev(Event::Activity {
                slot: SlotId(slot),
                generation: h.generation(slot),
            });
        }
        assert!(!dropped(&h.tick(t), 0));
    }
    h.text(0, hhead("0xa", 1));
    assert_eq!(ring_heads(&h), vec![1]);
    assert_eq!(h.topics(), 1);
    // Lane 1's next connection tries again.
    let acts = h.lose(1);
    h.at(121_000);
    let s = sent(&h.connect(&acts, 1));
    assert_eq!(s[0].1["method"], "eth_subscribe");
}

#[test]
fn hedged_after_both_lanes_were_down_a_lagging_lane_does_not_repeat_what_the_backfill_brought() {
    let mut h = hedged_heads(|s| s.backfill = true);
    h.text(0, head_h("0xa", 10));
    h.text(1, head_h("0xb", 10));
    let a0 = h.lose(0);
    let a1 = h.lose(1);
    h.at(1_000);
    let acts = h.connect(&a0, 0);
    let acts = h.text(0, ok(req_id(&sent(&acts)[0].1), "0xc"));
    // Answer the backfill as a node at block 13 would, whatever it asks.
    let mut pending = sent(&acts);
    let mut fetched = 0;
    while let Some((_, req)) = pending.pop() {
        let id = req_id(&req);
        let hex = |n: u64| format!("0x{n:x}");
        let text = match req["method"].as_str() {
            Some("eth_blockNumber") => answer(id, &format!("\"{}\"", hex(13))),
            Some("eth_getBlockByNumber") => {
                let n = req["params"][0].as_str().unwrap().trim_start_matches("0x");
                let n = u64::from_str_radix(n, 16).unwrap();
                fetched += 1;
                let block = format!(
                    r#"{{"number":"{}","hash":"0xh{n}","parentHash":"0xh{}","transactions":[]}}"#,
                    hex(n),
                    n - 1
                );
                answer(id, &block)
            }
            _ => continue,
        };
        pending.extend(sent(&h.text(0, text)));
    }
    assert!(fetched >= 3, "11..=13 missed");
    h.tick(1_100);
    // Lane 1 comes back on a node that lags: its heads 12 and 13 were backfilled already.
    let acts = h.connect(&a1, 1);
    h.text(1, ok(req_id(&sent(&acts)[0].1), "0xd"));
    h.text(1, head_h("0xd", 12));
    h.text(1, head_h("0xd", 13));
    h.text(0, head_h("0xc", 14));
    h.tick(1_000 + REJOIN_HOLD.as_millis() as u64 + 100);
    h.text(1, head_h("0xd", 14));
    assert_eq!(delivered(&h, 0), ["0xa", "0xb", "0xc", "0xd", "0xe"]);
}

#[test]
fn hedged_a_signature_ends_once_on_the_first_final_notification() {
    let mut s = settings(DialectKind::Solana);
    s.hedge = 2;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    h.connect(&acts, 1);
    let sig =
        "2EBVM6cB8vAAD93Ktr6Vd8p67XPbQzCJX47MpReuiCXJAtcjaxpvWpcg9Ege1Nr5Tk3a2GFrByT7WPBjdsTycY9b";
    let msg =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"signatureSubscribe","params":["{sig}"]}}"#);
    let acts = h.subscribe(&msg, 1);
    for (slot, req) in sent(&acts) {
        let id = req_id(&req);
        h.text(
            slot,
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#, 5 + slot),
        );
    }
    let fin = |sub: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"signatureNotification","params":{{"result":{{"context":{{"slot":9}},"value":{{"err":null}}}},"subscription":{sub}}}}}"#
        )
    };
    // Lane 1 (rejoining: it confirmed second) is first: a final notification is never held.
    let acts = h.text(1, fin(6));
    assert!(sent(&acts).is_empty(), "a one-shot is not unsubscribed");
    assert_eq!(h.out().notices.len(), 1);
    assert_eq!(h.topics(), 0);
    h.text(0, fin(5));
    assert_eq!(
        h.out().notices.len(),
        1,
        "the other lane's final is not delivered"
    );
}

#[test]
fn a_duplicate_response_is_ignored() {
    let mut h = H::eth();
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(HEADS, 1);
    let id = req_id(&sent(&acts)[0].1);
    h.text(0, ok(id, "0xa"));
    let again = h.text(0, ok(id, "0xb"));
    assert!(again.is_empty());
    assert_eq!(h.out().one().len(), 1);
    h.text(0, head("0xb", 1));
    assert!(h.out().notices.is_empty(), "only the first id counts");
}

#[test]
fn quiet_connections_are_pinged_and_silent_ones_replaced() {
    let mut h = H::eth();
    let acts = h.actions();
    h.connect(&acts, 0);
    assert!(h.tick(9_900).is_empty());
    assert_eq!(h.tick(10_000), vec![Action::Ping { slot: SlotId(0) }]);
    let generation = h.generation(0);
    h.at(15_000);
    h.ev(Event::Activity {
        slot: SlotId(0),
        generation,
    }); // the pong
    assert!(
        h.tick(24_900).is_empty(),
        "heard from under 10 s ago: no ping"
    );
    assert!(!dropped(&h.tick(44_900), 0));
    assert!(dropped(&h.tick(45_000), 0), "silent for 30 s");
}

#[test]
fn frames_of_a_replaced_connection_are_ignored() {
    let mut h = H::with_heads();
    let old = h.generation(0);
    let acts = h.lose(0);
    h.connect(&acts, 0);
    h.ev(Event::Text {
        slot: SlotId(0),
        generation: old,
        text: Utf8Bytes::from(head("0xa", 3)),
    });
    assert!(h.out().notices.is_empty());
    let lost = Event::Lost {
        slot: SlotId(0),
        generation: old,
        reason: "late".into(),
    };
    assert!(h.ev(lost).is_empty());
}

#[test]
fn shutdown_answers_calls_unsubscribes_and_closes() {
    let mut h = H::with_heads();
    h.call(4);
    let acts = h.ev(Event::Shutdown);
    assert_eq!(h.out().answered, vec![(4, Err(HubError::ShuttingDown))]);
    let s = sent(&acts);
    assert_eq!(s[0].1["method"], "eth_unsubscribe");
    assert_eq!(acts.last(), Some(&Action::Close { slot: SlotId(0) }));
    assert_eq!(h.metrics.upstream_connections.load(Relaxed), 0);
    assert_eq!(h.topics(), 0);
}

#[test]
fn content_routed_pushes_go_once_per_group_and_stop_at_release() {
    let mut h = H::connected(DialectKind::Xrpl);
    let msg =
        r#"{"id":1,"command":"subscribe","streams":["transactions","transactions_proposed"]}"#;
    let keys = h.keys(msg);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((7, false)),
        reply: 1,
        since: None,
    });
    let s = sent(&acts);
    assert_eq!(s.len(), 1, "one batched subscribe");
    let id = req_id(&s[0].1);
    h.text(0, xrpl_ok(id));
    assert_eq!(h.out().subscribed[0].2.len(), 2);
    let tx = |hash: &str| {
        format!(
            r#"{{"type":"transaction","validated":true,"hash":"{hash}","ledger_index":5,"engine_result":"tesSUCCESS","meta":{{}}}}"#
        )
    };
    h.text(0, tx("A1"));
    assert_eq!(h.out().pushes.len(), 2, "one copy per matched group");
    h.text(0, tx("A1"));
    assert_eq!(h.out().pushes.len(), 2, "the node's repeat is dropped");
    let validated = (h.core.table.on_slot(SlotId(0)))
        .find(|(_, t)| format!("{:?}", t.key).contains("\"transactions\""))
        .map(|(id, _)| id)
        .unwrap();
    h.ev(Event::Release {
        topic: validated,
        mailbox: Some(7),
    });
    h.text(0, tx("B2"));
    assert_eq!(h.out().pushes.len(), 3, "only the group still held");
}

#[test]
fn an_extra_connection_opens_at_the_cap_and_closes_when_idle() {
    let mut s = settings(DialectKind::Ethereum);
    s.topics_per_upstream_connection = 1;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(HEADS, 1);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xa"));
    let logs = r#"{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["logs",{}]}"#;
    let acts = h.subscribe(logs, 2);
    assert!(sent(&acts).is_empty());
    let (_, upstream, delay) = connect_of(&acts, 1);
    assert_eq!((upstream, delay), (0, Duration::ZERO));
    let acts = h.connect(&acts, 1);
    let (slot, req) = sent(&acts)[0].clone();
    assert_eq!(slot, 1, "the new topic subscribes on the new connection");
    h.text(1, ok(req_id(&req), "0xb"));
    assert_eq!(h.metrics.upstream_connections.load(Relaxed), 2);
    let topic = h.out().one()[1].1.as_ref().unwrap().topic;
    h.ev(Event::Release {
        topic,
        mailbox: None,
    });
    let acts = h.tick(2_000);
    let (slot, unsub) = sent(&acts)[0].clone();
    assert_eq!(
        (slot, unsub["method"].as_str()),
        (1, Some("eth_unsubscribe"))
    );
    assert!(h.tick(2_100).is_empty(), "the unsubscribe is in flight");
    h.text(
        1,
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":true}}"#,
            req_id(&unsub)
        ),
    );
    assert_eq!(h.tick(2_200), vec![Action::Close { slot: SlotId(1) }]);
    assert_eq!(h.metrics.upstream_connections.load(Relaxed), 1);
}

/// Heights of the (non-gap) frames in `frames`, and the gap ranges.
fn heights(frames: &[(String, bool)]) -> (Vec<u64>, Vec<(Value, Value)>) {
    let mut hs = Vec::new();
    let mut gaps = Vec::new();
    for (f, gap) in frames {
        let v: Value = serde_json::from_str(f).unwrap();
        if *gap {
            let r = &v["params"]["result"];
            gaps.push((r["fromBlock"].clone(), r["toBlock"].clone()));
        } else {
            let n = v["params"]["result"]["number"].as_str().unwrap();
            hs.push(u64::from_str_radix(&n[2..], 16).unwrap());
        }
    }
    (hs, gaps)
}

#[test]
fn since_joins_with_the_history_after_n_then_the_live_ring_without_gap_or_duplicate() {
    let mut h = H::with_heads();
    for n in 10..=20 {
        h.text(0, head("0xa", n));
    }
    // Resume after 14: 15..=20 from the history, in the same step as the ring is taken.
    h.subscribe_since(HEADS, 2, 14);
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    assert_eq!(heights(&sub.history), ((15..=20).collect(), vec![]));
    let public = sub.public_id.clone();
    assert!(sub.history.iter().all(|(f, _)| f.contains(&public)));
    // The next live notification goes on the ring: 21 follows 20 at the seam.
    let before = h.out().notices.len();
    h.text(0, head("0xa", 21));
    let live: Vec<_> = h.out().notices[before..].to_vec();
    assert_eq!(live.len(), 1);
    assert!(live[0].1.contains("\"0x15\""));
    assert_eq!(h.metrics.history_replayed.load(Relaxed), 6);
    // Up to date already: nothing replayed, no gap.
    h.subscribe_since(HEADS, 3, 21);
    let (_, Ok(sub)) = h.out().one()[2].clone() else {
        panic!("joined")
    };
    assert!(sub.history.is_empty());
}

#[test]
fn history_is_bounded_and_an_older_since_gets_the_gap_notice_first() {
    let mut s = settings(DialectKind::Ethereum);
    s.history_len = 4;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(HEADS, 1);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xa"));
    for n in 1..=10 {
        h.text(0, head("0xa", n));
    }
    let t = h.core.table.by_key_data(&h.keys(HEADS)[0]).unwrap();
    assert_eq!(t.history.len(), 4);
    h.subscribe_since(HEADS, 2, 2);
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    let (hs, gaps) = heights(&sub.history);
    assert_eq!(hs, vec![7, 8, 9, 10]);
    assert_eq!(gaps, vec![(Value::from("0x3"), Value::from("0x6"))]);
    assert!(sub.history[0].1, "the gap notice comes first");
}

#[test]
fn a_replaced_connection_clears_the_history_and_a_new_topic_announces_an_open_gap() {
    let mut h = H::with_heads();
    for n in 1..=5 {
        h.text(0, head("0xa", n));
    }
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xb"));
    h.text(0, head("0xb", 9));
    h.subscribe_since(HEADS, 2, 3);
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    let (hs, gaps) = heights(&sub.history);
    assert_eq!(hs, vec![9]);
    assert_eq!(gaps, vec![(Value::from("0x4"), Value::from("0x8"))]);
    // A topic made by the resuming subscribe has no history: the gap is open-ended.
    let logs = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["logs",{}]}"#;
    let acts = h.subscribe_since(logs, 3, 3);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xc"));
    let (_, Ok(sub)) = h.out().one()[2].clone() else {
        panic!("joined")
    };
    let (hs, gaps) = heights(&sub.history);
    assert!(hs.is_empty());
    assert_eq!(gaps, vec![(Value::from("0x4"), Value::Null)]);
}

#[test]
fn without_since_nothing_is_replayed_and_history_len_0_keeps_nothing() {
    let mut s = settings(DialectKind::Ethereum);
    s.history_len = 0;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(HEADS, 1);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xa"));
    h.text(0, head("0xa", 1));
    let t = h.core.table.by_key_data(&h.keys(HEADS)[0]).unwrap();
    assert_eq!(t.history.len(), 0);
    h.subscribe(HEADS, 2);
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    assert!(sub.history.is_empty());
}

fn head_h(sub: &str, n: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{sub}","result":{{"number":"0x{n:x}","hash":"0xh{n}"}}}}}}"#
    )
}
fn log_at(sub: &str, n: u64, i: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{sub}","result":{}}}}}"#,
        log_json(n, i)
    )
}
fn log_json(n: u64, i: u64) -> String {
    format!(
        r#"{{"address":"0x00000000000000000000000000000000000000ab","blockNumber":"0x{n:x}","blockHash":"0xh{n}","logIndex":"0x{i:x}","removed":false}}"#
    )
}
fn answer(id: u64, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}
/// The requests of `method` in `acts`: (id, params).
fn calls_of(acts: &[Action], method: &str) -> Vec<(u64, Value)> {
    (sent(acts).into_iter())
        .filter(|(_, v)| v["method"] == method)
        .map(|(_, v)| (req_id(&v), v["params"].clone()))
        .collect()
}
/// The notices of a topic fan from `start` on: ("g" for a gap notice with its range, or
/// the height and log index of a notification).
fn delivered(h: &H, start: usize) -> Vec<String> {
    (h.out().notices[start..].iter())
        .map(|(_, f, gap)| {
            let v: Value = serde_json::from_str(f).unwrap();
            let r = &v["params"]["result"];
            if *gap {
                format!("g{}-{}", r["fromBlock"], r["toBlock"])
            } else if r["logIndex"].is_string() {
                format!(
                    "{}/{}{}",
                    r["blockNumber"].as_str().unwrap(),
                    r["logIndex"].as_str().unwrap(),
                    if r["removed"] == true { " removed" } else { "" }
                )
            } else {
                r["number"].as_str().unwrap().to_owned()
            }
        })
        .collect()
}

/// Slot 0 up with backfill on (at most `max` blocks) and `msg` subscribed as `0xa`.
fn backfilling(msg: &str, max: u64) -> H {
    let mut s = settings(DialectKind::Ethereum);
    s.backfill = true;
    s.backfill_max_blocks = max;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(msg, 1);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xa"));
    h
}

/// Answer the reorg check in `acts` (the block at the height delivered last) with the
/// block delivered there: no reorg. The actions after that.
fn confirm(h: &mut H, acts: &[Action]) -> Vec<Action> {
    let check = calls_of(acts, "eth_getBlockByNumber");
    assert_eq!(check.len(), 1, "one reorg check first");
    let n =
        u64::from_str_radix(check[0].1[0].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    h.text(
        0,
        answer(
            check[0].0,
            &format!(r#"{{"number":"0x{n:x}","hash":"0xh{n}"}}"#),
        ),
    )
}

/// Lose slot 0 and resubscribe on a new connection as `0xb`: the actions after that.
fn switch(h: &mut H) -> Vec<Action> {
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xb"))
}

#[test]
fn backfill_fetches_the_missed_heads_up_to_the_cap_and_dedupes_the_live_ones() {
    let mut h = backfilling(HEADS, 3);
    h.text(0, head_h("0xa", 10));
    h.text(0, head_h("0xa", 11));
    let acts = switch(&mut h);
    let head = calls_of(&acts, "eth_blockNumber");
    assert_eq!(head.len(), 1, "the node's height is asked first");
    let start = h.out().notices.len();
    let acts = h.text(0, answer(head[0].0, r#""0x10""#));
    let acts = confirm(&mut h, &acts);
    // 12..=16 missed; the cap keeps the newest 3, the rest is announced.
    let fetch = calls_of(&acts, "eth_getBlockByNumber");
    let heights: Vec<_> = fetch.iter().map(|(_, p)| p[0].clone()).collect();
    assert_eq!(heights, vec![json!("0xe"), json!("0xf"), json!("0x10")]);
    // Live heads meanwhile are held; 16 also comes back from the fetch.
    h.text(0, head_h("0xb", 16));
    h.text(0, head_h("0xb", 17));
    assert_eq!(
        h.out().notices.len(),
        start,
        "nothing goes out before the backfill"
    );
    let block = |n: u64| {
        format!(
            r#"{{"number":"0x{n:x}","hash":"0xh{n}","size":"0x1","transactions":[],"uncles":[]}}"#
        )
    };
    h.text(0, answer(fetch[1].0, &block(15)));
    h.text(0, answer(fetch[0].0, &block(14)));
    h.text(0, answer(fetch[2].0, &block(16)));
    assert_eq!(
        delivered(&h, start),
        ["g\"0xc\"-\"0xd\"", "0xe", "0xf", "0x10", "0x11"],
        "in order, the gap first, 16 once"
    );
    // A backfilled head reads exactly as a live one (header fields only, the public id).
    let public = h.out().one()[0].1.clone().unwrap().public_id;
    assert_eq!(
        h.out().notices[start + 1].1,
        format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":{public},"result":{{"number":"0xe","hash":"0xh14"}}}}}}"#
        )
    );
    assert_eq!(h.metrics.backfilled.load(Relaxed), 3);
    // Live again: straight through.
    h.text(0, head_h("0xb", 18));
    assert_eq!(
        delivered(&h, start).last().map(String::as_str),
        Some("0x12")
    );
}

#[test]
fn backfill_fetches_logs_over_the_range_with_the_filter_once_each() {
    let logs = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["logs",{"address":"0x00000000000000000000000000000000000000ab"}]}"#;
    let mut h = backfilling(logs, 128);
    h.text(0, log_at("0xa", 10, 0));
    let acts = switch(&mut h);
    let head = calls_of(&acts, "eth_blockNumber");
    let start = h.out().notices.len();
    let acts = h.text(0, answer(head[0].0, r#""0xc""#));
    let acts = confirm(&mut h, &acts);
    let get = calls_of(&acts, "eth_getLogs");
    assert_eq!(get.len(), 1);
    assert_eq!(
        get[0].1[0],
        json!({"address":["0x00000000000000000000000000000000000000ab"],"fromBlock":"0xa","toBlock":"0xc"}),
        "the topic's filter (canonical), over the range"
    );
    h.text(0, log_at("0xb", 12, 0)); // live, held
    let all = [(10, 0), (10, 1), (11, 0), (12, 0)]
        .map(|(n, i)| log_json(n, i))
        .join(",");
    h.text(0, answer(get[0].0, &format!("[{all}]")));
    assert_eq!(delivered(&h, start), ["0xa/0x1", "0xb/0x0", "0xc/0x0"]);
    assert_eq!(h.metrics.backfilled.load(Relaxed), 3);
}

#[test]
fn unanswered_backfill_is_announced_and_backfill_false_fetches_nothing() {
    let mut h = backfilling(HEADS, 128);
    h.text(0, head_h("0xa", 10));
    let acts = switch(&mut h);
    let head = calls_of(&acts, "eth_blockNumber");
    let start = h.out().notices.len();
    let acts = h.text(0, answer(head[0].0, r#""0xc""#));
    let acts = confirm(&mut h, &acts);
    let fetch = calls_of(&acts, "eth_getBlockByNumber");
    assert_eq!(fetch.len(), 3);
    // 10 (delivered, fetched again) is no gap; 11 unanswered is.
    h.text(0, answer(fetch[0].0, "null"));
    h.text(
        0,
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32000,"message":"no"}}}}"#,
            fetch[1].0
        ),
    );
    h.text(0, answer(fetch[2].0, r#"{"number":"0xc","hash":"0xh12"}"#));
    assert_eq!(delivered(&h, start), ["g\"0xb\"-\"0xb\"", "0xc"]);
    // backfill = false: a switch asks nothing.
    let mut h = H::with_heads();
    h.text(0, head_h("0xa", 10));
    let acts = switch(&mut h);
    assert!(calls_of(&acts, "eth_blockNumber").is_empty());
}

#[test]
fn since_replays_a_solana_slot_stream_from_its_history() {
    let mut h = H::connected(DialectKind::Solana);
    let msg = r#"{"jsonrpc":"2.0","id":1,"method":"slotSubscribe"}"#;
    let acts = h.subscribe(msg, 1);
    let id = req_id(&sent(&acts)[0].1);
    h.text(0, format!(r#"{{"jsonrpc":"2.0","id":{id},"result":3}}"#));
    for slot in 70..=75 {
        h.text(
            0,
            format!(r#"{{"jsonrpc":"2.0","method":"slotNotification","params":{{"result":{{"parent":{},"root":40,"slot":{slot}}},"subscription":3}}}}"#, slot - 1),
        );
    }
    h.subscribe_since(msg, 2, 72);
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    let slots: Vec<u64> = (sub.history.iter())
        .map(|(f, _)| {
            serde_json::from_str::<Value>(f).unwrap()["params"]["result"]["slot"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(slots, vec![73, 74, 75]);
}

#[test]
fn a_backfill_holding_too_much_is_cut_short_and_announced() {
    let mut h = backfilling(HEADS, 128);
    h.text(0, head_h("0xa", 10));
    let acts = switch(&mut h);
    let head = calls_of(&acts, "eth_blockNumber");
    let start = h.out().notices.len();
    let acts = h.text(0, answer(head[0].0, r#""0xc""#));
    let acts = confirm(&mut h, &acts);
    let fetch = calls_of(&acts, "eth_getBlockByNumber");
    // The node answers none of it, while live heads keep coming: held up to the bound.
    for n in 13..13 + 16_384 {
        h.text(0, head_h("0xb", n));
    }
    let got = delivered(&h, start);
    assert_eq!(got.len(), 1 + 16_384, "the held ones all went out at once");
    assert_eq!(
        got[0], "g\"0xb\"-\"0xc\"",
        "what the backfill did not bring"
    );
    assert_eq!(got[1], "0xd");
    // Late answers to the abandoned backfill change nothing.
    h.text(0, answer(fetch[1].0, r#"{"number":"0xb","hash":"0xh11"}"#));
    assert_eq!(delivered(&h, start).len(), 1 + 16_384);
}

/// The new branch's log `i` at height `n` (block hash `0xx{n}`).
fn fork_log(n: u64, i: u64) -> String {
    log_json(n, i).replace(&format!("0xh{n}"), &format!("0xx{n}"))
}

/// Walk the reorg checks of `acts` down: heights above `fork` answer another block, `fork`
/// the one delivered. The actions after the last answer.
fn walk_checks(h: &mut H, acts: Vec<Action>, fork: u64) -> Vec<Action> {
    let mut acts = acts;
    loop {
        let check = calls_of(&acts, "eth_getBlockByNumber");
        assert_eq!(check.len(), 1, "the checks go one at a time");
        let n = u64::from_str_radix(check[0].1[0].as_str().unwrap().trim_start_matches("0x"), 16)
            .unwrap();
        let hash = if n > fork {
            format!("0xx{n}")
        } else {
            format!("0xh{n}")
        };
        acts = h.text(
            0,
            answer(
                check[0].0,
                &format!(r#"{{"number":"0x{n:x}","hash":"{hash}"}}"#),
            ),
        );
        if n <= fork {
            return acts;
        }
    }
}

#[test]
fn a_reorg_across_a_switch_retracts_the_orphaned_logs_then_delivers_the_new_branch() {
    let logs = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["logs",{"address":"0x00000000000000000000000000000000000000ab"}]}"#;
    let mut h = backfilling(logs, 128);
    for (n, i) in [(10, 0), (11, 0), (11, 1), (12, 0)] {
        h.text(0, log_at("0xa", n, i));
    }
    let acts = switch(&mut h);
    let head = calls_of(&acts, "eth_blockNumber");
    let start = h.out().notices.len();
    let acts = h.text(0, answer(head[0].0, r#""0xd""#));
    // 12 and 11 are another block on the new node; 10 is the same: the fork is above 10.
    let acts = walk_checks(&mut h, acts, 10);
    let get = calls_of(&acts, "eth_getLogs");
    assert_eq!(
        (&get[0].1[0]["fromBlock"], &get[0].1[0]["toBlock"]),
        (&json!("0xb"), &json!("0xd")),
        "the new branch, from above the fork"
    );
    h.text(0, log_at("0xb", 13, 0).replace("0xh13", "0xx13")); // live, held
    let branch = [(11, 0), (12, 0), (13, 0)]
        .map(|(n, i)| fork_log(n, i))
        .join(",");
    h.text(0, answer(get[0].0, &format!("[{branch}]")));
    assert_eq!(
        delivered(&h, start),
        [
            "0xb/0x0 removed",
            "0xb/0x1 removed",
            "0xc/0x0 removed",
            "0xb/0x0",
            "0xc/0x0",
            "0xd/0x0"
        ],
        "the orphaned logs retracted (oldest first, as delivered), then the new branch once"
    );
    // A retracted log is the delivered one, byte for byte, with removed: true.
    let public = h.out().one()[0].1.clone().unwrap().public_id;
    assert_eq!(
        h.out().notices[start].1,
        format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":{public},"result":{}}}}}"#,
            log_json(11, 0).replace("false", "true")
        )
    );
    assert_eq!(h.metrics.reorg_retracted.load(Relaxed), 3);
    // The new branch is what is remembered now: another switch finds no reorg at 13.
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    let acts = h.text(0, ok(req_id(&sent(&acts)[0].1), "0xc"));
    let head = calls_of(&acts, "eth_blockNumber");
    let acts = h.text(0, answer(head[0].0, r#""0xd""#));
    let check = calls_of(&acts, "eth_getBlockByNumber");
    assert_eq!(check[0].1[0], json!("0xd"));
}

#[test]
fn a_reorg_across_a_switch_gives_heads_clients_the_new_branch() {
    let mut h = backfilling(HEADS, 128);
    for n in 10..=12 {
        h.text(0, head_h("0xa", n));
    }
    let acts = switch(&mut h);
    let head = calls_of(&acts, "eth_blockNumber");
    let start = h.out().notices.len();
    // The new node is at the same height, on another branch from 12 on.
    let acts = h.text(0, answer(head[0].0, r#""0xc""#));
    let acts = walk_checks(&mut h, acts, 11);
    let fetch = calls_of(&acts, "eth_getBlockByNumber");
    assert_eq!(fetch.len(), 1);
    assert_eq!(fetch[0].1[0], json!("0xc"));
    h.text(0, answer(fetch[0].0, r#"{"number":"0xc","hash":"0xx12"}"#));
    assert_eq!(delivered(&h, start), ["0xc"]);
    let v: Value = serde_json::from_str(&h.out().notices[start].1).unwrap();
    assert_eq!(v["params"]["result"]["hash"], "0xx12");
    assert_eq!(h.metrics.reorg_retracted.load(Relaxed), 0);
}

/// Identical read calls in flight together go upstream once and every caller gets the
/// answer; once answered, the next one goes upstream again; calls that send are never
/// merged.
#[test]
fn identical_read_calls_in_flight_are_sent_once() {
    let mut h = H::eth();
    let acts = h.actions();
    h.connect(&acts, 0);
    let first = sent(&h.call(1));
    assert_eq!(first.len(), 1);
    assert!(
        sent(&h.call(2)).is_empty(),
        "the same call in flight: not sent again"
    );
    let id = req_id(&first[0].1);
    let answer = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x2a"}}"#);
    h.text(0, answer.clone());
    assert_eq!(
        h.out().answered,
        vec![(1, Ok(answer.clone())), (2, Ok(answer))],
        "both callers answered (each session splices its own id)"
    );
    assert_eq!(h.metrics.coalesced_calls.load(Relaxed), 1);
    assert_eq!(sent(&h.call(3)).len(), 1, "answered: the next call is sent");
    let send = |h: &mut H, reply| {
        let call = Call {
            method: "eth_sendRawTransaction".into(),
            params: Some(r#"["0x01"]"#.into()),
            class: 0,
        };
        sent(&h.ev(Event::Call {
            call,
            reply: Some(reply),
        }))
        .len()
    };
    assert_eq!(
        send(&mut h, 4) + send(&mut h, 5),
        2,
        "sends are never merged"
    );
}

/// Slot 0 up with backfill (cap `max`) and a history of `len`; heads subscribed as `0xa`
/// and `from..=to` delivered.
fn resumable(max: u64, len: usize, from: u64, to: u64) -> H {
    let mut s = settings(DialectKind::Ethereum);
    s.backfill = true;
    s.backfill_max_blocks = max;
    s.history_len = len;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let acts = h.subscribe(HEADS, 1);
    h.text(0, ok(req_id(&sent(&acts)[0].1), "0xa"));
    for n in from..=to {
        h.text(0, head_h("0xa", n));
    }
    h
}

#[test]
fn since_older_than_the_history_is_fetched_from_the_node_within_the_cap_then_the_history() {
    let mut h = resumable(3, 4, 10, 17); // the history holds 14..=17
    let acts = h.subscribe_since(HEADS, 2, 9);
    assert_eq!(h.out().one().len(), 1, "answered only once fetched");
    let head = calls_of(&acts, "eth_blockNumber");
    assert_eq!(head.len(), 1);
    h.text(0, head_h("0xa", 18)); // live meanwhile: the history now holds 15..=18
    let acts = h.text(0, answer(head[0].0, r#""0x12""#));
    // Below the history: 10..=14; the cap fetches the newest 3, announces 10..=11.
    let fetch = calls_of(&acts, "eth_getBlockByNumber");
    let asked: Vec<_> = fetch.iter().map(|(_, p)| p[0].clone()).collect();
    assert_eq!(asked, [json!("0xc"), json!("0xd"), json!("0xe")]);
    for (id, p) in fetch.iter().rev() {
        let n = p[0].as_str().unwrap();
        let n = u64::from_str_radix(&n[2..], 16).unwrap();
        h.text(
            0,
            answer(
                *id,
                &format!(r#"{{"number":"0x{n:x}","hash":"0xh{n}","size":"0x1"}}"#),
            ),
        );
    }
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    assert_eq!(
        heights(&sub.history),
        (
            (12..=18).collect(),
            vec![(Value::from("0xa"), Value::from("0xb"))]
        ),
        "the gap beyond the cap, the fetched ones, then the history: no hole, no repeat"
    );
    assert!(sub.history[0].1 && !sub.history[1].1);
    assert!(
        !sub.history[1].0.contains("size"),
        "a fetched head reads as a live one"
    );
    assert_eq!(h.metrics.backfilled.load(Relaxed), 3);
    assert_eq!(h.metrics.history_replayed.load(Relaxed), 4);
}

#[test]
fn since_fetch_cut_by_a_lost_connection_answers_with_the_gap_and_the_history() {
    let mut h = resumable(128, 4, 10, 17);
    let acts = h.subscribe_since(HEADS, 2, 9);
    assert_eq!(calls_of(&acts, "eth_blockNumber").len(), 1);
    h.lose(0);
    h.tick(100);
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    assert_eq!(
        heights(&sub.history),
        (
            (14..=17).collect(),
            vec![(Value::from("0xa"), Value::from("0xd"))]
        )
    );
    // Within the history: nothing asked of the node.
    let mut h = resumable(128, 4, 10, 17);
    let acts = h.subscribe_since(HEADS, 2, 14);
    assert!(calls_of(&acts, "eth_blockNumber").is_empty());
    assert_eq!(h.out().one().len(), 2);
}

const ACCOUNT: &str = "rH3PxjJPrrkvsATddBXkayjAyWR8xigaE8";

/// A validated transaction of ACCOUNT in ledger `n` as rippled streams it (API v2).
fn xrpl_tx(n: u64, hash: &str) -> Value {
    json!({"close_time_iso": "2024-11-01T23:59:01Z", "engine_result": "tesSUCCESS",
        "engine_result_code": 0,
        "engine_result_message": "The transaction was applied. Only final in a validated ledger.",
        "hash": hash, "ledger_hash": format!("H{n}"), "ledger_index": n,
        "meta": {"AffectedNodes": [{"ModifiedNode": {"FinalFields": {"Account": ACCOUNT},
            "LedgerEntryType": "AccountRoot"}}], "TransactionIndex": 0,
            "TransactionResult": "tesSUCCESS"},
        "status": "closed", "tx_json": {"Account": ACCOUNT, "date": 1},
        "type": "transaction", "validated": true})
}
fn xrpl_closed(n: u64) -> Value {
    json!({"fee_base": 10, "ledger_hash": format!("H{n}"), "ledger_index": n, "ledger_time": n,
        "network_id": 1, "reserve_base": 1, "reserve_inc": 1, "txn_count": 1,
        "type": "ledgerClosed", "validated_ledgers": format!("1-{n}")})
}
fn xrpl_answer(id: u64, result: Value) -> String {
    json!({"id": id, "status": "success", "type": "response", "result": result}).to_string()
}

#[test]
fn xrpl_backfill_fills_the_ledgers_missed_in_order_and_skips_what_a_session_got() {
    let mut s = settings(DialectKind::Xrpl);
    s.backfill = true;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let msg = format!(
        r#"{{"id":1,"command":"subscribe","streams":["ledger"],"accounts":["{ACCOUNT}"],"api_version":2}}"#
    );
    let keys = h.keys(&msg);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((7, false)),
        reply: 1,
        since: None,
    });
    h.text(0, xrpl_ok(req_id(&sent(&acts)[0].1)));
    h.text(0, xrpl_closed(5).to_string());
    h.text(0, xrpl_tx(5, "T5").to_string());
    assert_eq!(h.out().pushes.len(), 2);
    // Switch: resubscribed; the node's validated ledger is asked first.
    let acts = h.lose(0);
    let acts = h.connect(&acts, 0);
    let acts = h.text(0, xrpl_ok(req_id(&sent(&acts)[0].1)));
    let head = sent(&acts);
    assert_eq!(head.len(), 1, "{head:?}");
    assert_eq!(head[0].1["ledger_index"], "validated");
    // Live meanwhile (held): ledger 8 and its transaction.
    h.text(0, xrpl_closed(8).to_string());
    h.text(0, xrpl_tx(8, "T8").to_string());
    assert_eq!(h.out().pushes.len(), 2, "held during the backfill");
    let acts = h.text(
        0,
        xrpl_answer(
            req_id(&head[0].1),
            json!({"ledger_index": 8, "validated": true, "ledger": {}}),
        ),
    );
    let asks = sent(&acts);
    let ledgers: Vec<u64> = (asks.iter())
        .filter(|(_, v)| v["command"] == "ledger")
        .map(|(_, v)| v["ledger_index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ledgers,
        [5, 6, 7, 8],
        "from the ledger delivered last, again"
    );
    let tx = asks
        .iter()
        .find(|(_, v)| v["command"] == "account_tx")
        .unwrap();
    assert_eq!(
        (&tx.1["ledger_index_min"], &tx.1["ledger_index_max"]),
        (&json!(5), &json!(8))
    );
    let entry = |n: u64, hash: &str| {
        let live = xrpl_tx(n, hash);
        json!({"close_time_iso": live["close_time_iso"], "hash": hash, "ledger_hash": live["ledger_hash"],
            "ledger_index": n, "meta": live["meta"], "tx_json": live["tx_json"], "validated": true})
    };
    h.text(
        0,
        xrpl_answer(
            req_id(&tx.1),
            json!({"account": ACCOUNT, "transactions": [entry(5, "T5"), entry(7, "T7"), entry(8, "T8")]}),
        ),
    );
    for (_, v) in asks.iter().filter(|(_, v)| v["command"] == "ledger") {
        let n = v["ledger_index"].as_u64().unwrap();
        let ledger = json!({"ledger": {"ledger_index": n, "ledger_hash": format!("H{n}"),
            "close_time": n, "transactions": ["X"]}, "ledger_index": n, "validated": true});
        h.text(0, xrpl_answer(req_id(v), ledger));
    }
    let got: Vec<String> = (h.out().pushes[2..].iter())
        .map(|(mb, f)| {
            assert_eq!(*mb, 7);
            let v: Value = serde_json::from_str(f).unwrap();
            match v["type"].as_str().unwrap() {
                "ledgerClosed" => format!("L{}", v["ledger_index"]),
                _ => v["hash"].as_str().unwrap().to_string(),
            }
        })
        .collect();
    assert_eq!(
        got,
        ["L6", "L7", "T7", "L8", "T8"],
        "in ledger order, the ledger first; what was delivered before and the held copies not again"
    );
    // The fetched transaction reads exactly as the live one.
    assert_eq!(h.out().pushes[4].1, xrpl_tx(7, "T7").to_string());
    assert_eq!(h.metrics.backfilled.load(Relaxed), 5);
    // Live again: straight through.
    h.text(0, xrpl_closed(9).to_string());
    assert_eq!(h.out().pushes.len(), 8);
}

/// What session `mb` got, as "L<n>" for a `ledgerClosed`, the hash for a transaction,
/// "gap a-b" for a gap notice.
fn xrpl_got(h: &H, mb: u64) -> Vec<String> {
    (h.out().pushes.iter())
        .filter(|(m, _)| *m == mb)
        .map(|(_, f)| {
            let v: Value = serde_json::from_str(f).unwrap();
            match v["type"].as_str() {
                Some("ledgerClosed") => format!("L{}", v["ledger_index"]),
                Some("transaction") => v["hash"].as_str().unwrap().to_string(),
                _ => format!("gap {f}"),
            }
        })
        .collect()
}

/// Answers `asks` (the `ledger` and `account_tx` requests of a fetch) from a chain whose
/// every ledger `n` holds transaction "T<n>" of ACCOUNT, and what they ask next, until
/// nothing more is asked.
fn xrpl_answer_fetch(h: &mut H, asks: &[(usize, Value)]) {
    let mut asks = asks.to_vec();
    while let Some((_, v)) = asks.pop() {
        let id = req_id(&v);
        if v["command"] == "ledger" {
            let n = v["ledger_index"].as_u64().unwrap();
            let ledger = json!({"ledger": {"ledger_index": n, "ledger_hash": format!("H{n}"),
                "close_time": n, "transactions": ["X"]}, "ledger_index": n, "validated": true});
            asks.extend(sent(&h.text(0, xrpl_answer(id, ledger))));
        } else if v["command"] == "account_tx" {
            let (lo, hi) = (
                v["ledger_index_min"].as_u64().unwrap(),
                v["ledger_index_max"].as_u64().unwrap(),
            );
            let txs: Vec<Value> = (lo..=hi)
                .map(|n| {
                    let live = xrpl_tx(n, &format!("T{n}"));
                    json!({"close_time_iso": live["close_time_iso"], "hash": live["hash"],
                        "ledger_hash": live["ledger_hash"], "ledger_index": n, "meta": live["meta"],
                        "tx_json": live["tx_json"], "validated": true})
                })
                .collect();
            let answer = xrpl_answer(id, json!({"account": ACCOUNT, "transactions": txs}));
            asks.extend(sent(&h.text(0, answer)));
        }
    }
}

fn xrpl_resume_harness(max: u64) -> (H, String) {
    let mut s = settings(DialectKind::Xrpl);
    s.backfill = true;
    s.backfill_max_ledgers = max;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let msg = format!(
        r#"{{"id":1,"command":"subscribe","streams":["ledger"],"accounts":["{ACCOUNT}"],"api_version":2}}"#
    );
    // Session 7 holds the keys live; ledgers 5 and 6 go by.
    let keys = h.keys(&msg);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((7, false)),
        reply: 1,
        since: None,
    });
    h.text(0, xrpl_ok(req_id(&sent(&acts)[0].1)));
    for n in 5..=6 {
        h.text(0, xrpl_closed(n).to_string());
        h.text(0, xrpl_tx(n, &format!("T{n}")).to_string());
    }
    (h, msg)
}

#[test]
fn xrpl_since_fetches_after_the_ledger_and_joins_the_live_stream_without_gap_or_duplicate() {
    let (mut h, msg) = xrpl_resume_harness(256);
    // Session 8 reconnects with `?since=3`: the validated ledger is asked at once.
    let keys = h.keys(&msg);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((8, true)),
        reply: 2,
        since: Some(3),
    });
    let head = sent(&acts);
    assert_eq!(head.len(), 1, "{head:?}");
    assert_eq!(head[0].1["ledger_index"], "validated");
    // Ledger 7 goes live meanwhile: session 7 gets it, session 8's copy is held.
    h.text(0, xrpl_closed(7).to_string());
    h.text(0, xrpl_tx(7, "T7").to_string());
    assert!(xrpl_got(&h, 8).is_empty(), "held during the fetch");
    // The node has validated 8 already; its messages are not yet on the stream.
    let acts = h.text(
        0,
        xrpl_answer(
            req_id(&head[0].1),
            json!({"ledger_index": 8, "validated": true, "ledger": {}}),
        ),
    );
    let asks = sent(&acts);
    let ledgers: Vec<u64> = (asks.iter())
        .filter(|(_, v)| v["command"] == "ledger")
        .map(|(_, v)| v["ledger_index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ledgers,
        [4, 5, 6, 7, 8],
        "after ledger 3, up to the validated one"
    );
    let tx = (asks.iter())
        .find(|(_, v)| v["command"] == "account_tx")
        .unwrap();
    assert_eq!(
        (&tx.1["ledger_index_min"], &tx.1["ledger_index_max"]),
        (&json!(4), &json!(8))
    );
    xrpl_answer_fetch(&mut h, &asks);
    let got = xrpl_got(&h, 8);
    assert_eq!(
        got,
        ["L4", "T4", "L5", "T5", "L6", "T6", "L7", "T7", "L8", "T8"],
        "in ledger order, the held live copies of ledger 7 not again"
    );
    // Ledger 8 reaches the stream after the fetch gave it: the seam filter skips it.
    h.text(0, xrpl_closed(8).to_string());
    h.text(0, xrpl_tx(8, "T8").to_string());
    h.text(0, xrpl_closed(9).to_string());
    h.text(0, xrpl_tx(9, "T9").to_string());
    let got = xrpl_got(&h, 8);
    assert_eq!(
        &got[10..],
        ["L9", "T9"],
        "no duplicate at the seam, then live"
    );
    assert!(
        h.core.since_routed.is_empty(),
        "the seam is dropped once passed"
    );
    // The other session saw the live stream only, unchanged.
    assert_eq!(
        xrpl_got(&h, 7),
        ["L5", "T5", "L6", "T6", "L7", "T7", "L8", "T8", "L9", "T9"]
    );
}

#[test]
fn xrpl_since_beyond_the_cap_is_announced_and_the_rest_fetched() {
    let (mut h, msg) = xrpl_resume_harness(3);
    let keys = h.keys(&msg);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((8, true)),
        reply: 2,
        since: Some(1),
    });
    let head = sent(&acts);
    let acts = h.text(
        0,
        xrpl_answer(
            req_id(&head[0].1),
            json!({"ledger_index": 6, "validated": true, "ledger": {}}),
        ),
    );
    xrpl_answer_fetch(&mut h, &sent(&acts));
    let got = xrpl_got(&h, 8);
    assert_eq!(got.len(), 8, "{got:?}");
    // Two keys, each announcing ledgers 2..=3 (beyond the cap of 3).
    for g in &got[..2] {
        assert!(
            g.starts_with("gap ") && g.contains("2") && g.contains("3"),
            "{g}"
        );
    }
    assert_eq!(&got[2..], ["L4", "T4", "L5", "T5", "L6", "T6"]);
    // A node that does not answer: the whole range is announced, live goes on.
    let keys = h.keys(&msg);
    let acts = h.ev(Event::Subscribe {
        keys,
        mailbox: Some((9, true)),
        reply: 3,
        since: Some(4),
    });
    let head = sent(&acts);
    h.text(0, xrpl_closed(7).to_string());
    h.text(
        0,
        format!(
            r#"{{"id":{},"status":"error","type":"response","error":"noNetwork"}}"#,
            req_id(&head[0].1)
        ),
    );
    let got = xrpl_got(&h, 9);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got[0].starts_with("gap ") && got[1].starts_with("gap "),
        "{got:?}"
    );
    assert_eq!(got[2], "L7");
}

/// The HTTP requests in `acts`: (request id, method, params).
fn fetches(acts: &[Action]) -> Vec<(u64, String, Value)> {
    (acts.iter())
        .filter_map(|a| match a {
            Action::Fetch { body, .. } => {
                let v: Value = serde_json::from_str(body).unwrap();
                Some((
                    req_id(&v),
                    v["method"].as_str()?.to_owned(),
                    v["params"].clone(),
                ))
            }
            _ => None,
        })
        .collect()
}

fn sol_logs(slot: u64, sig: &str) -> String {
    json!({"jsonrpc": "2.0", "method": "logsNotification", "params": {"result": {"context":
        {"slot": slot}, "value": {"signature": sig, "err": null, "logs": [format!("log {sig}")]}},
        "subscription": 3}})
    .to_string()
}

#[test]
fn solana_since_older_than_the_history_is_fetched_and_joins_it_without_duplicate() {
    let mut s = settings(DialectKind::Solana);
    s.backfill = true;
    s.backfill_max_slots = 5;
    let mut h = H::new(s);
    let acts = h.actions();
    h.connect(&acts, 0);
    let msg = r#"{"jsonrpc":"2.0","id":1,"method":"logsSubscribe","params":[{"mentions":["CM78CPUeXjn8o3yroDHxUtKsZZgoy4GPkPPXfouKNH12"]}]}"#;
    let acts = h.subscribe(msg, 1);
    let id = req_id(&sent(&acts)[0].1);
    h.text(0, format!(r#"{{"jsonrpc":"2.0","id":{id},"result":3}}"#));
    // The history holds slots 105 and 106 (complete from 105).
    h.text(0, sol_logs(105, "S5"));
    h.text(0, sol_logs(106, "S6"));
    let acts = h.subscribe_since(msg, 2, 100);
    assert_eq!(
        h.out().subscribed.len(),
        1,
        "answered when the node has answered"
    );
    let first = fetches(&acts);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, "getSignaturesForAddress");
    // Newest first; 101 is beyond the cap (5 slots back from 106): announced.
    let sigs = json!([{"signature": "S6", "slot": 106}, {"signature": "S5", "slot": 105},
        {"signature": "S3", "slot": 103}, {"signature": "S2", "slot": 102},
        {"signature": "S1", "slot": 101}, {"signature": "S0", "slot": 100}]);
    let generation = h.generation(0);
    let answer = |id: u64, result: Value| Event::Fetched {
        slot: SlotId(0),
        generation,
        text: Utf8Bytes::from(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()),
    };
    let acts = h.ev(answer(first[0].0, sigs));
    let txs = fetches(&acts);
    let asked: Vec<&str> = txs.iter().map(|(_, _, p)| p[0].as_str().unwrap()).collect();
    assert_eq!(
        asked,
        ["S2", "S3", "S5", "S6"],
        "oldest first, within the cap"
    );
    for (id, _, p) in &txs {
        let sig = p[0].as_str().unwrap();
        let slot = 100 + sig[1..].parse::<u64>().unwrap();
        let tx = json!({"slot": slot, "meta": {"err": null, "logMessages": [format!("log {sig}")]},
            "transaction": {"signatures": [sig]}});
        h.ev(answer(*id, tx));
    }
    let (_, Ok(sub)) = h.out().one()[1].clone() else {
        panic!("joined")
    };
    let got: Vec<String> = (sub.history.iter())
        .map(|(f, gap)| {
            let v: Value = serde_json::from_str(f).unwrap();
            let r = &v["params"]["result"];
            if *gap {
                format!("gap {}-{}", r["fromSlot"], r["toSlot"])
            } else {
                format!(
                    "{}@{}",
                    r["value"]["signature"].as_str().unwrap(),
                    r["context"]["slot"]
                )
            }
        })
        .collect();
    assert_eq!(
        got,
        ["gap 101-101", "S2@102", "S3@103", "S5@105", "S6@106"],
        "the node's below the history, the history's once"
    );
}

#[test]
fn xrpl_since_holding_too_much_is_cut_short_announced_and_released() {
    let (mut h, msg) = xrpl_resume_harness(256);
    let keys = h.keys(&msg);
    h.ev(Event::Subscribe {
        keys,
        mailbox: Some((8, true)),
        reply: 2,
        since: Some(3),
    });
    // The node never answers; live ledgers keep coming: held up to the bound.
    for n in 7..7 + 16_383 {
        h.text(0, xrpl_closed(n).to_string());
    }
    assert!(xrpl_got(&h, 8).is_empty(), "held");
    h.text(0, xrpl_closed(7 + 16_383).to_string());
    let got = xrpl_got(&h, 8);
    assert_eq!(
        got.len(),
        2 + 16_384,
        "the notices, then every held one at once"
    );
    assert!(
        got[0].starts_with("gap ") && got[1].starts_with("gap "),
        "{:?}",
        &got[..2]
    );
    assert_eq!(got[2], "L7");
    // Not held any more.
    h.text(0, xrpl_closed(7 + 16_384).to_string());
    assert_eq!(xrpl_got(&h, 8).len(), 2 + 16_385);
}
/// The call cache's policies (issue 15), on this module's harness.
#[path = "cache/tests.rs"]
mod cache;
