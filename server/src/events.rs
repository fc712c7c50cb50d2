//! Fan-out of applied changes to live subscriptions.
//!
//! The writer publishes the changes of every committed batch; each
//! `Subscribe` stream holds a receiver and picks out what concerns its
//! account. A subscriber that falls more than [`CAPACITY`] batches behind
//! loses the oldest ones and is told so (the client then refreshes), so a
//! slow client can never hold memory or the writer hostage.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::state::Change;

/// Batches of changes buffered per subscriber before it is declared lagging.
pub const CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Vec<Change>>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventHub {
    pub fn publish(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            // No receivers is fine: nobody is subscribed.
            let _ = self.tx.send(Arc::new(changes));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Change>>> {
        self.tx.subscribe()
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
