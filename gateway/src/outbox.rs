//! The bounded queue toward one client, and its overflow policy.
//!
//! Policy (the only place it is decided):
//! - `Ephemeral` events (typing, presence) are dropped once the queue is half full.
//! - Everything else (messages, read receipts, this session's own answers) is never dropped:
//!   when fan-out finds the queue full (`max_frames` frames or `max_bytes` bytes), the session is
//!   closed with `slow consumer` and its queue discarded; the client reconnects and resumes from
//!   its last message id, so nothing is lost. A slow client never delays anyone else: fan-out
//!   pushes never wait.
//! - The session's own answers wait for space instead (`push_own`): that only slows the session
//!   that asked.
//! - Messages leave in seq order per conversation, each once: the outbox remembers, per
//!   conversation, the seq of the last message it queued (or Ack it queued for the session's own
//!   message). A message at or below it is a duplicate and dropped; one that would skip a seq
//!   closes the session with `resync` instead of being queued, so the client — which has
//!   everything up to the last message it got — resumes and gets the missing ones from
//!   storage. The first message of a conversation the outbox has no position in starts it.
//! - While a resume replays missed messages, live events are held aside and released after it;
//!   the replay sets the positions, so a live copy of a replayed message is dropped and the
//!   next one follows on (no gap, no duplicate).
//!
//! - Memory is bounded per session (`max_frames`, `max_bytes`) **and per node**: every outbox
//!   counts its queued bytes in the node's [`Budget`]. Past the budget, a session holding more
//!   than [`SHED_ABOVE`] is closed as a slow consumer at its next push — the ones that pin the
//!   most go first — and ephemeral events are dropped. The writer takes at most
//!   [`WRITE_BATCH_BYTES`] per write, so a socket that does not drain pins no more than that
//!   in its write buffer.
//!
//! One outbox belongs to one shard thread (`Rc`, `RefCell`); only the budget crosses threads.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parley_types::ConversationId;
use tokio::sync::Notify;

use parley_proto::ErrorCode;

pub(crate) use crate::event::Class;

/// Bytes the writer takes from the outbox per socket write (at least one item).
pub(crate) const WRITE_BATCH_BYTES: usize = 64 << 10;
/// Past the node's budget, sessions holding more than this are shed first.
pub(crate) const SHED_ABOVE: usize = 64 << 10;

/// Bytes queued toward clients on the whole node, against a limit.
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Sessions closed because the node was over its budget.
    pub(crate) shed: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
        })
    }

    /// Bytes queued now, node-wide.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Pongs waiting to be written before the oldest is dropped (each at most 125 bytes).
const MAX_PENDING_PONGS: usize = 16;
/// Conversations an outbox remembers a position in; past it, it forgets them all (the next
/// message of each starts it again: order is then the client's to check, as it always may).
const MAX_POSITIONS: usize = 4096;

/// One item for the transport's writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A protocol frame (WebSocket binary message / QUIC length-prefixed frame).
    Frame(Bytes),
    /// A protocol frame that may go unreliably (QUIC datagram); WebSocket sends it as a frame.
    Datagram(Bytes),
    /// A WebSocket text message (only the test echo endpoint sends these).
    Text(Bytes),
    /// A WebSocket pong answering a ping.
    Pong(Bytes),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Frame(b) | Item::Datagram(b) | Item::Text(b) | Item::Pong(b) => b.len(),
        }
    }
}

/// How the session ends, for the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Closing {
    /// The error that ends the session; None for a normal close (the peer closed).
    pub(crate) error: Option<ErrorCode>,
    /// The WebSocket close code to send.
    pub(crate) close_code: u16,
}

/// Result of a fan-out push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// An ephemeral event dropped under pressure.
    Dropped,
    /// The queue was full: the session is now closed as a slow consumer.
    Overflow,
    /// A message at or below what this session has of its conversation.
    Repeat,
    /// A message would have skipped a seq: the session is now closed with `resync`.
    Gap,
    /// The session is already closing.
    Closed,
}

/// What the writer gets from [`Outbox::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Items were moved into the caller's buffer.
    Items,
    /// Write what was moved (if anything), then close.
    Close(Closing),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Item>,
    bytes: usize,
    closing: Option<Closing>,
    /// Live events held during a resume replay.
    held: Option<VecDeque<(Item, Class)>>,
    held_bytes: usize,
    /// Per conversation, the seq of the last message (or own Ack) queued.
    positions: HashMap<ConversationId, u64>,
    dropped: u64,
}

