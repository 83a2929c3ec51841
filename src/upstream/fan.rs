//! The route core's [`Outbox`] in the running server: answers go to the sessions'
//! oneshot senders, notifications to each topic's broadcast ring, content-routed pushes
//! to session mailboxes. All of it non-blocking.

use crate::dialect::SubscriptionKey;
use crate::hub::core::{Outbox, Subscribed};
use crate::hub::table::TopicId;
use crate::hub::{
    HubError, Joined, Mailbox, Notice, Release, ReleaseGuard, SetJoined, UpstreamReply, WireText,
};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The shell's side of answers and deliveries (all non-blocking).
pub struct Fan {
    release_tx: mpsc::UnboundedSender<Release>,
    /// Broadcast capacity of a new topic (1 for content-routed topics: they use mailboxes).
    ring: usize,
}

impl Fan {
    pub fn new(release_tx: mpsc::UnboundedSender<Release>, ring: usize) -> Self {
        Fan { release_tx, ring }
    }
}

impl Outbox for Fan {
    type Topic = broadcast::Sender<Notice>;
    type Mailbox = Mailbox;
    type SubscribeReply = oneshot::Sender<Result<Joined, HubError>>;
    type JoinReply = oneshot::Sender<Result<SetJoined, HubError>>;
    type CallReply = oneshot::Sender<Result<UpstreamReply, HubError>>;

    fn new_topic(&mut self) -> Self::Topic {
        broadcast::channel(self.ring).0
    }
    fn broadcast(&mut self, topic: &Self::Topic, notice: Notice) {
        let _ = topic.send(notice); // no receivers is fine (topic lingering)
    }
    fn mailbox_id(&self, mailbox: &Mailbox) -> u64 {
        mailbox.id()
    }
    fn wants_gaps(&self, mailbox: &Mailbox) -> bool {
        mailbox.wants_gap_notices()
    }
    fn push(&mut self, mailbox: &Mailbox, frame: WireText) {
        mailbox.deliver(frame);
    }
    fn subscribed(
        &mut self,
        reply: Self::SubscribeReply,
        result: Result<Subscribed<'_, Self::Topic>, HubError>,
    ) {
        let joined = result.map(|s| Joined {
            topic: s.topic,
            public_id: s.public_id,
            // An ended one-shot: the stream ends right after the replay.
            rx: s
                .fan
                .map_or_else(|| broadcast::channel(1).1, |tx| tx.subscribe()),
            replay: s.replay,
            steady: s.steady,
            guard: ReleaseGuard::new(s.topic, self.release_tx.clone()),
        });
        let _ = reply.send(joined);
    }
    fn joined(
        &mut self,
        reply: Self::JoinReply,
        mailbox: u64,
        keys: Vec<(SubscriptionKey, TopicId)>,
        error: Option<HubError>,
    ) {
        let guards = (keys.into_iter())
            .map(|(k, t)| {
                let guard = ReleaseGuard::for_session(t, mailbox, self.release_tx.clone());
                (k, guard)
            })
            .collect();
        let _ = reply.send(Ok(SetJoined { guards, error }));
    }
    fn answered(&mut self, reply: Self::CallReply, result: Result<UpstreamReply, HubError>) {
        let _ = reply.send(result);
    }
}
