//! The message ids this node delivered recently, so live delivery is exactly-once per node: a
//! Send retried after its first node crashed between storing and delivering is delivered by the
//! retry, and a retry of a delivered message (or an event read twice from the bus) is not.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use parley_types::MessageId;

/// Message ids remembered (the oldest are forgotten first).
pub(crate) const DELIVERED_WINDOW: usize = 1 << 18;

#[derive(Default)]
struct Window {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

/// The window of delivered message ids.
#[derive(Default)]
pub(crate) struct Delivered {
    window: Mutex<Window>,
    /// Deliveries skipped because the message was delivered already.
    pub(crate) duplicates: AtomicU64,
}

impl Delivered {
    /// Records that this node delivers message `id` now; false if it already did (within the
    /// last [`DELIVERED_WINDOW`] messages).
    pub(crate) fn first(&self, id: MessageId) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if !w.set.insert(id.0) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        w.order.push_back(id.0);
        if w.order.len() > DELIVERED_WINDOW
            && let Some(old) = w.order.pop_front()
        {
            w.set.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_delivered_once_within_the_window() {
        let d = Delivered::default();
        assert!(d.first(MessageId(7)));
        assert!(!d.first(MessageId(7)));
        for id in 100..100 + DELIVERED_WINDOW as u64 {
            assert!(d.first(MessageId(id)));
        }
        // Forgotten once the window moved past it.
        assert!(d.first(MessageId(7)));
        assert!(!d.first(MessageId(100 + DELIVERED_WINDOW as u64 - 1)));
        assert_eq!(d.duplicates.load(Ordering::Relaxed), 2);
    }
}