/// Where a message stands against an outbox's position in its conversation.
enum Order {
    /// Next in line (or the first one): queue it, then move the position.
    Next,
    /// At or below the position.
    Repeat,
    /// Above the next seq.
    Gap,
}

impl State {
    fn order(&self, conversation: ConversationId, seq: u64) -> Order {
        match self.positions.get(&conversation) {
            Some(&at) if seq <= at => Order::Repeat,
            Some(&at) if seq > at + 1 => Order::Gap,
            _ => Order::Next,
        }
    }

    fn moved(&mut self, conversation: ConversationId, seq: u64) {
        if self.positions.len() >= MAX_POSITIONS && !self.positions.contains_key(&conversation) {
            self.positions.clear();
        }
        self.positions.insert(conversation, seq);
    }
}

/// The bounded outbound queue of one session.
pub(crate) struct Outbox {
    state: RefCell<State>,
    max_frames: usize,
    max_bytes: usize,
    budget: Arc<Budget>,
    /// Wakes the writer: items queued or closing.
    writable: Notify,
    /// Wakes `push_own` waiters: space freed or closing.
    space: Notify,
    /// Wakes the session driver: closing.
    closed: Notify,
}

impl Outbox {
    pub(crate) fn new(max_frames: usize, max_bytes: usize, budget: Arc<Budget>) -> Self {
        Self {
            state: RefCell::default(),
            max_frames,
            max_bytes,
            budget,
            writable: Notify::new(),
            space: Notify::new(),
            closed: Notify::new(),
        }
    }

    /// Fan-out push: never waits (see the module policy).
    pub(crate) fn push(&self, frame: Bytes, class: Class) -> Pushed {
        self.push_item(Item::Frame(frame), class)
    }

    /// Fan-out push of an event that may travel unreliably (a QUIC datagram when the peer
    /// takes them: typing indicators); same policy as [`Outbox::push`].
    pub(crate) fn push_datagram(&self, frame: Bytes, class: Class) -> Pushed {
        self.push_item(Item::Datagram(frame), class)
    }

    fn push_item(&self, item: Item, class: Class) -> Pushed {
        let mut s = self.state.borrow_mut();
        if s.closing.is_some() {
            return Pushed::Closed;
        }
        // Held events are put in line when they are released.
        let message = match class {
            Class::Message { conversation, seq } if seq > 0 && s.held.is_none() => {
                match s.order(conversation, seq) {
                    Order::Repeat => return Pushed::Repeat,
                    Order::Gap => {
                        drop(s);
                        self.close(ErrorCode::Resync);
                        return Pushed::Gap;
                    }
                    Order::Next => Some((conversation, seq)),
                }
            }
            _ => None,
        };
        let len = item.len();
        let (frames, bytes) = match &s.held {
            Some(h) => (h.len(), s.held_bytes),
            None => (s.queue.len(), s.bytes),
        };
        let node_full = self.budget.over();
        if class == Class::Ephemeral
            && (node_full || frames >= self.max_frames / 2 || bytes + len > self.max_bytes / 2)
        {
            s.dropped += 1;
            return Pushed::Dropped;
        }
        let shed = node_full && bytes > SHED_ABOVE;
        if shed || frames >= self.max_frames || bytes + len > self.max_bytes {
            drop(s);
            if shed {
                self.budget.shed.fetch_add(1, Ordering::Relaxed);
            }
            self.close(ErrorCode::SlowConsumer);
            return Pushed::Overflow;
        }
        self.budget.add(len);
        if let Some((conversation, seq)) = message {
            s.moved(conversation, seq);
        }
        match &mut s.held {
            Some(h) => {
                h.push_back((item, class));
                s.held_bytes += len;
            }
            None => {
                s.queue.push_back(item);
                s.bytes += len;
                drop(s);
                self.writable.notify_one();
            }
        }
        Pushed::Queued
    }

    /// The Ack of this session's own message `seq` of `conversation`, in line with the
    /// conversation's messages: never dropped as a repeat (a retried Send is answered too), and
    /// it moves the position like the message would have.
    pub(crate) fn push_ack(&self, frame: Bytes, conversation: ConversationId, seq: u64) -> Pushed {
        let class = {
            let s = self.state.borrow();
            match s.order(conversation, seq) {
                Order::Repeat => Class::Reliable,
                Order::Next | Order::Gap => Class::Message { conversation, seq },
            }
        };
        self.push_item(Item::Frame(frame), class)
    }

