//! Transfers for the simulated validator (the payments feed's Solana side): a
//! `getTransaction` result (`json` encoding) as Agave returns it — account keys, pre/post
//! lamports with the fee paid by the first signer, pre/post token balances — for SOL and
//! SPL transfers.

use serde_json::{json, Value};

/// One transfer: `lamports` from `from` to `to`, and optionally SPL `token`
/// (mint, decimals, amount, the sender's and receiver's token accounts; owners are
/// `from` and `to`).
#[derive(Debug, Clone)]
pub struct Transfer {
    pub signature: String,
    pub from: String,
    pub to: String,
    pub lamports: u64,
    pub token: Option<Token>,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub mint: String,
    pub decimals: u32,
    pub amount: u128,
    pub from_account: String,
    pub to_account: String,
    /// The receiver's token account balance before (0: created by this transaction).
    pub to_before: u128,
}

const FEE: u64 = 5_000;
const START: u64 = 10_000_000_000;
const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";

/// Every account the transaction mentions (what `logsSubscribe` `mentions` matches).
pub fn mentions(t: &Transfer) -> Vec<String> {
    let mut m = vec![t.from.clone(), t.to.clone()];
    if let Some(k) = &t.token {
        m.push(k.from_account.clone());
        m.push(k.to_account.clone());
    }
    m
}

pub fn transaction(slot: u64, t: &Transfer, err: Value) -> Value {
    let ok = err.is_null();
    let moved = if ok { t.lamports } else { 0 };
    let mut keys = vec![t.from.clone(), t.to.clone()];
    let mut pre = vec![START, START];
    let mut post = vec![START.saturating_sub(moved + FEE), START + moved];
    let (mut pre_tok, mut post_tok) = (vec![], vec![]);
    if let Some(k) = &t.token {
        keys.push(k.from_account.clone());
        keys.push(k.to_account.clone());
        pre.extend([2_039_280, 2_039_280]);
        post.extend([2_039_280, 2_039_280]);
        let bal = |i: usize, mint: &str, owner: &str, amount: u128| {
            json!({"accountIndex": i, "mint": mint, "owner": owner, "programId": TOKEN_PROGRAM,
                "uiTokenAmount": {"amount": amount.to_string(), "decimals": k.decimals}})
        };
        let moved = if ok { k.amount } else { 0 };
        let big = u128::MAX / 2;
        pre_tok.push(bal(2, &k.mint, &t.from, big));
        post_tok.push(bal(2, &k.mint, &t.from, big - moved));
        if k.to_before > 0 {
            pre_tok.push(bal(3, &k.mint, &t.to, k.to_before));
        }
        post_tok.push(bal(3, &k.mint, &t.to, k.to_before + moved));
        keys.push(TOKEN_PROGRAM.into());
        pre.push(1);
        post.push(1);
    } else {
        keys.push("11111111111111111111111111111111".into());
        pre.push(1);
        post.push(1);
    }
    json!({"slot": slot, "blockTime": 1_700_000_000u64 + slot / 2, "version": "legacy",
        "meta": {"err": err, "status": if ok { json!({"Ok": null}) } else { json!({"Err": err}) },
            "fee": FEE, "preBalances": pre, "postBalances": post,
            "preTokenBalances": pre_tok, "postTokenBalances": post_tok,
            "innerInstructions": [], "logMessages": [], "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []}, "computeUnitsConsumed": 450},
        "transaction": {"signatures": [t.signature],
            "message": {"accountKeys": keys, "header": {"numRequiredSignatures": 1,
                "numReadonlySignedAccounts": 0, "numReadonlyUnsignedAccounts": 1},
                "instructions": [], "recentBlockhash": "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"}}})
}
