//! The durable event log: every event the feed published, in one embedded redb file
//! (`data_dir/payments.redb`; in memory without a `data_dir`), so `since` replay, history
//! and webhooks resume across reconnects and restarts.
//!
//! Each event gets the next sequence number; its cursor is that number as 16 hex digits
//! (opaque to clients, increasing). Events are deduplicated by `id` and status, so a
//! transaction seen twice (a reconnect, a second upstream) is logged once per state.
//! Retention drops the oldest events past `log_max_age_secs` or `log_max_bytes`; a cursor
//! older than what is kept is refused rather than silently skipping events.
//!
//! Blocking (file I/O): callers run it off the async workers (`spawn_blocking`).

use super::event::{Chain, Credit, Event};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::time::Duration;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const BY_ADDRESS: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_address");
const SEEN: TableDefinition<&str, u64> = TableDefinition::new("seen");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Why the log refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("event log: {0}")]
    Store(String),
    #[error("unknown cursor")]
    UnknownCursor,
    #[error("cursor is older than the event log keeps (oldest kept: {0})")]
    Expired(String),
}

fn store<E: std::fmt::Display>(e: E) -> LogError {
    LogError::Store(e.to_string())
}

/// A position in the log: events after it are what `since` replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(pub u64);

impl Cursor {
    pub fn render(self) -> String {
        format!("{:016x}", self.0)
    }
    pub fn parse(text: &str) -> Result<Cursor, LogError> {
        if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(LogError::UnknownCursor);
        }
        u64::from_str_radix(text, 16)
            .map(Cursor)
            .map_err(|_| LogError::UnknownCursor)
    }
}

