//! A provider worker's side of the `Events` stream and its `Ack`s.
//!
//! The supervisor subscribes (`Events`; a new subscription replaces the old one) and
//! acknowledges each event once it has stored it durably (`Ack`). A worker confirms an
//! inbound message to its provider only after that acknowledgement, so a crash on either
//! side never loses a message: the provider delivers it again, the supervisor drops the
//! duplicate.

use std::pin::Pin;
use std::time::Duration;

use switchboard_proto::v1::WorkerEvent;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

pub type EventSender = mpsc::Sender<Result<WorkerEvent, Status>>;
pub type EventStream = Pin<Box<dyn Stream<Item = Result<WorkerEvent, Status>> + Send + 'static>>;

/// Events queued to the supervisor at most (then sending waits: back-pressure).
const QUEUE: usize = 256;

pub struct EventHub {
    subscriber: watch::Sender<Option<EventSender>>,
    acked: watch::Sender<u64>,
    /// The cursor the latest subscriber asked to resume after (empty: none).
    cursor: std::sync::Mutex<String>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            subscriber: watch::channel(None).0,
            acked: watch::channel(0).0,
            cursor: std::sync::Mutex::new(String::new()),
        }
    }
}

impl EventHub {
    /// For the `Events` RPC: the stream for the new subscriber.
    pub fn subscribe(&self) -> EventStream {
        self.subscribe_from(String::new())
    }

    /// As [`subscribe`](Self::subscribe), for a subscriber that stored events up to
    /// `cursor` (see `EventsRequest.cursor`).
    pub fn subscribe_from(&self, cursor: String) -> EventStream {
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = cursor;
        let (tx, rx) = mpsc::channel(QUEUE);
        self.subscriber.send_replace(Some(tx));
        Box::pin(ReceiverStream::new(rx))
    }

    /// For the `Ack` RPC: everything up to `event_id` is stored.
    pub fn ack(&self, event_id: u64) {
        self.acked.send_if_modified(|a| {
            let newer = event_id > *a;
            if newer {
                *a = event_id;
            }
            newer
        });
    }

    /// The highest event id acknowledged so far (0: none); for workers whose event ids
    /// are the provider's ordered positions (a row id), everything up to it is stored.
    pub fn last_acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// The cursor the current subscriber stored last (empty when it has none).
    pub fn cursor(&self) -> String {
        self.cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The subscriber listening now, if any.
    pub fn current(&self) -> Option<EventSender> {
        self.subscriber.borrow().clone().filter(|t| !t.is_closed())
    }

    /// Waits until a subscriber listens; `None` when `cancel` fires first.
    pub async fn listener(&self, cancel: &CancellationToken) -> Option<EventSender> {
        let mut rx = self.subscriber.subscribe();
        loop {
            if let Some(tx) = rx.borrow_and_update().clone().filter(|t| !t.is_closed()) {
                return Some(tx);
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                changed = rx.changed() => if changed.is_err() { return None },
            }
        }
    }

    /// Waits until everything up to `event_id` is acknowledged: `false` if the subscriber
    /// goes away, `timeout` passes, or `cancel` fires first.
    pub async fn acked(
        &self,
        event_id: u64,
        via: &EventSender,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> bool {
        let mut acked = self.acked.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            tokio::select! {
                r = acked.wait_for(|a| *a >= event_id) => r.is_ok(),
                _ = via.closed() => false,
                _ = cancel.cancelled() => false,
            }
        })
        .await;
        matches!(waited, Ok(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ack_releases_a_waiter_and_a_gone_subscriber_ends_the_wait() {
        let hub = EventHub::default();
        let cancel = CancellationToken::new();
        assert!(hub.current().is_none());
        let first = hub.subscribe();
        let tx = hub.listener(&cancel).await.unwrap();
        hub.ack(3);
        assert!(hub.acked(3, &tx, Duration::from_secs(1), &cancel).await);
        assert!(!hub.acked(4, &tx, Duration::from_millis(50), &cancel).await);
        // The supervisor resubscribes (dropping its old stream): the new one is current,
        // and a wait on the old one ends at once.
        let _second = hub.subscribe();
        drop(first);
        assert!(!hub.acked(4, &tx, Duration::from_secs(10), &cancel).await);
        assert!(!hub.current().unwrap().same_channel(&tx));
    }
}
