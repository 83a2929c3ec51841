//! What a subscribe gives a session, whichever the routing: per key a drop guard that
//! releases the topic's refcount (so no path — unsubscribe, disconnect, panic — can leak
//! it), and a [`Delivery`] to read notifications from.

use super::table::TopicId;
use super::{HubError, Notice, WireText};
use crate::dialect::{ClientSubId, SubscriptionKey};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

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
    /// A reference on `topic`, held by the session with mailbox `session` (content
    /// routing) or by a subscription of its own (`None`).
    pub(crate) fn new(
        topic: TopicId,
        session: Option<u64>,
        tx: mpsc::UnboundedSender<Release>,
    ) -> Self {
        ReleaseGuard { topic, session, tx }
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

/// What a subscribe gave a session: one [`Joined`] per key that joined, and the first
/// error. An id-routed subscribe names one key, so it is the degenerate set: joined, or
/// an error.
#[derive(Debug, Default)]
pub struct Subscribed {
    pub joined: Vec<Joined>,
    pub error: Option<HubError>,
}

impl Subscribed {
    /// Nothing joined: the route could not be asked (shutting down, wedged).
    pub fn failed(error: HubError) -> Self {
        Subscribed {
            joined: Vec::new(),
            error: Some(error),
        }
    }
}

/// One key a session now holds.
#[derive(Debug)]
pub struct Joined {
    pub key: SubscriptionKey,
    /// The topic's client-facing id: every frame its ring carries already names it.
    pub public_id: ClientSubId,
    /// Where this key's notifications arrive, to be read only once the subscribe reply is
    /// written: the topic's ring (id-routed). `None` for content-routed keys, whose
    /// pushes arrive in the session's mailbox (one [`Delivery`] for all its keys).
    pub delivery: Option<Delivery>,
    /// The topic's last notification, for keys that replay it to late joiners.
    pub replay: Option<Notice>,
    /// A steady stream (heads, slots): a client that opted in may skip to the latest.
    pub steady: bool,
    /// `?since=`: what to write before the live stream (a gap notice first, if any).
    pub history: Vec<Notice>,
    pub guard: ReleaseGuard,
}

/// One item a [`Delivery`] yields: a notification, or `Err(missed)` when the session
/// fell further behind than its bound; `None` once, when the subscription ended.
pub type Delivered = Option<Result<Notice, u64>>;

/// The one thing sessions read notifications from: an ordered, bounded stream
/// (`client_queue_len`). Two sources make it:
/// - id-routed: a topic's broadcast ring ([`Delivery::ring`]), one per subscription, so
///   every client of a topic shares each encoded frame;
/// - content-routed: the session's [`Mailbox`], one per session, so a push matching
///   several of its keys keeps upstream order across them.
///
/// Overflow policy, the same for both: a full queue takes nothing more, the stream then
/// yields `Err(missed)` and the session closes the client as slow (1008), or, for a
/// steady topic of a client that asked for `?coalesce=1`, skips to the newest. Routes
/// never wait for a client.
pub struct Delivery(BoxStream<'static, Delivered>);

impl Delivery {
    /// A topic's ring, from the moment of joining (buffered until the session reads it).
    pub fn ring(rx: broadcast::Receiver<Notice>) -> Self {
        let s = BroadcastStream::new(rx)
            .map(|r| Some(r.map_err(|BroadcastStreamRecvError::Lagged(missed)| missed)));
        Delivery(s.chain(stream::once(async { None })).boxed())
    }
}

impl Stream for Delivery {
    type Item = Delivered;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivered>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery")
    }
}

/// Where a route actor delivers content-routed pushes (XRPL) for one session: the
/// sending end of the session's one ordered, bounded queue (see [`Delivery`]), so a
/// transaction matching several of its keys is delivered once per group, in upstream
/// order (a ledger's `ledgerClosed` before its transactions). A push that finds the queue
/// full is not queued but counted; the session then reads `Err(missed)`.
#[derive(Debug, Clone)]
pub struct Mailbox {
    id: u64,
    /// The session asked for gap notices.
    gap_notices: bool,
    tx: mpsc::Sender<WireText>,
    /// Pushes refused because the queue was full.
    missed: Arc<AtomicU64>,
}

impl Mailbox {
    /// A session's mailbox and the [`Delivery`] it reads.
    pub fn channel(capacity: usize, gap_notices: bool) -> (Mailbox, Delivery) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let missed = Arc::new(AtomicU64::new(0));
        let mailbox = Mailbox {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            gap_notices,
            tx,
            missed: missed.clone(),
        };
        let s = stream::unfold(rx, move |mut rx| {
            let missed = missed.clone();
            async move {
                let frame = rx.recv().await?;
                let item = match missed.load(Ordering::Relaxed) {
                    0 => Ok(Notice {
                        frame,
                        id_range: 0..0,
                        gap: false,
                    }),
                    n => Err(n),
                };
                Some((Some(item), rx))
            }
        });
        let delivery = Delivery(s.chain(stream::once(async { None })).boxed());
        (mailbox, delivery)
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
                self.missed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