/// The index key of an address: chain and the address as compared (Ethereum lowercase).
pub fn address_key(chain: Chain, address: &str) -> String {
    match chain {
        Chain::Ethereum => format!("{chain}:{}", address.to_ascii_lowercase()),
        _ => format!("{chain}:{address}"),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    /// When it was logged (ms since the Unix epoch).
    t: u64,
    c: Credit,
}

/// Retention limits.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

pub struct Log {
    db: Database,
    retention: Retention,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

fn meta(t: &impl ReadableTable<&'static str, u64>, k: &str) -> Result<u64, LogError> {
    Ok(t.get(k).map_err(store)?.map(|v| v.value()).unwrap_or(0))
}

impl Log {
    /// Open (or create) `dir/payments.redb`; `None`: a log in memory.
    pub fn open(dir: Option<&Path>, retention: Retention) -> Result<Log, LogError> {
        let db = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(store)?;
                Database::create(d.join("payments.redb")).map_err(store)?
            }
            None => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(store)?,
        };
        let w = db.begin_write().map_err(store)?;
        {
            w.open_table(EVENTS).map_err(store)?;
            w.open_table(BY_ADDRESS).map_err(store)?;
            w.open_table(SEEN).map_err(store)?;
            w.open_table(META).map_err(store)?;
        }
        w.commit().map_err(store)?;
        Ok(Log { db, retention })
    }

    /// The newest cursor (0 before any event).
    pub fn head(&self) -> Result<Cursor, LogError> {
        let r = self.db.begin_read().map_err(store)?;
        let m = r.open_table(META).map_err(store)?;
        Ok(Cursor(meta(&m, "last")?))
    }

    /// Log `credits` (each to its `to`), skipping every (`id`, status) already logged;
    /// returns the new events with their cursors, in order. `now_ms`: the wall clock.
    pub fn append(&self, credits: &[Credit], now_ms: u64) -> Result<Vec<Event>, LogError> {
        let mut out = Vec::new();
        let w = self.db.begin_write().map_err(store)?;
        {
            let mut events = w.open_table(EVENTS).map_err(store)?;
            let mut index = w.open_table(BY_ADDRESS).map_err(store)?;
            let mut seen = w.open_table(SEEN).map_err(store)?;
            let mut m = w.open_table(META).map_err(store)?;
            let mut last = meta(&m, "last")?;
            let mut bytes = meta(&m, "bytes")?;
            for c in credits {
                let key = format!("{}|{}", c.id, c.status.as_str());
                if seen.get(key.as_str()).map_err(store)?.is_some() {
                    continue;
                }
                last += 1;
                let body = serde_json::to_vec(&Stored {
                    t: now_ms,
                    c: c.clone(),
                })
                .map_err(store)?;
                bytes += body.len() as u64;
                events.insert(last, body.as_slice()).map_err(store)?;
                let addr = address_key(c.chain, &c.to);
                index.insert((addr.as_str(), last), ()).map_err(store)?;
                seen.insert(key.as_str(), last).map_err(store)?;
                out.push(Event {
                    cursor: Cursor(last).render(),
                    credit: c.clone(),
                });
            }
            m.insert("last", last).map_err(store)?;
            m.insert("bytes", bytes).map_err(store)?;
        }
        w.commit().map_err(store)?;
        if !out.is_empty() {
            self.prune(now_ms)?;
        }
        Ok(out)
    }

    /// Drop events past the retention limits, oldest first; returns how many.
    pub fn prune(&self, now_ms: u64) -> Result<usize, LogError> {
        let oldest_kept = now_ms.saturating_sub(self.retention.max_age.as_millis() as u64);
        let w = self.db.begin_write().map_err(store)?;
        let mut dropped = 0;
        {
            let mut events = w.open_table(EVENTS).map_err(store)?;
            let mut index = w.open_table(BY_ADDRESS).map_err(store)?;
            let mut seen = w.open_table(SEEN).map_err(store)?;
            let mut m = w.open_table(META).map_err(store)?;
            let mut bytes = meta(&m, "bytes")?;
            let mut pruned = meta(&m, "pruned")?;
            loop {
                let Some((seq, body)) = events
                    .first()
                    .map_err(store)?
                    .map(|(k, v)| (k.value(), v.value().to_vec()))
                else {
                    break;
                };
                let stored: Stored = serde_json::from_slice(&body).map_err(store)?;
                if stored.t >= oldest_kept && bytes <= self.retention.max_bytes {
                    break;
                }
                events.remove(seq).map_err(store)?;
                let addr = address_key(stored.c.chain, &stored.c.to);
                index.remove((addr.as_str(), seq)).map_err(store)?;
                let key = format!("{}|{}", stored.c.id, stored.c.status.as_str());
                seen.remove(key.as_str()).map_err(store)?;
                bytes = bytes.saturating_sub(body.len() as u64);
                pruned = seq;
                dropped += 1;
            }
            m.insert("bytes", bytes).map_err(store)?;
            m.insert("pruned", pruned).map_err(store)?;
        }
        w.commit().map_err(store)?;
        Ok(dropped)
    }

    /// Check a client's cursor: known (not past the head) and not older than what is
    /// kept.
    pub fn check(&self, cursor: Cursor) -> Result<(), LogError> {
        let r = self.db.begin_read().map_err(store)?;
        let m = r.open_table(META).map_err(store)?;
        if cursor.0 > meta(&m, "last")? {
            return Err(LogError::UnknownCursor);
        }
        let pruned = meta(&m, "pruned")?;
        if cursor.0 < pruned {
            return Err(LogError::Expired(Cursor(pruned).render()));
        }
        Ok(())
    }

    /// Up to `limit` events to `address` after `after`, oldest first.
    pub fn history(
        &self,
        chain: Chain,
        address: &str,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<Event>, LogError> {
        self.check(after)?;
        let key = address_key(chain, address);
        let r = self.db.begin_read().map_err(store)?;
        let index = r.open_table(BY_ADDRESS).map_err(store)?;
        let events = r.open_table(EVENTS).map_err(store)?;
        let mut out = Vec::new();
        let start = after.0.saturating_add(1);
        for item in index
            .range((key.as_str(), start)..=(key.as_str(), u64::MAX))
            .map_err(store)?
        {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item.map_err(store)?;
            let seq = k.value().1;
            let Some(body) = events.get(seq).map_err(store)? else {
                continue;
            };
            let stored: Stored = serde_json::from_slice(body.value()).map_err(store)?;
            out.push(Event {
                cursor: Cursor(seq).render(),
                credit: stored.c,
            });
        }
        Ok(out)
    }

    /// Up to `limit` events of any address after `after`, oldest first (webhooks).
    pub fn after(&self, after: Cursor, limit: usize) -> Result<Vec<Event>, LogError> {
        let r = self.db.begin_read().map_err(store)?;
        let events = r.open_table(EVENTS).map_err(store)?;
        let mut out = Vec::new();
        for item in events.range(after.0.saturating_add(1)..).map_err(store)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(store)?;
            let stored: Stored = serde_json::from_slice(v.value()).map_err(store)?;
            out.push(Event {
                cursor: Cursor(k.value()).render(),
                credit: stored.c,
            });
        }
        Ok(out)
    }

    /// A named position kept in the log (a webhook's last delivered cursor).
    pub fn mark(&self, name: &str) -> Result<Option<Cursor>, LogError> {
        let r = self.db.begin_read().map_err(store)?;
        let m = r.open_table(META).map_err(store)?;
        let k = format!("mark:{name}");
        Ok(m.get(k.as_str()).map_err(store)?.map(|v| Cursor(v.value())))
    }

    pub fn set_mark(&self, name: &str, at: Cursor) -> Result<(), LogError> {
        let w = self.db.begin_write().map_err(store)?;
        {
            let mut m = w.open_table(META).map_err(store)?;
            let k = format!("mark:{name}");
            m.insert(k.as_str(), at.0).map_err(store)?;
        }
        w.commit().map_err(store)
    }

    /// Events held now.
    pub fn len(&self) -> Result<u64, LogError> {
        let r = self.db.begin_read().map_err(store)?;
        let events = r.open_table(EVENTS).map_err(store)?;
        events.len().map_err(store)
    }

    pub fn is_empty(&self) -> Result<bool, LogError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::event::{Asset, Status};

    fn credit(id: &str, to: &str, status: Status) -> Credit {
        Credit {
            id: id.into(),
            chain: Chain::Xrpl,
            status,
            to: to.into(),
            from: None,
            amount: "1".into(),
            raw_amount: Some("1000000".into()),
            asset: Asset::native(Chain::Xrpl),
            tx: id.into(),
            height: Some(1),
            time: None,
        }
    }

    fn keep_all() -> Retention {
        Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
        }
    }

    #[test]
    fn appends_dedupes_and_pages_by_address() {
        let log = Log::open(None, keep_all()).unwrap();
        assert_eq!(log.head().unwrap(), Cursor(0));
        let e = log
            .append(
                &[
                    credit("a", "rA", Status::Final),
                    credit("b", "rB", Status::Final),
                    credit("a", "rA", Status::Final),
                ],
                1,
            )
            .unwrap();
        assert_eq!(e.len(), 2, "the repeat is dropped");
        assert_eq!(e[0].cursor, "0000000000000001");
        // Same id, another status: a new event.
        let e = log
            .append(&[credit("a", "rA", Status::Retracted)], 2)
            .unwrap();
        assert_eq!(e[0].cursor, "0000000000000003");
        let h = log.history(Chain::Xrpl, "rA", Cursor(0), 10).unwrap();
        assert_eq!(
            h.iter()
                .map(|e| (e.cursor.as_str(), e.credit.status))
                .collect::<Vec<_>>(),
            [
                ("0000000000000001", Status::Final),
                ("0000000000000003", Status::Retracted)
            ]
        );
        assert_eq!(
            log.history(Chain::Xrpl, "rA", Cursor(1), 10).unwrap().len(),
            1
        );
        assert_eq!(
            log.history(Chain::Xrpl, "rA", Cursor(0), 1).unwrap().len(),
            1
        );
        assert!(log
            .history(Chain::Xrpl, "rC", Cursor(0), 10)
            .unwrap()
            .is_empty());
        assert!(log
            .history(Chain::Ethereum, "rA", Cursor(0), 10)
            .unwrap()
            .is_empty());
        assert_eq!(
            log.history(Chain::Xrpl, "rA", Cursor(4), 10),
            Err(LogError::UnknownCursor)
        );
        assert_eq!(log.after(Cursor(1), 10).unwrap().len(), 2);
        for bad in [
            "",
            "1",
            "000000000000000G",
            "00000000000000001",
            "000000000000000A",
        ] {
            assert_eq!(Cursor::parse(bad), Err(LogError::UnknownCursor), "{bad}");
        }
        assert_eq!(Cursor::parse("00000000000000ff").unwrap(), Cursor(255));
    }

    #[test]
    fn retention_by_age_and_size_refuses_expired_cursors() {
        let log = Log::open(
            None,
            Retention {
                max_age: Duration::from_secs(10),
                max_bytes: 1 << 30,
            },
        )
        .unwrap();
        log.append(&[credit("a", "rA", Status::Final)], 1_000)
            .unwrap();
        log.append(&[credit("b", "rA", Status::Final)], 20_000)
            .unwrap();
        assert_eq!(log.len().unwrap(), 1, "the 19 s old event is gone");
        assert_eq!(
            log.history(Chain::Xrpl, "rA", Cursor(0), 10),
            Err(LogError::Expired("0000000000000001".into()))
        );
        assert_eq!(
            log.history(Chain::Xrpl, "rA", Cursor(1), 10).unwrap().len(),
            1
        );
        let small = Log::open(
            None,
            Retention {
                max_age: Duration::from_secs(3600),
                max_bytes: 600,
            },
        )
        .unwrap();
        for i in 0..10 {
            small
                .append(&[credit(&format!("t{i}"), "rA", Status::Final)], 5)
                .unwrap();
        }
        let n = small.len().unwrap();
        assert!(n < 10 && n > 0, "{n} kept");
        assert_eq!(small.head().unwrap(), Cursor(10));
    }

    #[test]
    fn survives_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("submux-log-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let log = Log::open(Some(&dir), keep_all()).unwrap();
            log.append(&[credit("a", "rA", Status::Final)], 1).unwrap();
        }
        let log = Log::open(Some(&dir), keep_all()).unwrap();
        assert_eq!(log.head().unwrap(), Cursor(1));
        assert!(log
            .append(&[credit("a", "rA", Status::Final)], 2)
            .unwrap()
            .is_empty());
        let e = log.append(&[credit("b", "rA", Status::Final)], 2).unwrap();
        assert_eq!(e[0].cursor, "0000000000000002");
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
