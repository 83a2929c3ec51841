//! Webhooks: placeholder replaced below.
use super::log::Cursor;
use super::route::PaymentsRoute;
use crate::config::PaymentsSettings;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub fn spawn(
    _route: &PaymentsRoute,
    p: &PaymentsSettings,
    _shutdown: CancellationToken,
    _tracker: &TaskTracker,
) -> Option<mpsc::UnboundedSender<Cursor>> {
    if p.webhooks.is_empty() {
        return None;
    }
    None
}
