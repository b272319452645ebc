//! Message ids: `ms since EPOCH (42 bits) | node (10 bits) | sequence (12 bits)`.
//!
//! 42 bits of milliseconds last until 2163; 1024 nodes; 4096 ids per node per millisecond
//! (4 M/s). When a millisecond's 4096 are used up, or the clock steps back, the generator
//! borrows from the next millisecond instead of repeating an id, so ids from one generator
//! strictly increase.

use crate::domain::MessageId;

/// 2024-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
/// Highest node id.
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;

const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Generates strictly increasing ids for one node. Not thread-safe: one owner (the engine's
/// writer) calls it, which also makes id order equal commit order on this node.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    last_ms: u64,
    seq: u64,
}

impl IdGenerator {
    /// A generator for `node` (at most [`MAX_NODE`]; higher bits are cut off).
    pub fn new(node: u16) -> Self {
        Self {
            node: u64::from(node & MAX_NODE),
            last_ms: 0,
            seq: 0,
        }
    }

    /// The next id at wall-clock time `now_ms` (Unix ms).
    pub fn next(&mut self, now_ms: i64) -> MessageId {
        let ms = now_ms.saturating_sub(EPOCH_MS).max(0) as u64;
        if ms > self.last_ms {
            self.last_ms = ms;
            self.seq = 0;
        } else {
            self.seq += 1;
            if self.seq > SEQ_MASK {
                self.last_ms += 1;
                self.seq = 0;
            }
        }
        self.compose()
    }

    /// The next id at `now_ms` that is also above `floor` (another node's id, say, that must
    /// come before this one): when the clock has not passed `floor` yet, the id borrows
    /// `floor`'s next millisecond. Ids from this generator still strictly increase.
    pub fn next_after(&mut self, now_ms: i64, floor: MessageId) -> MessageId {
        let id = self.next(now_ms);
        if id > floor {
            return id;
        }
        self.last_ms = (floor.0 >> (NODE_BITS + SEQ_BITS)) + 1;
        self.seq = 0;
        self.compose()
    }

    fn compose(&self) -> MessageId {
        MessageId((self.last_ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | self.seq)
    }
}

/// Unix milliseconds encoded in an id.
pub fn timestamp_ms(id: MessageId) -> i64 {
    ((id.0 >> (NODE_BITS + SEQ_BITS)) as i64) + EPOCH_MS
}

/// The node that generated an id.
pub fn node_of(id: MessageId) -> u16 {
    ((id.0 >> SEQ_BITS) & u64::from(MAX_NODE)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_millisecond_and_across_clock_steps_back() {
        let mut g = IdGenerator::new(7);
        let t = EPOCH_MS + 1_000;
        let mut last = MessageId(0);
        for i in 0..10_000 {
            // Clock jitters backwards every few calls.
            let now = t + (i % 3) - 1;
            let id = g.next(now);
            assert!(id > last, "{id} after {last}");
            assert_eq!(node_of(id), 7);
            last = id;
        }
    }

    #[test]
    fn id_carries_its_time() {
        let mut g = IdGenerator::new(1);
        let now = 1_800_000_000_000;
        assert_eq!(timestamp_ms(g.next(now)), now);
    }

    #[test]
    fn next_after_passes_a_floor_from_the_future_and_stays_increasing() {
        let mut a = IdGenerator::new(3);
        let mut b = IdGenerator::new(9);
        let now = EPOCH_MS + 1_000;
        // b's clock runs 50 ms ahead; a must still come after b's id.
        let floor = b.next(now + 50);
        let x = a.next_after(now, floor);
        assert!(x > floor);
        assert_eq!(node_of(x), 3);
        let y = a.next_after(now, MessageId(0));
        assert!(y > x, "{y} after {x}");
        // A floor of the same millisecond from a higher node.
        let f = b.next(now + 500);
        let z = a.next_after(now + 500, f);
        assert!(z > f && z > y);
    }

    #[test]
    fn nodes_never_collide() {
        let now = EPOCH_MS + 5;
        let a = IdGenerator::new(1).next(now);
        let b = IdGenerator::new(2).next(now);
        assert_ne!(a, b);
    }
}
