//! Where a payments route keeps its events: the embedded redb log (one instance), or
//! Redis Streams shared by every instance (`[backplane] redis`). One async face for both;
//! the embedded log's file I/O runs on the blocking pool.

use super::event::{Chain, Credit, Event};
use super::log::{Cursor, Log, LogError};
use super::redis_log::RedisLog;
use std::sync::Arc;

#[derive(Clone)]
pub enum Store {
    Local(Arc<Log>),
    Redis(Arc<RedisLog>),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(LogError::Store(e.to_string())))
}

impl Store {
    pub async fn head(&self) -> Result<Cursor, LogError> {
        match self {
            Store::Local(l) => {
                let l = l.clone();
                blocking(move || l.head()).await
            }
            Store::Redis(r) => r.head().await,
        }
    }

    pub async fn check(&self, cursor: Cursor) -> Result<(), LogError> {
        match self {
            Store::Local(l) => {
                let l = l.clone();
                blocking(move || l.check(cursor)).await
            }
            Store::Redis(r) => r.check(cursor).await,
        }
    }

    pub async fn history(
        &self,
        chain: Chain,
        address: &str,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<Event>, LogError> {
        match self {
            Store::Local(l) => {
                let (l, a) = (l.clone(), address.to_string());
                blocking(move || l.history(chain, &a, after, limit)).await
            }
            Store::Redis(r) => r.history(chain, address, after, limit).await,
        }
    }

    pub async fn after(&self, after: Cursor, limit: usize) -> Result<Vec<Event>, LogError> {
        match self {
            Store::Local(l) => {
                let l = l.clone();
                blocking(move || l.after(after, limit)).await
            }
            Store::Redis(r) => r.after(after, limit).await,
        }
    }

    pub async fn mark(&self, name: &str) -> Result<Option<Cursor>, LogError> {
        match self {
            Store::Local(l) => {
                let (l, n) = (l.clone(), name.to_string());
                blocking(move || l.mark(&n)).await
            }
            Store::Redis(r) => r.mark(name).await,
        }
    }

    pub async fn set_mark(&self, name: &str, at: Cursor) -> Result<(), LogError> {
        match self {
            Store::Local(l) => {
                let (l, n) = (l.clone(), name.to_string());
                blocking(move || l.set_mark(&n, at)).await
            }
            Store::Redis(r) => r.set_mark(name, at).await,
        }
    }

    /// Log `credits`. Local: the new events (to deliver now). Redis: nothing to deliver
    /// here — every instance delivers what it reads from the stream — and the count added.
    pub async fn append(
        &self,
        credits: Vec<Credit>,
        now_ms: u64,
    ) -> Result<(Vec<Event>, usize), LogError> {
        match self {
            Store::Local(l) => {
                let l = l.clone();
                let e = blocking(move || l.append(&credits, now_ms)).await?;
                let n = e.len();
                Ok((e, n))
            }
            Store::Redis(r) => Ok((Vec::new(), r.append(&credits, now_ms).await?)),
        }
    }

    /// Every event after `at` (paged), oldest first.
    pub async fn history_all(
        &self,
        chain: Chain,
        address: &str,
        mut at: Cursor,
    ) -> Result<Vec<Event>, LogError> {
        let mut out = Vec::new();
        loop {
            let page = self.history(chain, address, at, 1000).await?;
            let full = page.len() == 1000;
            if let Some(last) = page.last() {
                at = Cursor::parse(&last.cursor)?;
            }
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }
}
