//! The event log in Redis Streams, for several instances behind one load balancer
//! (`[backplane] redis`): one stream of every event (`{prefix}`), one per address
//! (`{prefix}:a:{chain}:{address}`) with the same entry ids, and a `SET NX` key per
//! (`id`, status) so two instances watching the same chain log each event once. Any
//! instance serves any cursor: the cursor is the entry id (`ms-seq` packed as
//! `ms << 20 | seq`, 16 hex digits like the embedded log's). Every instance reads the
//! stream (`XREAD BLOCK`) and delivers what any instance logged. Retention: entries older
//! than `log_max_age_secs` are trimmed (`MINID ~`); `log_max_bytes` applies to the
//! embedded log only (Redis has `maxmemory`).

use super::event::{Chain, Credit, Event};
use super::log::{address_key, Cursor, LogError};
use redis::aio::MultiplexedConnection;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Append one event unless its (`id`, status) was logged: the entry id, or nil.
const APPEND: &str = r"
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[4]) then
  local id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[3], '*', 'd', ARGV[1], 'k', ARGV[2])
  redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], id, 'd', ARGV[1])
  return id
end
return false
";

pub struct RedisLog {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    max_age: Duration,
    script: redis::Script,
}

fn store<E: std::fmt::Display>(e: E) -> LogError {
    LogError::Store(e.to_string())
}

/// `ms-seq` → a cursor.
pub fn cursor_of(id: &str) -> Option<Cursor> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    (ms < 1 << 44 && seq < 1 << 20).then_some(Cursor(ms << 20 | seq))
}

/// A cursor → `ms-seq`.
pub fn id_of(c: Cursor) -> String {
    format!("{}-{}", c.0 >> 20, c.0 & 0xF_FFFF)
}

type Entries = Vec<(String, Vec<String>)>;

fn events(entries: Entries) -> Vec<Event> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let i = fields.iter().position(|f| f == "d")?;
            let credit: Credit = serde_json::from_str(fields.get(i + 1)?).ok()?;
            Some(Event {
                cursor: cursor_of(&id)?.render(),
                credit,
            })
        })
        .collect()
}

impl RedisLog {
    pub fn new(url: &str, prefix: String, max_age: Duration) -> Result<RedisLog, LogError> {
        Ok(RedisLog {
            client: redis::Client::open(url).map_err(store)?,
            conn: Mutex::new(None),
            prefix,
            max_age,
            script: redis::Script::new(APPEND),
        })
    }

    async fn conn(&self) -> Result<MultiplexedConnection, LogError> {
        let mut c = self.conn.lock().await;
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let fresh = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(store)?;
        *c = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forget a connection that failed (the next call reconnects).
    async fn failed<T>(&self, e: redis::RedisError) -> Result<T, LogError> {
        *self.conn.lock().await = None;
        Err(store(e))
    }

    fn address_stream(&self, chain: Chain, address: &str) -> String {
        format!("{}:a:{}", self.prefix, address_key(chain, address))
    }

    pub async fn append(&self, credits: &[Credit], now_ms: u64) -> Result<usize, LogError> {
        let mut conn = self.conn().await?;
        let min_id = now_ms.saturating_sub(self.max_age.as_millis() as u64);
        let ttl = self.max_age.as_secs().max(1);
        let mut added = 0;
        for c in credits {
            let body = serde_json::to_string(c).map_err(store)?;
            let seen = format!("{}:seen:{}|{}", self.prefix, c.id, c.status.as_str());
            let r: redis::RedisResult<Option<String>> = self
                .script
                .key(&self.prefix)
                .key(self.address_stream(c.chain, &c.to))
                .key(seen)
                .arg(body)
                .arg(address_key(c.chain, &c.to))
                .arg(min_id)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await;
            match r {
                Ok(Some(_)) => added += 1,
                Ok(None) => {}
                Err(e) => return self.failed(e).await,
            }
        }
        Ok(added)
    }

    pub async fn head(&self) -> Result<Cursor, LogError> {
        let mut conn = self.conn().await?;
        let r: redis::RedisResult<Entries> = redis::cmd("XREVRANGE")
            .arg(&self.prefix)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await;
        match r {
            Ok(e) => Ok(e
                .first()
                .and_then(|(id, _)| cursor_of(id))
                .unwrap_or(Cursor(0))),
            Err(e) => self.failed(e).await,
        }
    }

    pub async fn check(&self, cursor: Cursor) -> Result<(), LogError> {
        if cursor > self.head().await? {
            return Err(LogError::UnknownCursor);
        }
        let mut conn = self.conn().await?;
        let r: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.prefix)
            .query_async(&mut conn)
            .await;
        // No stream yet: nothing was ever logged or trimmed.
        let Ok(info) = r else { return Ok(()) };
        let map: Vec<(String, redis::Value)> = redis::from_redis_value(info).unwrap_or_default();
        let deleted = map
            .iter()
            .find(|(k, _)| k == "max-deleted-entry-id")
            .and_then(|(_, v)| redis::from_redis_value::<String>(v.clone()).ok())
            .and_then(|id| cursor_of(&id))
            .unwrap_or(Cursor(0));
        if cursor < deleted {
            return Err(LogError::Expired(deleted.render()));
        }
        Ok(())
    }

