//! The route core's [`Outbox`] in the running server: answers go to the sessions'
//! oneshot senders, notifications to each topic's broadcast ring, content-routed pushes
//! to session mailboxes. All of it non-blocking.

use crate::hub::core::{KeyJoined, Outbox};
use crate::hub::{
    Delivery, HubError, Joined, Mailbox, Notice, Release, ReleaseGuard, Subscribed, UpstreamReply,
    WireText,
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
    type SubscribeReply = oneshot::Sender<Subscribed>;
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
        mailbox: Option<u64>,
        joined: Vec<KeyJoined<'_, Self::Topic>>,
        error: Option<HubError>,
    ) {
        let joined = (joined.into_iter())
            .map(|j| Joined {
                key: j.key,
                public_id: j.public_id,
                // Content-routed keys deliver through the session's mailbox; an ended
                // one-shot's stream ends right after the replay.
                delivery: mailbox.is_none().then(|| {
                    Delivery::ring(
                        (j.fan).map_or_else(|| broadcast::channel(1).1, |tx| tx.subscribe()),
                    )
                }),
                replay: j.replay,
                steady: j.steady,
                history: j.history,
                guard: ReleaseGuard::new(j.topic, mailbox, self.release_tx.clone()),
            })
            .collect();
        let _ = reply.send(Subscribed { joined, error });
    }
    fn answered(&mut self, reply: Self::CallReply, result: Result<UpstreamReply, HubError>) {
        let _ = reply.send(result);
    }
}