    /// The session's own answer: waits for space; `Err` when the session is closing.
    pub(crate) async fn push_own(&self, item: Item) -> Result<(), ()> {
        loop {
            {
                let mut s = self.state.borrow_mut();
                if s.closing.is_some() {
                    return Err(());
                }
                let len = item.len();
                if self.budget.over() && s.bytes > SHED_ABOVE {
                    // The node is over its budget and this session holds much of it.
                    drop(s);
                    self.budget.shed.fetch_add(1, Ordering::Relaxed);
                    self.close(ErrorCode::SlowConsumer);
                    return Err(());
                }
                // An item larger than the whole budget still goes out once the queue is empty.
                if s.queue.len() < self.max_frames
                    && (s.bytes + len <= self.max_bytes || s.queue.is_empty())
                {
                    s.queue.push_back(item);
                    s.bytes += len;
                    self.budget.add(len);
                    drop(s);
                    self.writable.notify_one();
                    return Ok(());
                }
            }
            self.space.notified().await;
        }
    }

    /// A pong answering a ping: ahead of queued data, never waiting. RFC 6455 lets a server
    /// answer only the latest of several pings; we answer up to `MAX_PENDING_PONGS` in order
    /// (Autobahn 2.10 sends ten back to back) and then keep just the newest ones.
    pub(crate) fn push_pong(&self, payload: Bytes) {
        let mut s = self.state.borrow_mut();
        if s.closing.is_some() {
            return;
        }
        let pongs = s
            .queue
            .iter()
            .take_while(|i| matches!(i, Item::Pong(_)))
            .count();
        if pongs >= MAX_PENDING_PONGS {
            s.queue.pop_front();
        }
        let at = pongs.min(MAX_PENDING_PONGS - 1);
        s.queue.insert(at, Item::Pong(payload));
        drop(s);
        self.writable.notify_one();
    }

    /// Start holding live events aside (resume replay begins).
    pub(crate) fn hold(&self) {
        let mut s = self.state.borrow_mut();
        if s.held.is_none() {
            s.held = Some(VecDeque::new());
            s.held_bytes = 0;
        }
    }

    /// Replay done: per replayed conversation, the seq of the last message the client has
    /// now (None: not known — a replay cut short, or a point without seq and nothing
    /// replayed); then the held events are queued in line (live copies of replayed messages
    /// dropped).
    pub(crate) fn release(&self, replayed: HashMap<ConversationId, Option<u64>>) {
        let held = {
            let mut s = self.state.borrow_mut();
            // They are counted again as they are queued below.
            self.budget.sub(s.held_bytes);
            s.held_bytes = 0;
            for (conversation, at) in replayed {
                match at {
                    Some(seq) if seq > 0 => s.moved(conversation, seq),
                    _ => {
                        s.positions.remove(&conversation);
                    }
                }
            }
            s.held.take()
        };
        let Some(held) = held else { return };
        for (item, class) in held {
            if matches!(self.push_item(item, class), Pushed::Overflow | Pushed::Gap) {
                return;
            }
        }
    }

    /// Begin closing because of `error`: the writer sends what is queued (unless the cause is
    /// a slow consumer, whose queue is discarded), then closes. The first cause wins.
    pub(crate) fn close(&self, error: ErrorCode) {
        self.begin_close(Closing {
            error: Some(error),
            close_code: error.close_code(),
        });
    }

    /// Begin a normal close answering the peer's close frame (`code` echoed).
    pub(crate) fn close_normal(&self, code: u16) {
        self.begin_close(Closing {
            error: None,
            close_code: code,
        });
    }

    fn begin_close(&self, closing: Closing) {
        let mut s = self.state.borrow_mut();
        if s.closing.is_some() {
            return;
        }
        if closing.error == Some(ErrorCode::SlowConsumer) {
            s.queue.clear();
            self.budget.sub(s.bytes);
            s.bytes = 0;
        }
        s.held = None;
        self.budget.sub(s.held_bytes);
        s.held_bytes = 0;
        s.closing = Some(closing);
        drop(s);
        self.writable.notify_one();
        self.space.notify_waiters();
        self.closed.notify_waiters();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.state.borrow().closing.is_some()
    }

    /// Resolves once the outbox is closing.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }

    /// For the writer: waits for items, moves queued ones into `buf` — up to
    /// [`WRITE_BATCH_BYTES`], at least one — and says to close once the queue is empty.
    pub(crate) async fn next(&self, buf: &mut Vec<Item>) -> Next {
        loop {
            {
                let mut s = self.state.borrow_mut();
                if !s.queue.is_empty() {
                    let (mut taken, mut counted) = (0, 0);
                    while let Some(item) = s.queue.front() {
                        let len = item.len();
                        if taken > 0 && taken + len > WRITE_BATCH_BYTES {
                            break;
                        }
                        taken += len;
                        // Pongs are not counted in `bytes`.
                        if !matches!(item, Item::Pong(_)) {
                            counted += len;
                        }
                        buf.extend(s.queue.pop_front());
                    }
                    s.bytes -= counted;
                    self.budget.sub(counted);
                    let closing = if s.queue.is_empty() { s.closing } else { None };
                    drop(s);
                    self.space.notify_waiters();
                    return match closing {
                        Some(c) => Next::Close(c),
                        None => Next::Items,
                    };
                }
                if let Some(c) = s.closing {
                    return Next::Close(c);
                }
            }
            self.writable.notified().await;
        }
    }

    /// Ephemeral events dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.state.borrow().dropped
    }

    /// Frames queued now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.borrow().queue.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let s = self.state.get_mut();
        self.budget.sub(s.bytes + s.held_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    fn msg(conversation: ConversationId, seq: u64) -> Class {
        Class::Message { conversation, seq }
    }

    #[test]
    fn ephemeral_events_are_dropped_first_then_overflow_closes() {
        let o = Outbox::new(8, 1 << 20, Budget::new(usize::MAX));
        let c = ConversationId::random();
        for i in 1..5 {
            assert_eq!(o.push(frame(10), msg(c, i)), Pushed::Queued);
        }
        assert_eq!(o.push(frame(10), Class::Ephemeral), Pushed::Dropped);
        for i in 5..9 {
            assert_eq!(o.push(frame(10), msg(c, i)), Pushed::Queued);
        }
        assert_eq!(o.push(frame(10), msg(c, 9)), Pushed::Overflow);
        assert!(o.is_closing());
        assert!(o.is_empty(), "a slow consumer's queue is discarded");
        assert_eq!(o.push(frame(10), Class::Reliable), Pushed::Closed);
        assert_eq!(o.dropped(), 1);
    }

    #[tokio::test]
    async fn pongs_go_first_in_order_and_are_capped() {
        let o = Outbox::new(100, 1 << 20, Budget::new(usize::MAX));
        o.push(frame(3), Class::Reliable);
        for i in 0..20u8 {
            o.push_pong(Bytes::from(vec![i]));
        }
        let mut buf = Vec::new();
        o.next(&mut buf).await;
        let pongs: Vec<u8> = buf
            .iter()
            .filter_map(|i| match i {
                Item::Pong(b) => Some(b[0]),
                _ => None,
            })
            .collect();
        assert_eq!(
            pongs,
            (4..20).collect::<Vec<u8>>(),
            "the newest 16, in order"
        );
        assert!(
            matches!(buf.last(), Some(Item::Frame(_))),
            "data after the pongs"
        );
    }

    #[test]
    fn byte_budget_counts_too() {
        let o = Outbox::new(100, 100, Budget::new(usize::MAX));
        assert_eq!(o.push(frame(60), Class::Reliable), Pushed::Queued);
        assert_eq!(o.push(frame(60), Class::Reliable), Pushed::Overflow);
    }

    #[tokio::test]
    async fn release_skips_what_the_replay_sent() {
        let o = Outbox::new(100, 1 << 20, Budget::new(usize::MAX));
        let (a, b) = (ConversationId::random(), ConversationId::random());
        o.hold();
        o.push(Bytes::from_static(b"a5"), msg(a, 5));
        o.push(Bytes::from_static(b"typing"), Class::Ephemeral);
        o.push(Bytes::from_static(b"a7"), msg(a, 7));
        o.push(Bytes::from_static(b"b1"), msg(b, 1));
        assert!(o.is_empty(), "held, not queued");
        o.push_own(Item::Frame(Bytes::from_static(b"replay")))
            .await
            .expect("own");
        o.release(HashMap::from([(a, Some(6))]));
        let mut buf = Vec::new();
        assert_eq!(o.next(&mut buf).await, Next::Items);
        let got: Vec<_> = buf
            .iter()
            .map(|i| match i {
                Item::Frame(b) => std::str::from_utf8(b).expect("utf8").to_owned(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec!["replay", "typing", "a7", "b1"]);
        // A live copy of a replayed message that arrives after the release is dropped too.
        assert_eq!(
            o.push(Bytes::from_static(b"late"), msg(a, 4)),
            Pushed::Repeat
        );
        assert_eq!(o.push(Bytes::from_static(b"a8"), msg(a, 8)), Pushed::Queued);
    }

    #[test]
    fn messages_go_in_line_and_a_skipped_seq_closes_with_resync() {
        let o = Outbox::new(100, 1 << 20, Budget::new(usize::MAX));
        let (a, b) = (ConversationId::random(), ConversationId::random());
        assert_eq!(
            o.push(frame(1), msg(a, 40)),
            Pushed::Queued,
            "the first starts the line"
        );
        assert_eq!(o.push(frame(1), msg(a, 40)), Pushed::Repeat);
        assert_eq!(o.push(frame(1), msg(b, 1)), Pushed::Queued);
        // The session's own message: its Ack moves the line; a retried Send's Ack still goes.
        assert_eq!(o.push_ack(frame(1), a, 41), Pushed::Queued);
        assert_eq!(o.push(frame(1), msg(a, 41)), Pushed::Repeat);
        assert_eq!(o.push_ack(frame(1), a, 41), Pushed::Queued);
        assert_eq!(o.push(frame(1), msg(a, 42)), Pushed::Queued);
        assert_eq!(o.len(), 5);
        assert_eq!(o.push(frame(1), msg(a, 44)), Pushed::Gap);
        assert!(o.is_closing());
        assert_eq!(
            o.len(),
            5,
            "what was in line still goes out before the close"
        );
    }

    #[test]
    fn an_unknown_replay_end_leaves_the_line_to_the_next_message() {
        let o = Outbox::new(100, 1 << 20, Budget::new(usize::MAX));
        let a = ConversationId::random();
        o.hold();
        o.push(frame(1), msg(a, 9));
        o.release(HashMap::from([(a, None)]));
        assert_eq!(o.len(), 1);
        assert_eq!(o.push(frame(1), msg(a, 10)), Pushed::Queued);
    }

    #[tokio::test]
    async fn the_node_budget_sheds_the_biggest_queues_first_and_every_byte_comes_back() {
        let budget = Budget::new(200 << 10);
        let c = ConversationId::random();
        let heavy = Outbox::new(1000, 4 << 20, budget.clone());
        let light = Outbox::new(1000, 4 << 20, budget.clone());
        // The heavy session stops reading: 150 KiB queued, under the node's 200 KiB.
        for seq in 1..=15 {
            assert_eq!(heavy.push(frame(10 << 10), msg(c, seq)), Pushed::Queued);
        }
        assert_eq!(budget.used(), 150 << 10);
        // The light one queues a little; the node goes over its budget.
        for seq in 1..=6 {
            assert_eq!(light.push(frame(10 << 10), msg(c, seq)), Pushed::Queued);
        }
        assert!(budget.used() > 200 << 10);
        // Typing is dropped everywhere; the heavy session goes at its next push, the light
        // one (under SHED_ABOVE) keeps its place.
        assert_eq!(light.push(frame(10), Class::Ephemeral), Pushed::Dropped);
        assert_eq!(heavy.push(frame(10 << 10), msg(c, 16)), Pushed::Overflow);
        assert_eq!(budget.shed.load(Ordering::Relaxed), 1);
        assert_eq!(budget.used(), 60 << 10, "the shed queue's bytes came back");
        assert_eq!(light.push(frame(10 << 10), msg(c, 7)), Pushed::Queued);
        // The writer drains in batches of at most WRITE_BATCH_BYTES.
        let mut buf = Vec::new();
        assert_eq!(light.next(&mut buf).await, Next::Items);
        assert_eq!(buf.len(), WRITE_BATCH_BYTES / (10 << 10));
        drop(light);
        drop(heavy);
        assert_eq!(budget.used(), 0, "dropped outboxes give everything back");
    }

    #[tokio::test]
    async fn push_own_waits_for_space_and_fails_when_closed() {
        let o = std::rc::Rc::new(Outbox::new(16, 1 << 20, Budget::new(usize::MAX)));
        for _ in 0..16 {
            o.push_own(Item::Frame(frame(1))).await.expect("space");
        }
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let waiter = {
                    let o = o.clone();
                    tokio::task::spawn_local(async move { o.push_own(Item::Frame(frame(1))).await })
                };
                tokio::task::yield_now().await;
                assert!(!waiter.is_finished(), "full: waits");
                let mut buf = Vec::new();
                o.next(&mut buf).await;
                assert_eq!(buf.len(), 16);
                assert_eq!(waiter.await.expect("join"), Ok(()));
                o.close(ErrorCode::ShuttingDown);
                assert_eq!(o.push_own(Item::Frame(frame(1))).await, Err(()));
                let mut buf = Vec::new();
                assert!(matches!(o.next(&mut buf).await, Next::Close(_)));
                assert_eq!(buf.len(), 1, "a non-slow close still sends what was queued");
            })
            .await;
    }
}