    async fn range(&self, key: &str, after: Cursor, limit: usize) -> Result<Vec<Event>, LogError> {
        let mut conn = self.conn().await?;
        let r: redis::RedisResult<Entries> = redis::cmd("XRANGE")
            .arg(key)
            .arg(format!("({}", id_of(after)))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await;
        match r {
            Ok(e) => Ok(events(e)),
            Err(e) => self.failed(e).await,
        }
    }

    pub async fn history(
        &self,
        chain: Chain,
        address: &str,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<Event>, LogError> {
        self.check(after).await?;
        self.range(&self.address_stream(chain, address), after, limit)
            .await
    }

    pub async fn after(&self, after: Cursor, limit: usize) -> Result<Vec<Event>, LogError> {
        self.range(&self.prefix, after, limit).await
    }

    /// Wait (up to `block`) for events after `after`, from any instance.
    pub async fn read(&self, after: Cursor, block: Duration) -> Result<Vec<Event>, LogError> {
        // A connection of its own: a blocking read must not hold up the shared one.
        let mut conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(store)?;
        let r: redis::RedisResult<Option<Vec<(String, Entries)>>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1024)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.prefix)
            .arg(id_of(after))
            .query_async(&mut conn)
            .await;
        match r {
            Ok(Some(streams)) => Ok(streams.into_iter().flat_map(|(_, e)| events(e)).collect()),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(store(e)),
        }
    }

    pub async fn mark(&self, name: &str) -> Result<Option<Cursor>, LogError> {
        let mut conn = self.conn().await?;
        let r: redis::RedisResult<Option<u64>> = redis::cmd("GET")
            .arg(format!("{}:mark:{name}", self.prefix))
            .query_async(&mut conn)
            .await;
        match r {
            Ok(v) => Ok(v.map(Cursor)),
            Err(e) => self.failed(e).await,
        }
    }

    pub async fn set_mark(&self, name: &str, at: Cursor) -> Result<(), LogError> {
        let mut conn = self.conn().await?;
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("{}:mark:{name}", self.prefix))
            .arg(at.0)
            .query_async(&mut conn)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) => self.failed(e).await,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_pack_into_ordered_cursors() {
        let a = cursor_of("1700000000000-0").unwrap();
        let b = cursor_of("1700000000000-1").unwrap();
        let c = cursor_of("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(id_of(b), "1700000000000-1");
        assert_eq!(Cursor::parse(&c.render()).unwrap(), c);
        assert_eq!(id_of(Cursor(0)), "0-0");
        assert_eq!(cursor_of("x-1"), None);
        assert_eq!(cursor_of("1-1048576"), None);
    }
}
