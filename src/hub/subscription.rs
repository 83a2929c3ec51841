//! What a client holds for one subscription: a fan-out receiver plus a drop guard that
//! releases the topic's refcount, so no path (unsubscribe, disconnect, panic) can leak it.

use super::table::TopicId;
use super::{Notice, WireText};
use crate::dialect::ClientSubId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Releases one reference on a topic when dropped.
///
/// The release channel is unbounded on purpose: `Drop` cannot wait, and the number of
/// messages is bounded by the number of live subscriptions (each guard sends once).
#[derive(Debug)]
pub struct ReleaseGuard {
    topic: TopicId,
    /// The holder's mailbox id, for content-routed topics (it stops receiving too).
    session: Option<u64>,
    tx: mpsc::UnboundedSender<Release>,
}

/// One released reference: the topic, and the mailbox that held it (content routing).
pub type Release = (TopicId, Option<u64>);

impl ReleaseGuard {
    pub(crate) fn new(topic: TopicId, tx: mpsc::UnboundedSender<Release>) -> Self {
        ReleaseGuard {
            topic,
            session: None,
            tx,
        }
    }
    pub(crate) fn for_session(
        topic: TopicId,
        session: u64,
        tx: mpsc::UnboundedSender<Release>,
    ) -> Self {
        ReleaseGuard {
            topic,
            session: Some(session),
            tx,
        }
    }
    pub fn topic(&self) -> TopicId {
        self.topic
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        // The actor being gone (shutdown) is fine: its table is gone too.
        let _ = self.tx.send((self.topic, self.session));
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
    /// A steady stream (heads, slots): a client that opted in may skip to the latest.
    pub steady: bool,
    pub guard: ReleaseGuard,
}

/// Where a route actor delivers content-routed pushes (XRPL) for one session: one ordered,
/// bounded queue per client, so a transaction matching several of its keys is delivered
/// once per group, in upstream order (a ledger's `ledgerClosed` before its transactions).
///
/// Overflow policy: when the queue is full the push is not queued and the mailbox is
/// marked lagged; the session then closes the client as slow (1008), as with a lagged
/// broadcast receiver. The actor never waits for a client.
#[derive(Debug, Clone)]
pub struct Mailbox {
    id: u64,
    /// The session asked for gap notices.
    gap_notices: bool,
    tx: mpsc::Sender<WireText>,
    lagged: Arc<AtomicBool>,
}

/// The session's end of its [`Mailbox`].
#[derive(Debug)]
pub struct MailboxRx {
    pub rx: mpsc::Receiver<WireText>,
    lagged: Arc<AtomicBool>,
}

impl Mailbox {
    pub fn channel(capacity: usize, gap_notices: bool) -> (Mailbox, MailboxRx) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        (
            Mailbox {
                id: NEXT.fetch_add(1, Ordering::Relaxed),
                gap_notices,
                tx,
                lagged: lagged.clone(),
            },
            MailboxRx { rx, lagged },
        )
    }
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn wants_gap_notices(&self) -> bool {
        self.gap_notices
    }
    /// Queue one frame; `false` when the session is gone.
    pub fn deliver(&self, frame: WireText) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl MailboxRx {
    /// Whether a push was refused because the queue was full.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }
}

/// What a set join gave a session: a guard per key that joined, and the first error.
#[derive(Debug)]
pub struct SetJoined {
    pub guards: Vec<(crate::dialect::SubscriptionKey, ReleaseGuard)>,
    pub error: Option<super::HubError>,
}
