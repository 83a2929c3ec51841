//! What a backfill request asks ([`Step`], carried by `Pending::Backfill` and answered
//! back to the module that asked), and the range arithmetic the backfills share.

/// What a backfill request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Step {
    /// The node's current height.
    Head,
    /// What the subscription delivered in `from..=to`.
    Fetch { from: u64, to: u64 },
    /// The node's block at a delivered height (is it the one delivered?).
    Check { height: u64 },
    /// Content-routed: the node's validated ledger.
    XHead,
    /// Content-routed: ledger `n` (the `ledger` stream).
    XLedger { n: u64 },
    /// Content-routed: an account's transactions in `min..=max` (a page).
    XAccount { min: u64, max: u64 },
    /// Solana: the first call of the subscription's kind (over HTTP).
    SFirst,
    /// Solana: the transaction of the `i`-th missed signature.
    STx { i: u32 },
    /// For a subscribe resuming with `?since=` (its number): the node's height.
    ResumeHead { waiter: u64 },
    /// For a resuming subscribe: what its key delivered in `from..=to`.
    ResumeFetch { waiter: u64, from: u64, to: u64 },
    /// Content-routed `?since=` (session `mb`, subscribe `waiter`): the validated ledger.
    SinceHead { mb: u64, waiter: u64 },
    /// Solana `?since=` (subscribe `waiter`): the first call of the key's kind.
    ResumeSFirst { waiter: u64 },
    /// Solana `?since=`: the transaction of the `i`-th signature after the slot.
    ResumeSTx { waiter: u64, i: u32 },
    /// Content-routed `?since=`: ledger `n` (the `ledger` stream).
    SinceLedger { mb: u64, waiter: u64, n: u64 },
    /// Content-routed `?since=`: an account's transactions in `min..=max` (a page).
    SinceAccount {
        mb: u64,
        waiter: u64,
        min: u64,
        max: u64,
    },
}

/// Ranges sorted, adjacent and overlapping ones joined (one notice per missing range).
pub(super) fn merged(mut gaps: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    gaps.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(gaps.len());
    for (from, to) in gaps {
        match out.last_mut() {
            Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}
