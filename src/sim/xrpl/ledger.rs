//! The simulated ledger: submitting transactions, applying them to accounts, trust lines
//! and offers (crossing included) as rippled's metadata shows it, bookChanges, and closing
//! a ledger.

use super::*;

pub(super) fn iso_time(ripple_secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::sim::utc(ripple_secs + RIPPLE_EPOCH);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

pub(super) fn submit(inner: &Inner, kind: Kind, account: &str, fields: Value) -> String {
    let mut st = inner.lock();
    let hash = next_hash(&mut st);
    let seq = st.accounts.get(account).map_or(1, |a| a.sequence)
        + st.pending
            .iter()
            .filter(|p| p.tx_json["Account"] == account)
            .count() as u64;
    let mut tx_json = json!({
        "Account": account,
        "Fee": FEE.to_string(),
        "Flags": 0,
        "LastLedgerSequence": st.ledger_index + 20,
        "Sequence": seq,
        "SigningPubKey": format!("ED{}", &hex64(seq, 3)[..64]),
        "TxnSignature": format!("{}{}", hex64(seq, 4), hex64(seq, 5)),
    });
    if let (Some(t), Value::Object(f)) = (tx_json.as_object_mut(), fields) {
        t.extend(f);
    }
    let targets = transaction_targets(&json!({"validated": false, "tx_json": tx_json}));
    publish(&st, &targets, |api| {
        tx_message(&st, &hash, &tx_json, api).to_string()
    });
    st.pending.push(Pending {
        hash: hash.clone(),
        kind,
        tx_json,
    });
    hash
}

pub(super) fn pay(inner: &Inner, from: &str, to: &str, drops: u64) -> String {
    let fields = json!({
        "TransactionType": "Payment",
        "Destination": to,
        "DeliverMax": drops.to_string(),
    });
    let kind = Kind::Payment {
        from: from.into(),
        to: to.into(),
        drops,
    };
    submit(inner, kind, from, fields)
}

pub(super) fn pay_issued(inner: &Inner, from: &str, to: &str, amount: Value) -> Option<String> {
    let currency = amount.get("currency")?.as_str()?.to_string();
    let issuer = amount.get("issuer")?.as_str()?.to_string();
    let value = parse_value(amount.get("value")?.as_str()?)?;
    let fields = json!({
        "TransactionType": "Payment",
        "Destination": to,
        "DeliverMax": amount,
    });
    let kind = Kind::Issued {
        from: from.into(),
        to: to.into(),
        currency,
        issuer,
        value,
    };
    Some(submit(inner, kind, from, fields))
}

pub(super) fn offer_create(inner: &Inner, account: &str, gets: Value, pays: Value) -> String {
    let fields = json!({
        "TransactionType": "OfferCreate",
        "TakerGets": gets,
        "TakerPays": pays,
    });
    let kind = Kind::Offer {
        account: account.into(),
        gets,
        pays,
    };
    submit(inner, kind, account, fields)
}

/// A deterministic 256-bit index for a ledger object named by `name`.
pub(super) fn index_of(name: &str, salt: u64) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| {
        (a ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    hex64(h, salt)
}

pub(super) fn account_root_index(addr: &str) -> String {
    index_of(addr, 0xACC)
}

/// The currency and issuer of an amount (XRP: `("XRP", None)`).
pub(super) fn issue_of(amount: &Value) -> (String, Option<String>) {
    match amount {
        Value::Object(o) => (
            o.get("currency")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            o.get("issuer").and_then(Value::as_str).map(String::from),
        ),
        _ => ("XRP".into(), None),
    }
}

/// The BookDirectory of an offer: 24 bytes naming the book, then the 8-byte quality.
pub(super) fn book_directory(gets: &Value, pays: &Value) -> String {
    let book = format!("{:?}/{:?}", issue_of(gets), issue_of(pays));
    let (m, e) = offer_rate(gets, pays).unwrap_or((0, -100));
    format!("{}{}", &index_of(&book, 0xB00C)[..48], rate_hex(m, e))
}

/// Move an account's XRP (`delta` drops), maybe its Sequence and OwnerCount: its
/// AccountRoot node (created when the account is new).
pub(super) fn touch_account(
    st: &mut State,
    hash: &str,
    index: u64,
    addr: &str,
    delta: i128,
    seq: bool,
    owners: i64,
) -> Value {
    let created = !st.accounts.contains_key(addr);
    let a = st.accounts.entry(addr.to_string()).or_insert(Account {
        balance: 0,
        sequence: index,
        owner_count: 0,
        prev_tx: String::new(),
        prev_seq: 0,
    });
    let before = a.clone();
    a.balance = (a.balance as i128 + delta).max(0) as u64;
    if seq {
        a.sequence += 1;
    }
    a.owner_count = (a.owner_count as i64 + owners).max(0) as u64;
    let final_fields = json!({
        "Account": addr, "Balance": a.balance.to_string(), "Flags": 0,
        "OwnerCount": a.owner_count, "Sequence": a.sequence,
    });
    let node = if created {
        json!({"CreatedNode": {"LedgerEntryType": "AccountRoot",
            "LedgerIndex": account_root_index(addr),
            "NewFields": {"Account": addr, "Balance": a.balance.to_string(), "Sequence": a.sequence}}})
    } else {
        let mut prev = json!({"Balance": before.balance.to_string()});
        if seq {
            prev["Sequence"] = json!(before.sequence);
        }
        if owners != 0 {
            prev["OwnerCount"] = json!(before.owner_count);
        }
        json!({"ModifiedNode": {"LedgerEntryType": "AccountRoot",
            "LedgerIndex": account_root_index(addr),
            "FinalFields": final_fields, "PreviousFields": prev,
            "PreviousTxnID": before.prev_tx, "PreviousTxnLgrSeq": before.prev_seq}})
    };
    a.prev_tx = hash.to_string();
    a.prev_seq = index;
    node
}

/// The trust line between `a` and `b` in `currency`: (low, high, currency).
pub(super) fn line_key(a: &str, b: &str, currency: &str) -> (String, String, String) {
    let (ia, ib) = (decode_address(a), decode_address(b));
    if ia <= ib {
        (a.into(), b.into(), currency.into())
    } else {
        (b.into(), a.into(), currency.into())
    }
}

/// What `holder` holds of `issuer`'s `currency` (10^-15 units).
pub(super) fn holding(st: &State, holder: &str, issuer: &str, currency: &str) -> i128 {
    let key = line_key(holder, issuer, currency);
    let b = st.lines.get(&key).map_or(0, |l| l.balance);
    if key.0 == holder {
        b
    } else {
        -b
    }
}

/// Change what `holder` holds of `issuer`'s `currency` by `delta`: the RippleState node
/// (created with the holder's limit when the line is new).
pub(super) fn touch_line(
    st: &mut State,
    hash: &str,
    index: u64,
    (holder, issuer, currency): (&str, &str, &str),
    delta: i128,
) -> Value {
    let key = line_key(holder, issuer, currency);
    let holder_is_low = key.0 == holder;
    let created = !st.lines.contains_key(&key);
    let (low_limit, high_limit) = if holder_is_low {
        (HOLDER_LIMIT, "0")
    } else {
        ("0", HOLDER_LIMIT)
    };
    let line = st.lines.entry(key.clone()).or_insert(Line {
        balance: 0,
        low_limit: low_limit.into(),
        high_limit: high_limit.into(),
        prev_tx: String::new(),
        prev_seq: 0,
    });
    let before = line.clone();
    line.balance += if holder_is_low { delta } else { -delta };
    let amount =
        |v: &str, issuer: &str| json!({"currency": currency, "issuer": issuer, "value": v});
    // Balances are kept by the neutral ACCOUNT_ONE, as rippled writes them.
    let mut one = [0u8; 20];
    one[19] = 1;
    let one = encode_address(&one);
    let (low, high) = (&key.0, &key.1);
    let ledger_index = index_of(&format!("{low}/{high}/{currency}"), 0x5147);
    let node = if created {
        json!({"CreatedNode": {"LedgerEntryType": "RippleState", "LedgerIndex": ledger_index,
            "NewFields": {"Balance": amount(&render_value(line.balance), &one),
                "HighLimit": amount(&line.high_limit, high),
                "LowLimit": amount(&line.low_limit, low)}}})
    } else {
        json!({"ModifiedNode": {"LedgerEntryType": "RippleState", "LedgerIndex": ledger_index,
            "FinalFields": {"Balance": amount(&render_value(line.balance), &one), "Flags": 0,
                "HighLimit": amount(&line.high_limit, high), "HighNode": "0",
                "LowLimit": amount(&line.low_limit, low), "LowNode": "0"},
            "PreviousFields": {"Balance": amount(&render_value(before.balance), &one)},
            "PreviousTxnID": before.prev_tx, "PreviousTxnLgrSeq": before.prev_seq}})
    };
    line.prev_tx = hash.to_string();
    line.prev_seq = index;
    node
}

/// Apply a transaction: the AffectedNodes of its metadata.
pub(super) fn apply(st: &mut State, p: &Pending, index: u64) -> Value {
    let hash = p.hash.as_str();
    let mut nodes = Vec::new();
    let mut delivered = None;
    let mut result = "tesSUCCESS";
    match &p.kind {
        Kind::Moves {
            moves,
            result: r,
            delivered: d,
        } => {
            let sender = p.tx_json["Account"].as_str().unwrap_or_default();
            for (account, delta) in moves {
                let seq = account == sender;
                nodes.push(touch_account(st, hash, index, account, *delta, seq, 0));
            }
            result = r;
            delivered = d.map(|drops| json!(drops.to_string()));
        }
        Kind::Payment { from, to, drops } => {
            let from_delta = -((*drops + FEE) as i128);
            nodes.push(touch_account(st, hash, index, from, from_delta, true, 0));
            nodes.push(touch_account(st, hash, index, to, *drops as i128, false, 0));
            delivered = Some(json!(drops.to_string()));
        }
        Kind::Issued {
            from,
            to,
            currency,
            issuer,
            value,
        } => {
            nodes.push(touch_account(
                st,
                hash,
                index,
                from,
                -(FEE as i128),
                true,
                0,
            ));
            // The issuer's own side of a line is no holding: only holders' lines move.
            for (holder, delta) in [(from, -*value), (to, *value)] {
                if holder != issuer {
                    let line = (holder.as_str(), issuer.as_str(), currency.as_str());
                    nodes.push(touch_line(st, hash, index, line, delta));
                }
            }
            delivered = Some(p.tx_json["DeliverMax"].clone());
        }
        Kind::Offer {
            account,
            gets,
            pays,
        } => {
            let sequence = p.tx_json["Sequence"].as_u64().unwrap_or(0);
            let mut c = cross(st, hash, index, account, gets, pays);
            let rest = c.remaining.take();
            let taker_xrp = c.xrp.remove(account).unwrap_or(0);
            let owned = i64::from(rest.is_some());
            nodes.push(touch_account(
                st,
                hash,
                index,
                account,
                taker_xrp - FEE as i128,
                true,
                owned,
            ));
            let makers: BTreeSet<String> = c.xrp.keys().chain(c.owners.keys()).cloned().collect();
            for maker in makers {
                let xrp = c.xrp.get(&maker).copied().unwrap_or(0);
                let owners = c.owners.get(&maker).copied().unwrap_or(0);
                nodes.push(touch_account(st, hash, index, &maker, xrp, false, owners));
            }
            for ((holder, issuer, currency), delta) in &c.iou {
                let line = (holder.as_str(), issuer.as_str(), currency.as_str());
                nodes.push(touch_line(st, hash, index, line, *delta));
            }
            nodes.append(&mut c.offer_nodes);
            if let Some((gets, pays)) = rest {
                let offer_index = index_of(&format!("{account}/{sequence}"), 0x0FFE);
                nodes.push(json!({"CreatedNode": {"LedgerEntryType": "Offer",
                    "LedgerIndex": offer_index,
                    "NewFields": {"Account": account, "BookDirectory": book_directory(&gets, &pays),
                        "Sequence": sequence, "TakerGets": gets, "TakerPays": pays}}}));
                st.offers.push(Offer {
                    account: account.clone(),
                    sequence,
                    gets,
                    pays,
                    index: offer_index,
                    prev_tx: hash.to_string(),
                    prev_seq: index,
                });
            }
        }
    }
    // rippled lists AffectedNodes in ledger-key order.
    nodes.sort_by(|a, b| {
        node_body(a)["LedgerIndex"]
            .as_str()
            .cmp(&node_body(b)["LedgerIndex"].as_str())
    });
    let mut meta = json!({"AffectedNodes": nodes, "TransactionIndex": 0,
        "TransactionResult": result});
    if let Some(d) = delivered {
        meta["delivered_amount"] = d;
    }
    meta
}

/// The body of an AffectedNodes entry (inside CreatedNode/ModifiedNode/DeletedNode).
pub(super) fn node_body(node: &Value) -> &Value {
    node.as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null)
}

/// An amount's issue and size in units (drops, or 10^-15 of an issued currency).
pub(super) fn units(amount: &Value) -> Option<((String, Option<String>), i128)> {
    let n = match amount {
        Value::String(d) => d.parse::<i128>().ok()?,
        Value::Object(o) => parse_value(o.get("value")?.as_str()?)?,
        _ => return None,
    };
    Some((issue_of(amount), n))
}

/// An amount of `issue` from units (XRP: a drops string).
pub(super) fn amount_of(issue: &(String, Option<String>), n: i128) -> Value {
    match &issue.1 {
        None => json!(n.to_string()),
        Some(issuer) => json!({"currency": issue.0, "issuer": issuer, "value": render_value(n)}),
    }
}

/// What an OfferCreate's crossing did: maker offer nodes, net balance changes, and what
/// is left of the taker's offer to rest on the book.
#[derive(Default)]
pub(super) struct Crossing {
    offer_nodes: Vec<Value>,
    /// Drops per account.
    xrp: BTreeMap<String, i128>,
    /// Issued-currency units per (holder, issuer, currency); issuers' own sides omitted.
    iou: BTreeMap<(String, String, String), i128>,
    /// OwnerCount changes (maker offers used up).
    owners: BTreeMap<String, i64>,
    /// (TakerGets, TakerPays) still offered, if any.
    remaining: Option<(Value, Value)>,
}

impl Crossing {
    fn credit(&mut self, account: &str, issue: &(String, Option<String>), n: i128) {
        match &issue.1 {
            None => *self.xrp.entry(account.to_string()).or_default() += n,
            Some(issuer) if issuer == account => {}
            Some(issuer) => {
                let key = (account.to_string(), issuer.clone(), issue.0.clone());
                *self.iou.entry(key).or_default() += n;
            }
        }
    }
}

/// Cross a new offer by `taker` (giving `gets`, wanting `pays`) with the opposite book,
/// best quality first, at each maker's price, while the maker asks no more per unit than
/// the taker gives: maker offers shrink (ModifiedNode) or go (DeletedNode).
pub(super) fn cross(
    st: &mut State,
    hash: &str,
    index: u64,
    taker: &str,
    gets: &Value,
    pays: &Value,
) -> Crossing {
    let mut c = Crossing::default();
    let (Some((gi, mut give)), Some((pi, mut want))) = (units(gets), units(pays)) else {
        c.remaining = Some((gets.clone(), pays.clone()));
        return c;
    };
    let mut book: Vec<usize> = (0..st.offers.len())
        .filter(|&i| {
            let o = &st.offers[i];
            o.account != taker && issue_of(&o.gets) == pi && issue_of(&o.pays) == gi
        })
        .collect();
    book.sort_by_key(|&i| {
        let o = &st.offers[i];
        let (m, e) = offer_rate(&o.gets, &o.pays).unwrap_or((u64::MAX >> 8, 155));
        (((e + 100) as u64) << 56) | m
    });
    // The taker, too, pays only with what it has (an unfunded offer just rests).
    let mut budget = funds(st, taker, &gi);
    let mut used_up = Vec::new();
    for i in book {
        let o = &st.offers[i];
        let (Some((_, og)), Some((_, op))) = (units(&o.gets), units(&o.pays)) else {
            continue;
        };
        // The maker's price op/og must not exceed the taker's limit give/want.
        match (op.checked_mul(want), give.checked_mul(og)) {
            (Some(ask), Some(bid)) if og > 0 && ask <= bid => {}
            _ => break,
        }
        // An offer backs only what its owner has (unfunded offers are passed over).
        let affordable = budget.checked_mul(og).map_or(og, |x| x / op.max(1));
        let take = og.min(want).min(funds(st, &o.account, &pi)).min(affordable);
        if take <= 0 {
            continue;
        }
        let Some(pay) = op.checked_mul(take).map(|x| x / og) else {
            break;
        };
        budget -= pay;
        c.credit(taker, &pi, take);
        c.credit(taker, &gi, -pay);
        c.credit(&o.account, &gi, pay);
        c.credit(&o.account, &pi, -take);
        let (new_gets, new_pays) = (amount_of(&pi, og - take), amount_of(&gi, op - pay));
        let mut fields = json!({"Account": o.account,
            "BookDirectory": book_directory(&o.gets, &o.pays), "BookNode": "0", "Flags": 0,
            "OwnerNode": "0", "Sequence": o.sequence, "TakerGets": new_gets,
            "TakerPays": new_pays});
        let previous = json!({"TakerGets": o.gets, "TakerPays": o.pays});
        let node = if take == og {
            fields["PreviousTxnID"] = json!(o.prev_tx);
            fields["PreviousTxnLgrSeq"] = json!(o.prev_seq);
            *c.owners.entry(o.account.clone()).or_default() -= 1;
            used_up.push(i);
            json!({"DeletedNode": {"FinalFields": fields, "LedgerEntryType": "Offer",
                "LedgerIndex": o.index, "PreviousFields": previous}})
        } else {
            json!({"ModifiedNode": {"FinalFields": fields, "LedgerEntryType": "Offer",
                "LedgerIndex": o.index, "PreviousFields": previous,
                "PreviousTxnID": o.prev_tx, "PreviousTxnLgrSeq": o.prev_seq}})
        };
        c.offer_nodes.push(node);
        let o = &mut st.offers[i];
        o.gets = new_gets;
        o.pays = new_pays;
        o.prev_tx = hash.to_string();
        o.prev_seq = index;
        want -= take;
        give -= pay;
        if want == 0 {
            break;
        }
    }
    used_up.sort_unstable();
    for i in used_up.into_iter().rev() {
        st.offers.remove(i);
    }
    if want > 0 && give > 0 {
        c.remaining = Some((amount_of(&gi, give), amount_of(&pi, want)));
    }
    c
}

/// The `changes` of a bookChanges message (rippled computeBookChanges): per currency
/// pair, the volumes and rates of the offers crossed in the ledger's transactions.
pub(super) fn book_changes(metas: &[&Value]) -> Vec<Value> {
    type Rate = (u64, i32);
    struct Tally {
        a: ((String, Option<String>), i128),
        b: ((String, Option<String>), i128),
        high: Rate,
        low: Rate,
        open: Rate,
        close: Rate,
    }
    let key = |r: &Rate| (r.1, r.0);
    let name = |i: &(String, Option<String>)| match &i.1 {
        None => i.0.clone(),
        Some(issuer) => format!("{issuer}/{}", i.0),
    };
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    for meta in metas {
        let nodes = meta["AffectedNodes"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for node in nodes {
            let body = node_body(node);
            if body["LedgerEntryType"] != "Offer" || node.get("CreatedNode").is_some() {
                continue;
            }
            let (f, p) = (&body["FinalFields"], &body["PreviousFields"]);
            let delta = |k: &str| {
                let (issue, fin) = units(&f[k])?;
                let (_, prev) = units(&p[k])?;
                Some((issue, fin - prev))
            };
            let (Some(dg), Some(dp)) = (delta("TakerGets"), delta("TakerPays")) else {
                continue;
            };
            let (g, p) = (name(&dg.0), name(&dp.0));
            let noswap = dg.0 .1.is_none() || (dp.0 .1.is_some() && g < p);
            let (first, second) = if noswap { (dg, dp) } else { (dp, dg) };
            if second.1 == 0 || first.1 == 0 {
                continue;
            }
            let a = (first.0.clone(), first.1.abs());
            let b = (second.0.clone(), second.1.abs());
            let Some(rate) = offer_rate(&amount_of(&b.0, b.1), &amount_of(&a.0, a.1)) else {
                continue;
            };
            let k = if noswap {
                format!("{g}|{p}")
            } else {
                format!("{p}|{g}")
            };
            match tally.get_mut(&k) {
                None => {
                    let t = Tally {
                        a,
                        b,
                        high: rate,
                        low: rate,
                        open: rate,
                        close: rate,
                    };
                    tally.insert(k, t);
                }
                Some(t) => {
                    t.a.1 += a.1;
                    t.b.1 += b.1;
                    if key(&rate) > key(&t.high) {
                        t.high = rate;
                    }
                    if key(&rate) < key(&t.low) {
                        t.low = rate;
                    }
                    t.close = rate;
                }
            }
        }
    }
    let side = |s: &((String, Option<String>), i128)| match &s.0 .1 {
        None => ("XRP_drops".to_string(), s.1.to_string()),
        Some(_) => (name(&s.0), render_value(s.1)),
    };
    tally
        .values()
        .map(|t| {
            let ((ca, va), (cb, vb)) = (side(&t.a), side(&t.b));
            json!({"currency_a": ca, "currency_b": cb, "volume_a": va, "volume_b": vb,
                "high": rate_text(t.high.0, t.high.1), "low": rate_text(t.low.0, t.low.1),
                "open": rate_text(t.open.0, t.open.1), "close": rate_text(t.close.0, t.close.1)})
        })
        .collect()
}

pub(super) fn ledger_fields(st: &State) -> Value {
    json!({
        "fee_base": 10,
        "ledger_hash": st.ledger_hash,
        "ledger_index": st.ledger_index,
        "ledger_time": st.ledger_time,
        "reserve_base": RESERVE_BASE,
        "reserve_inc": RESERVE_INC,
        "validated_ledgers": format!("{}-{}", st.first_ledger, st.ledger_index),
    })
}

pub(super) fn close_ledger(inner: &Inner) -> u64 {
    let mut st = inner.lock();
    st.ledger_index += 1;
    st.ledger_time += 4;
    let index = st.ledger_index;
    st.ledger_hash = hex64(index, 1);
    let pending = std::mem::take(&mut st.pending);
    let mut hashes = Vec::with_capacity(pending.len());
    for (i, p) in pending.iter().enumerate() {
        let mut meta = apply(&mut st, p, index);
        meta["TransactionIndex"] = json!(i);
        let v = Validated {
            tx_json: p.tx_json.clone(),
            meta,
            ledger_index: index,
            ledger_hash: st.ledger_hash.clone(),
            close_time: st.ledger_time,
        };
        st.validated.insert(p.hash.clone(), v);
        hashes.push(p.hash.clone());
    }
    let mut closed = ledger_fields(&st);
    closed["type"] = json!("ledgerClosed");
    closed["txn_count"] = json!(hashes.len());
    closed["network_id"] = json!(1);
    let text = closed.to_string();
    publish(&st, &stream("ledger"), |_| text.clone());
    let metas: Vec<&Value> = hashes
        .iter()
        .filter_map(|h| st.validated.get(h).map(|v| &v.meta))
        .collect();
    let changes = json!({"type": "bookChanges", "ledger_index": index,
        "ledger_hash": st.ledger_hash, "ledger_time": st.ledger_time, "validated": true,
        "changes": book_changes(&metas)});
    let text = changes.to_string();
    publish(&st, &stream("book_changes"), |_| text.clone());
    for hash in &hashes {
        let Some(v) = st.validated.get(hash) else {
            continue;
        };
        let tx_json = v.tx_json.clone();
        let msg = tx_message(&st, hash, &tx_json, 2);
        let targets = transaction_targets(&msg);
        publish(&st, &targets, |api| {
            tx_message(&st, hash, &tx_json, api).to_string()
        });
    }
    // Open path_find requests are recomputed on the new ledger: a full update each.
    for (&id, c) in &st.conns {
        if let Some(status) = &c.path_find {
            let mut m = status.clone();
            m["type"] = json!("path_find");
            m["full_reply"] = json!(true);
            send(&st, id, m.to_string());
        }
    }
    index
}
