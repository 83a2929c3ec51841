//! What a client holds for one subscription: a fan-out receiver plus a drop guard that
//! releases the topic's refcount, so no path (unsubscribe, disconnect, panic) can leak it.

use super::table::TopicId;
use super::Notice;
use crate::dialect::ClientSubId;
use tokio::sync::{broadcast, mpsc};

/// Releases one reference on a topic when dropped.
///
/// The release channel is unbounded on purpose: `Drop` cannot wait, and the number of
/// messages is bounded by the number of live subscriptions (each guard sends once).
#[derive(Debug)]
pub struct ReleaseGuard {
    topic: TopicId,
    tx: mpsc::UnboundedSender<TopicId>,
}

impl ReleaseGuard {
    pub(crate) fn new(topic: TopicId, tx: mpsc::UnboundedSender<TopicId>) -> Self {
        ReleaseGuard { topic, tx }
    }
    pub fn topic(&self) -> TopicId {
        self.topic
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        // The actor being gone (shutdown) is fine: its table is gone too.
        let _ = self.tx.send(self.topic);
    }
}

/// A confirmed subscription handed to a session.
#[derive(Debug)]
pub struct Joined {
    pub topic: TopicId,
    /// The topic's client-facing id: every frame in `rx` already carries it.
    pub public_id: ClientSubId,
    /// Notifications from the moment of joining (buffered until the session activates it).
    pub rx: broadcast::Receiver<Notice>,
    /// The topic's last notification, for keys that replay it to late joiners.
    pub replay: Option<Notice>,
    pub guard: ReleaseGuard,
}
