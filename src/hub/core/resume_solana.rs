//! `?since=N` on Solana (N a slot) older than a topic's history (issue 14 part 3): what
//! the history cannot vouch for is asked of the node over HTTP (`Action::Fetch`), with
//! the calls of the Solana backfill after a switch, before the subscribe is answered;
//! [`super::resume`] then merges it with the history in one step with the fan-out.
//! - `logsSubscribe` with `mentions`: `getSignaturesForAddress` (one page, newest first),
//!   the signatures in slots after N, at most `backfill_max_slots` back from the newest
//!   (the older rest, and what a full page could not reach, announced by the gap
//!   notice), then `getTransaction` for each: the logs notifications, in slot order,
//!   deduplicated against the history by signature.
//! - `accountSubscribe`: the account's current value (`getAccountInfo` with the
//!   subscription's encoding), unless the history holds a value of it after N.
//!   `programSubscribe`: each program account's current value (`getProgramAccounts` with
//!   the subscription's filters), unless the history holds that account after N; more
//!   than [`PROGRAM_MAX`] are announced instead. Solana's RPC does not say in which slot
//!   an account last changed, so an account unchanged since N is sent as its current
//!   value too (a wallet's view is right either way).
//! - Pending signatures need no resume: their subscribe already answers with the final
//!   status if the signature landed.

use super::steps::Step;
use super::{Outbox, RouteCore, Waiter};
use crate::dialect::backfill::solana::{self as sol, Kind};
use crate::dialect::backfill::Item;
use crate::dialect::SubscriptionKey;
use crate::hub::table::TopicId;
use std::time::Instant;

/// Program accounts a resume delivers at most; beyond, the gap notice.
const PROGRAM_MAX: usize = 10_000;
/// A page of `getSignaturesForAddress` (the `limit` the first call asks).
const PAGE: usize = 1000;

/// Whether `?since=` fetches for `key` from a Solana node.
pub(super) fn resumable(key: &SubscriptionKey) -> bool {
    matches!(
        sol::kind(key),
        Some(Kind::Account { .. } | Kind::Program { .. } | Kind::Logs { .. })
    )
}

fn item(slot: u64, index: u64, result: String) -> Option<Item> {
    let (_, key, identity) = sol::identify(&result)?;
    Some(Item {
        height: slot,
        index,
        identity,
        block: 0,
        log: false,
        removed: false,
        key,
        result: result.into(),
    })
}

impl<O: Outbox> RouteCore<O> {
    /// An answer to a Solana resume request (`Err`: an error, no answer in time, lost).
    pub(super) fn on_resume_solana(
        &mut self,
        waiter: Waiter,
        topic: TopicId,
        step: Step,
        result: Result<&str, ()>,
        now: Instant,
    ) {
        let max = self.settings.backfill_max_slots;
        let Some(kind) = self.table.get(topic).and_then(|t| sol::kind(&t.key)) else {
            return;
        };
        let Some((r, since)) =
            super::resume::resume_answered(&mut self.subscribing, waiter, topic, step)
        else {
            return;
        };
        let wanted = since.saturating_add(1);
        match (&kind, step) {
            (Kind::Account { .. }, Step::ResumeSFirst { .. }) => {
                r.current = true;
                match result.ok().and_then(sol::read_account) {
                    Some((slot, value)) => r.items.extend(item(slot, 0, value)),
                    None => r.gaps.push((wanted, u64::MAX)),
                }
            }
            (Kind::Program { .. }, Step::ResumeSFirst { .. }) => {
                r.current = true;
                match result.ok().and_then(sol::read_program) {
                    Some((slot, accounts)) if accounts.len() > PROGRAM_MAX => {
                        r.gaps.push((wanted, slot));
                    }
                    Some((slot, accounts)) => {
                        let items = (accounts.into_iter().enumerate())
                            .filter_map(|(i, (_, value))| item(slot, i as u64, value));
                        r.items.extend(items);
                    }
                    None => r.gaps.push((wanted, u64::MAX)),
                }
            }
            (Kind::Logs { commitment, .. }, Step::ResumeSFirst { .. }) => {
                match result.ok().and_then(sol::read_signatures) {
                    Some(mut sigs) => {
                        let full = sigs.len() >= PAGE;
                        sigs.retain(|(_, s)| *s > since);
                        // At most `backfill_max_slots` back from the newest.
                        if let Some(&(_, newest)) = sigs.first() {
                            if newest - since > max {
                                r.gaps.push((wanted, newest - max));
                                sigs.retain(|(_, s)| *s > newest - max);
                            }
                        }
                        sigs.reverse();
                        // A full page may not reach back to `since`.
                        if let (true, Some(&(_, oldest))) = (full, sigs.first()) {
                            if oldest > wanted {
                                r.gaps.push((wanted, oldest - 1));
                            }
                        }
                        for (i, (sig, _)) in sigs.iter().enumerate() {
                            let step = Step::ResumeSTx {
                                waiter,
                                i: i as u32,
                            };
                            r.queue
                                .push_back((step, sol::transaction_call(sig, commitment)));
                        }
                        r.sigs = sigs;
                    }
                    None => r.gaps.push((wanted, u64::MAX)),
                }
            }
            (Kind::Logs { .. }, Step::ResumeSTx { i, .. }) => {
                if let Some((sig, slot)) = r.sigs.get(i as usize).cloned() {
                    let read = result.ok().and_then(|x| sol::read_transaction(x, &sig));
                    match read.and_then(|(s, value)| item(s, u64::from(i), value)) {
                        Some(it) => r.items.push(it),
                        None => r.gaps.push((slot, slot)),
                    }
                }
            }
            _ => {}
        }
        self.pump_resume(waiter, topic, now);
    }
}
