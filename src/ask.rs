//! One request/reply shape for every owner task (route actors, channel actors): send a
//! command carrying a oneshot sender on the owner's bounded queue (waiting for room), then
//! wait a bounded time for the answer.

use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why an ask got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// The owner is gone (its queue closed, or it dropped the reply sender): shutting down.
    Gone,
    /// No answer within the timeout.
    Timeout,
}

/// Send `make(reply)` to `owner` and wait up to `timeout` for what it answers.
pub async fn ask<C, A>(
    owner: &mpsc::Sender<C>,
    timeout: Duration,
    make: impl FnOnce(oneshot::Sender<A>) -> C,
) -> Result<A, NoAnswer> {
    let (tx, rx) = oneshot::channel();
    owner.send(make(tx)).await.map_err(|_| NoAnswer::Gone)?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(NoAnswer::Gone),
        Err(_) => Err(NoAnswer::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answered_gone_or_timed_out() {
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<u8>>(1);
        let owner = tokio::spawn(async move {
            let first = rx.recv().await.expect("first");
            let _ = first.send(7);
            drop(rx.recv().await); // dropped unanswered
            let _held = rx.recv().await; // held past the timeout
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let t = Duration::from_millis(50);
        assert_eq!(ask(&tx, t, |r| r).await, Ok(7));
        assert_eq!(ask(&tx, t, |r| r).await, Err(NoAnswer::Gone));
        assert_eq!(ask(&tx, t, |r| r).await, Err(NoAnswer::Timeout));
        owner.abort();
    }
}
