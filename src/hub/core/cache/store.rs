//! The answers the cache keeps: an LRU bounded in bytes, each answer with the scope it
//! stays true in (forever, one upstream connection, one head).

use crate::hub::UpstreamReply;
use lru::LruCache;

/// What each entry costs beyond its key and answer text (map slots, the entry itself).
pub(super) const ENTRY_OVERHEAD: usize = 96;

/// Where a kept answer stays true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Forever,
    /// While calls go to the connection of this epoch.
    Connection(u64),
    /// While the followed head is this one.
    Head(u64),
}

struct Entry {
    reply: UpstreamReply,
    scope: Scope,
    size: usize,
}

/// Kept answers by coalescing key (method and canonical params).
pub(crate) struct Store {
    lru: LruCache<Box<str>, Entry>,
    bytes: usize,
    max: usize,
    /// Keys stored with a head scope since the head last moved (dropped when it moves).
    head_keys: Vec<Box<str>>,
}

/// What a change dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) evicted: u64,
    pub(crate) invalidated: u64,
}

impl Store {
    pub(crate) fn new(max_bytes: usize) -> Store {
        Store {
            lru: LruCache::unbounded(),
            bytes: 0,
            max: max_bytes,
            head_keys: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lru.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The answer kept for `key`, if it is still true at `head` on connection `epoch`
    /// (a stale one is dropped).
    pub(crate) fn get(
        &mut self,
        key: &str,
        head: Option<u64>,
        epoch: u64,
    ) -> Option<UpstreamReply> {
        let valid = match self.lru.get(key)?.scope {
            Scope::Forever => true,
            Scope::Connection(e) => e == epoch,
            Scope::Head(h) => Some(h) == head,
        };
        if !valid {
            self.remove(key);
            return None;
        }
        self.lru.peek(key).map(|e| e.reply.clone())
    }

    /// Keep `reply` under `key`, evicting the least recently used beyond the bound. An
    /// answer larger than an eighth of the bound is not kept (it would empty the cache).
    pub(crate) fn put(&mut self, key: Box<str>, reply: UpstreamReply, scope: Scope) -> Dropped {
        let size = key.len() + reply.text.len() + ENTRY_OVERHEAD;
        let mut dropped = Dropped::default();
        if size > self.max / 8 {
            return dropped;
        }
        if let Scope::Head(_) = scope {
            self.head_keys.push(key.clone());
        }
        if let Some(old) = self.lru.put(key, Entry { reply, scope, size }) {
            self.bytes -= old.size;
        }
        self.bytes += size;
        while self.bytes > self.max {
            match self.lru.pop_lru() {
                Some((_, e)) => {
                    self.bytes -= e.size;
                    dropped.evicted += 1;
                }
                None => break,
            }
        }
        // Keys of entries evicted meanwhile pile up between head moves: trim them.
        if self.head_keys.len() > 2 * self.lru.len() + 1024 {
            let lru = &self.lru;
            self.head_keys.retain(|k| {
                lru.peek(k)
                    .is_some_and(|e| matches!(e.scope, Scope::Head(_)))
            });
        }
        dropped
    }

    /// The followed head moved to `head`: drop every answer of an earlier head.
    pub(crate) fn head_moved(&mut self, head: u64) -> Dropped {
        let mut dropped = Dropped::default();
        for key in std::mem::take(&mut self.head_keys) {
            let stale = (self.lru.peek(&key))
                .is_some_and(|e| matches!(e.scope, Scope::Head(h) if h != head));
            if stale && self.remove(&key) {
                dropped.invalidated += 1;
            }
        }
        dropped
    }

    /// Calls now go to another connection: drop the answers of earlier ones.
    pub(crate) fn connection_changed(&mut self, epoch: u64) -> Dropped {
        let stale: Vec<Box<str>> = (self.lru.iter())
            .filter(|(_, e)| matches!(e.scope, Scope::Connection(x) if x != epoch))
            .map(|(k, _)| k.clone())
            .collect();
        let mut dropped = Dropped::default();
        for key in stale {
            if self.remove(&key) {
                dropped.invalidated += 1;
            }
        }
        dropped
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.lru.pop(key) {
            Some(e) => {
                self.bytes -= e.size;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Utf8Bytes;

    fn reply(text: &str) -> UpstreamReply {
        UpstreamReply {
            text: Utf8Bytes::from(text.to_string()),
            id_range: 21..22,
            upstream: false,
        }
    }

    #[test]
    fn scopes_decide_what_is_still_true() {
        let mut s = Store::new(1 << 20);
        s.put("a".into(), reply("A"), Scope::Forever);
        s.put("c".into(), reply("C"), Scope::Connection(1));
        s.put("h".into(), reply("H"), Scope::Head(10));
        assert!(s.get("a", Some(11), 2).is_some());
        assert!(s.get("c", Some(10), 1).is_some());
        assert!(s.get("h", Some(10), 1).is_some());
        // A later head, another connection: gone (and dropped).
        assert!(s.get("h", Some(11), 1).is_none());
        assert!(s.get("c", Some(10), 2).is_none());
        assert_eq!(s.len(), 1);
        assert!(s.get("a", None, 0).is_some());
    }

    #[test]
    fn a_head_move_drops_that_heads_answers_only() {
        let mut s = Store::new(1 << 20);
        s.put("h1".into(), reply("1"), Scope::Head(10));
        s.put("h2".into(), reply("2"), Scope::Head(10));
        s.put("f".into(), reply("F"), Scope::Forever);
        s.put("c".into(), reply("C"), Scope::Connection(3));
        let d = s.head_moved(11);
        assert_eq!(d.invalidated, 2);
        assert_eq!(s.len(), 2);
        s.put("h3".into(), reply("3"), Scope::Head(11));
        assert_eq!(
            s.head_moved(11).invalidated,
            0,
            "the same head drops nothing"
        );
        assert!(s.get("h3", Some(11), 3).is_some());
        assert_eq!(s.connection_changed(4).invalidated, 1);
        assert!(s.get("f", Some(11), 4).is_some());
    }

    #[test]
    fn bounded_in_bytes_least_recently_used_first() {
        let each = 1 + 100 + ENTRY_OVERHEAD;
        let mut s = Store::new(each * 10);
        let body = "x".repeat(100);
        for i in 0..10 {
            s.put(format!("{i}").into(), reply(&body), Scope::Forever);
        }
        assert_eq!(s.len(), 10);
        assert_eq!(s.bytes(), each * 10);
        // Touch 0: 1 is now the least recently used.
        assert!(s.get("0", None, 0).is_some());
        let d = s.put("a".into(), reply(&body), Scope::Forever);
        assert_eq!(d.evicted, 1);
        assert!(s.bytes() <= each * 10);
        assert!(s.get("1", None, 0).is_none());
        assert!(s.get("0", None, 0).is_some());
        // Too large for the cache: not kept, nothing evicted.
        let big = "y".repeat(each * 2);
        assert_eq!(s.put("big".into(), reply(&big), Scope::Forever).evicted, 0);
        assert!(s.get("big", None, 0).is_none());
        assert_eq!(s.len(), 10);
    }

    #[test]
    fn replacing_an_entry_keeps_the_byte_count_exact() {
        let mut s = Store::new(1 << 20);
        s.put("k".into(), reply("one"), Scope::Forever);
        s.put("k".into(), reply("three"), Scope::Forever);
        assert_eq!(s.bytes(), 1 + 5 + ENTRY_OVERHEAD);
        assert_eq!(s.len(), 1);
    }
}
