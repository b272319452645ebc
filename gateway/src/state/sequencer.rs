//! Delivery order: per conversation, messages leave this node in seq order, each once.
//!
//! Storage numbers every message of a conversation 1, 2, 3, … (dense, in commit order). Sends
//! from different shards (or nodes) finish in any order, so without this a reader could get
//! seq 11 before 10, and a client resuming from 11 would never see 10. A [`Sequencer`] keeps
//! one *line* per conversation: the last seq delivered and the messages that came early. A
//! message is handed out only when every lower seq was; the caller that makes a line ready
//! drains it (one drainer at a time, so handing out stays in order across `.await`s).
//!
//! - **Duplicates** (a retried Send, an event read twice from the bus, a fill racing the live
//!   copy) are recognised by seq and handed back instead.
//! - **Gaps.** A message whose predecessor does not arrive within [`FILL_AFTER`] (its node died
//!   between storing and publishing, say) is fetched from storage: the caller gets
//!   [`Wake::Fill`]. Storage guarantees that when seq `n` is readable, so is every lower seq.
//! - **New lines.** A line this node has not seen (after a start, or once evicted) does not
//!   know what was delivered before. Seq 1 starts it at once. On a single node every append
//!   is announced here first ([`Sequencer::begin`]), so the lowest message starts it as soon as
//!   no local append of that conversation is in flight: whatever came before was offered
//!   already. Otherwise (an append still in flight, or a cluster, where other nodes' messages
//!   come unannounced) the line waits [`SETTLE`] for lower seqs, then looks back in storage for
//!   recent messages below the lowest it has ([`Wake::LookBack`]: an append stalled between
//!   storing and delivering, or its node between storing and publishing), and starts below
//!   the lowest it has then.
//! - **Memory.** Lines live in two generations per stripe; an idle line is forgotten after two
//!   rotations, a busy one (holding messages, draining, awaited) never. A gap holding more than
//!   [`MAX_PENDING`] messages is given up (counted): delivery goes on, and the sessions' outboxes
//!   tell their clients to resync.
//!
//! Pure bookkeeping: no I/O, no timers. The caller (`chat::delivery`) hands out, arranges the
//! wakes it is told about and reads storage for fills.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parley_types::ConversationId;
use tokio::time::Instant;

/// How long a gap may stay open before it is filled from storage.
pub(crate) const FILL_AFTER: Duration = Duration::from_millis(100);
/// How long a new line waits for messages below the first one it got.
pub(crate) const SETTLE: Duration = Duration::from_millis(50);
/// Messages a line holds behind a gap before it gives the gap up.
pub(crate) const MAX_PENDING: usize = 4096;
/// Failed fills of one gap before it is given up.
pub(crate) const MAX_FILL_FAILURES: u32 = 5;
/// Lines per generation, over all stripes (so at most twice this are kept).
pub(crate) const LINES_PER_GENERATION: usize = 1 << 17;
const STRIPES: usize = 64;

/// What [`Sequencer::offer`] made of a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer<T> {
    /// The line is ready and the caller is its drainer: call [`Sequencer::next`] until idle.
    Drain,
    /// Held until the line can go on. `Some(at)`: the caller arranges a [`Sequencer::wake`] at
    /// `at`.
    Held(Option<Instant>),
    /// Delivered or held already: the item back.
    Duplicate(T),
    /// No seq (an older node's event): deliver it now, outside any order.
    Unordered(T),
}

/// What a drainer gets from [`Sequencer::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    /// Hand this out, then ask again.
    Item(u64, T),
    /// Nothing ready; the caller is no longer the drainer. `Some(at)`: arrange a wake.
    Idle(Option<Instant>),
}

/// What an arranged wake (or a finished fill) asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    Nothing,
    /// Become the drainer.
    Drain,
    /// Read seqs `after + 1 ..= up_to` from storage, offer them, then call
    /// [`Sequencer::filled`].
    Fill {
        after: u64,
        up_to: u64,
    },
    /// A new line: offer the recent messages below `below` from storage (those stored within
    /// the last moments), then call [`Sequencer::filled`]; the line starts below the lowest.
    LookBack {
        below: u64,
    },
    /// Wake again at this instant.
    Later(Instant),
}

/// How a fill went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filled {
    /// Storage answered (every message it had in the range was offered).
    Read,
    /// Storage failed.
    Failed,
}

/// Counters, for metrics.
#[derive(Default)]
pub(crate) struct SequencerStats {
    /// Messages handed back as duplicates.
    pub(crate) duplicates: AtomicU64,
    /// Messages that reached a new line after it had started above them (not delivered live;
    /// sessions that resume get them from storage).
    pub(crate) late: AtomicU64,
    /// Gaps filled from storage (fills started).
    pub(crate) fills: AtomicU64,
    /// Gaps given up (too many held messages, storage failing, messages gone).
    pub(crate) gaps_skipped: AtomicU64,
    /// New lines that started after waiting [`SETTLE`].
    pub(crate) settled_late: AtomicU64,
}

struct Line<T> {
    /// The last seq handed out in order (meaningful once settled).
    delivered: u64,
    /// Whether `delivered` is known (a new line is not).
    settled: bool,
    /// Where the line started: seqs at or below it were never handed out here.
    baseline: u64,
    pending: BTreeMap<u64, T>,
    draining: bool,
    /// Local appends of this conversation not yet offered.
    in_flight: u32,
    /// The wake arranged, if any (one at a time).
    wake_at: Option<Instant>,
    created: Instant,
    /// Since when the lowest held message waits for its predecessor.
    gap_since: Option<Instant>,
    filling: bool,
    fill_failures: u32,
    looked_back: bool,
}

impl<T> Line<T> {
    fn new(now: Instant) -> Self {
        Self {
            delivered: 0,
            settled: false,
            baseline: 0,
            pending: BTreeMap::new(),
            draining: false,
            in_flight: 0,
            wake_at: None,
            created: now,
            gap_since: None,
            filling: false,
            fill_failures: 0,
            looked_back: false,
        }
    }

    fn busy(&self) -> bool {
        !self.pending.is_empty()
            || self.draining
            || self.filling
            || self.in_flight > 0
            || self.wake_at.is_some()
    }

    fn lowest(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }

    /// Arranges a wake at `at` unless one at or before it is arranged and still to come (one
    /// already due is arranged again: its caller may have had no runtime to arrange it on).
    fn arrange(&mut self, at: Instant, now: Instant) -> Option<Instant> {
        match self.wake_at {
            Some(existing) if existing <= at && existing > now => None,
            _ => {
                self.wake_at = Some(at);
                Some(at)
            }
        }
    }

    /// Starts the line below its lowest held message.
    fn settle(&mut self) {
        if let Some(low) = self.lowest() {
            self.delivered = low - 1;
            self.baseline = low - 1;
            self.settled = true;
        }
    }

    /// Gives up the gap below the lowest held message.
    fn skip_gap(&mut self, stats: &SequencerStats) {
        if let Some(low) = self.lowest() {
            self.delivered = low - 1;
            self.gap_since = None;
            self.fill_failures = 0;
            stats.gaps_skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Stripe<T> {
    current: HashMap<ConversationId, Line<T>>,
    previous: HashMap<ConversationId, Line<T>>,
}

impl<T> Stripe<T> {
    fn line(&mut self, conversation: ConversationId, now: Instant, cap: usize) -> &mut Line<T> {
        if !self.current.contains_key(&conversation) {
            let line = match self.previous.remove(&conversation) {
                Some(line) => line,
                None => {
                    if self.current.len() >= cap {
                        self.rotate();
                    }
                    Line::new(now)
                }
            };
            self.current.insert(conversation, line);
        }
        self.current.get_mut(&conversation).expect("inserted above")
    }

    /// The current generation becomes the previous one; busy lines of the old previous one
    /// move along, idle ones are forgotten.
    fn rotate(&mut self) {
        let old = std::mem::replace(&mut self.previous, std::mem::take(&mut self.current));
        self.current
            .extend(old.into_iter().filter(|(_, line)| line.busy()));
    }
}

/// The lines of every conversation this node delivers.
pub(crate) struct Sequencer<T> {
    stripes: Box<[Mutex<Stripe<T>>]>,
    /// Every append of a conversation is announced here first ([`Sequencer::begin`]): true on
    /// a single node, false in a cluster (other nodes' messages arrive unannounced).
    sees_every_append: bool,
    cap: usize,
    pub(crate) stats: SequencerStats,
}

impl<T> Sequencer<T> {
    pub(crate) fn new(sees_every_append: bool) -> Self {
        Self::with_capacity(sees_every_append, LINES_PER_GENERATION)
    }

    pub(crate) fn with_capacity(sees_every_append: bool, lines_per_generation: usize) -> Self {
        let stripes = (0..STRIPES)
            .map(|_| {
                Mutex::new(Stripe {
                    current: HashMap::new(),
                    previous: HashMap::new(),
                })
            })
            .collect();
        Self {
            stripes,
            sees_every_append,
            cap: (lines_per_generation / STRIPES).max(1),
            stats: SequencerStats::default(),
        }
    }

    fn with_line<R>(
        &self,
        conversation: ConversationId,
        now: Instant,
        f: impl FnOnce(&mut Line<T>, &SequencerStats) -> R,
    ) -> R {
        let i = (conversation.0.as_u128() % STRIPES as u128) as usize;
        let mut stripe = self.stripes[i].lock().unwrap_or_else(|e| e.into_inner());
        f(stripe.line(conversation, now, self.cap), &self.stats)
    }

    /// A local append of `conversation` starts (before storage is asked). Every `begin` is
    /// followed by one [`Sequencer::offer`] with `local = true` or one [`Sequencer::cancel`].
    pub(crate) fn begin(&self, conversation: ConversationId, now: Instant) {
        self.with_line(conversation, now, |line, _| line.in_flight += 1);
    }

    /// A local append announced with `begin` failed: nothing will be offered for it.
    pub(crate) fn cancel(&self, conversation: ConversationId, now: Instant) -> Offer<T> {
        let exact = self.sees_every_append;
        self.with_line(conversation, now, |line, stats| {
            line.in_flight = line.in_flight.saturating_sub(1);
            if line.pending.is_empty() {
                return Offer::Held(None);
            }
            Self::advance(line, exact, now, stats)
        })
    }

    /// Offers message `seq` of `conversation`. `local`: it is the result of an append announced
    /// with [`Sequencer::begin`].
    pub(crate) fn offer(
        &self,
        conversation: ConversationId,
        seq: u64,
        item: T,
        local: bool,
        now: Instant,
    ) -> Offer<T> {
        if seq == 0 {
            return Offer::Unordered(item);
        }
        let exact = self.sees_every_append;
        self.with_line(conversation, now, |line, stats| {
            if local {
                line.in_flight = line.in_flight.saturating_sub(1);
            }
            if (line.settled && seq <= line.delivered) || line.pending.contains_key(&seq) {
                let counter = if line.settled && seq <= line.baseline {
                    &stats.late
                } else {
                    &stats.duplicates
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return Offer::Duplicate(item);
            }
            line.pending.insert(seq, item);
            Self::advance(line, exact, now, stats)
        })
    }

    /// Whether the line can go on now, and who does what.
    fn advance(line: &mut Line<T>, exact: bool, now: Instant, stats: &SequencerStats) -> Offer<T> {
        if line.filling {
            // The filler goes on when it is done (`filled`).
            return Offer::Held(None);
        }
        if !line.settled {
            let first_ever = line.lowest() == Some(1);
            if first_ever || (exact && line.in_flight == 0) {
                line.settle();
            } else {
                return Offer::Held(line.arrange(line.created + SETTLE, now));
            }
        }
        if line.draining {
            return Offer::Held(None);
        }
        match line.lowest() {
            Some(low) if low == line.delivered + 1 => {
                line.draining = true;
                Offer::Drain
            }
            Some(_) if line.pending.len() > MAX_PENDING => {
                line.skip_gap(stats);
                line.draining = true;
                Offer::Drain
            }
            Some(_) => {
                let since = *line.gap_since.get_or_insert(now);
                Offer::Held(line.arrange(since + FILL_AFTER, now))
            }
            None => Offer::Held(None),
        }
    }

    /// For the drainer: the next message to hand out, or idle (the caller stops draining).
    pub(crate) fn next(&self, conversation: ConversationId, now: Instant) -> Next<T> {
        self.with_line(conversation, now, |line, _| {
            if let Some(low) = line.lowest()
                && low == line.delivered + 1
            {
                let item = line.pending.remove(&low).expect("lowest exists");
                line.delivered = low;
                line.gap_since = None;
                line.fill_failures = 0;
                return Next::Item(low, item);
            }
            line.draining = false;
            if line.pending.is_empty() || line.filling {
                return Next::Idle(None);
            }
            let since = *line.gap_since.get_or_insert(now);
            Next::Idle(line.arrange(since + FILL_AFTER, now))
        })
    }

    /// An arranged wake is due.
    pub(crate) fn wake(&self, conversation: ConversationId, now: Instant) -> Wake {
        let exact = self.sees_every_append;
        self.with_line(conversation, now, |line, stats| {
            line.wake_at = None;
            if line.filling {
                return Wake::Nothing;
            }
            if !line.settled && !line.pending.is_empty() {
                if now < line.created + SETTLE && !(exact && line.in_flight == 0) {
                    return Self::later(line, line.created + SETTLE, now);
                }
                let low = line.lowest().expect("not empty");
                if !line.looked_back && low > 1 {
                    line.looked_back = true;
                    line.filling = true;
                    return Wake::LookBack { below: low };
                }
                stats.settled_late.fetch_add(1, Ordering::Relaxed);
                line.settle();
            }
            if line.draining {
                return Wake::Nothing;
            }
            let Some(low) = line.lowest() else {
                return Wake::Nothing;
            };
            if low == line.delivered + 1 {
                line.draining = true;
                return Wake::Drain;
            }
            let since = *line.gap_since.get_or_insert(now);
            let due = since + FILL_AFTER * 2u32.pow(line.fill_failures.min(6));
            if now < due {
                return Self::later(line, due, now);
            }
            line.filling = true;
            stats.fills.fetch_add(1, Ordering::Relaxed);
            Wake::Fill {
                after: line.delivered,
                up_to: low - 1,
            }
        })
    }

    fn later(line: &mut Line<T>, at: Instant, now: Instant) -> Wake {
        match line.arrange(at, now) {
            Some(at) => Wake::Later(at),
            None => Wake::Nothing,
        }
    }

    /// A fill (after [`Wake::Fill`]) is done: what it read was offered.
    pub(crate) fn filled(&self, conversation: ConversationId, how: Filled, now: Instant) -> Wake {
        self.with_line(conversation, now, |line, stats| {
            line.filling = false;
            if !line.settled {
                // After a look-back: start below the lowest message there is now.
                stats.settled_late.fetch_add(1, Ordering::Relaxed);
                line.settle();
            }
            let Some(low) = line.lowest() else {
                return Wake::Nothing;
            };
            if low > line.delivered + 1 {
                match how {
                    // Storage has no message there (the conversation was deleted): give it up.
                    Filled::Read => line.skip_gap(stats),
                    Filled::Failed => {
                        line.fill_failures += 1;
                        if line.fill_failures >= MAX_FILL_FAILURES {
                            line.skip_gap(stats);
                        } else {
                            let since = line.gap_since.unwrap_or(now);
                            let due = since + FILL_AFTER * 2u32.pow(line.fill_failures.min(6));
                            return Self::later(line, due.max(now), now);
                        }
                    }
                }
            }
            if line.draining {
                return Wake::Nothing;
            }
            line.draining = true;
            Wake::Drain
        })
    }

    /// Lines kept now (both generations).
    #[cfg(test)]
    pub(crate) fn lines(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.current.len() + s.previous.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &Sequencer<&'static str>, c: ConversationId, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        while let Next::Item(seq, _) = s.next(c, now) {
            out.push(seq);
        }
        out
    }

    #[test]
    fn in_order_messages_go_straight_through() {
        let s = Sequencer::new(true);
        let (c, now) = (ConversationId::random(), Instant::now());
        for seq in 1..=3 {
            s.begin(c, now);
            assert_eq!(s.offer(c, seq, "m", true, now), Offer::Drain);
            assert_eq!(drain(&s, c, now), vec![seq]);
        }
        assert_eq!(
            s.offer(c, 2, "again", false, now),
            Offer::Duplicate("again")
        );
        assert_eq!(s.stats.duplicates.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_early_message_waits_for_its_predecessor() {
        let s = Sequencer::new(true);
        let (c, now) = (ConversationId::random(), Instant::now());
        s.offer(c, 1, "1", false, now);
        assert_eq!(drain(&s, c, now), vec![1]);
        let held = s.offer(c, 3, "3", false, now);
        assert_eq!(
            held,
            Offer::Held(Some(now + FILL_AFTER)),
            "a gap: wake to fill"
        );
        assert_eq!(s.offer(c, 2, "2", false, now), Offer::Drain);
        assert_eq!(drain(&s, c, now), vec![2, 3]);
        // The wake arranged for the gap finds nothing to do.
        assert_eq!(s.wake(c, now + FILL_AFTER), Wake::Nothing);
    }

    #[test]
    fn a_wake_due_but_never_run_is_arranged_again() {
        let s = Sequencer::new(true);
        let (c, t0) = (ConversationId::random(), Instant::now());
        s.offer(c, 1, "1", false, t0);
        drain(&s, c, t0);
        assert_eq!(
            s.offer(c, 3, "3", false, t0),
            Offer::Held(Some(t0 + FILL_AFTER))
        );
        // Arranged once while it is still to come...
        let soon = t0 + FILL_AFTER / 2;
        assert_eq!(s.offer(c, 4, "4", false, soon), Offer::Held(None));
        // ...and again once it is overdue (its timer was never started, say).
        let late = t0 + FILL_AFTER * 2;
        assert_eq!(
            s.offer(c, 5, "5", false, late),
            Offer::Held(Some(t0 + FILL_AFTER))
        );
    }

    #[test]
    fn a_second_offer_while_draining_is_handed_out_by_the_drainer() {
        let s = Sequencer::new(true);
        let (c, now) = (ConversationId::random(), Instant::now());
        assert_eq!(s.offer(c, 1, "1", false, now), Offer::Drain);
        assert!(matches!(s.next(c, now), Next::Item(1, _)));
        assert_eq!(s.offer(c, 2, "2", false, now), Offer::Held(None));
        assert!(matches!(s.next(c, now), Next::Item(2, _)));
        assert_eq!(s.next(c, now), Next::Idle(None));
    }

    #[test]
    fn a_gap_that_stays_open_is_filled_from_storage() {
        let s = Sequencer::new(true);
        let (c, t0) = (ConversationId::random(), Instant::now());
        s.offer(c, 1, "1", false, t0);
        drain(&s, c, t0);
        s.offer(c, 4, "4", false, t0);
        let early = t0 + FILL_AFTER / 2;
        assert_eq!(s.wake(c, early), Wake::Later(t0 + FILL_AFTER));
        let due = t0 + FILL_AFTER;
        assert_eq!(s.wake(c, due), Wake::Fill { after: 1, up_to: 3 });
        // The filler offers what storage had, then reports.
        assert_eq!(s.offer(c, 2, "2", false, due), Offer::Held(None), "filling");
        assert_eq!(s.offer(c, 3, "3", false, due), Offer::Held(None));
        assert_eq!(s.filled(c, Filled::Read, due), Wake::Drain);
        assert_eq!(drain(&s, c, due), vec![2, 3, 4]);
        assert_eq!(s.stats.fills.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_gap_storage_cannot_fill_is_given_up() {
        let s = Sequencer::new(true);
        let (c, t0) = (ConversationId::random(), Instant::now());
        s.offer(c, 1, "1", false, t0);
        drain(&s, c, t0);
        s.offer(c, 3, "3", false, t0);
        let mut now = t0 + FILL_AFTER;
        for _ in 0..MAX_FILL_FAILURES - 1 {
            assert!(matches!(s.wake(c, now), Wake::Fill { .. }));
            match s.filled(c, Filled::Failed, now) {
                Wake::Later(at) => now = at,
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(s.wake(c, now), Wake::Fill { .. }));
        assert_eq!(s.filled(c, Filled::Failed, now), Wake::Drain);
        assert_eq!(drain(&s, c, now), vec![3]);
        assert_eq!(s.stats.gaps_skipped.load(Ordering::Relaxed), 1);
        // Storage had nothing at all in a gap: given up at once.
        s.offer(c, 5, "5", false, now);
        let due = now + FILL_AFTER;
        assert!(matches!(s.wake(c, due), Wake::Fill { after: 3, up_to: 4 }));
        assert_eq!(s.filled(c, Filled::Read, due), Wake::Drain);
        assert_eq!(drain(&s, c, due), vec![5]);
    }

    #[test]
    fn too_many_held_messages_give_the_gap_up() {
        let s = Sequencer::new(true);
        let (c, now) = (ConversationId::random(), Instant::now());
        s.offer(c, 1, "1", false, now);
        drain(&s, c, now);
        for seq in 3..3 + MAX_PENDING as u64 {
            assert!(matches!(s.offer(c, seq, "m", false, now), Offer::Held(_)));
        }
        assert_eq!(
            s.offer(c, 3 + MAX_PENDING as u64, "m", false, now),
            Offer::Drain
        );
        assert_eq!(drain(&s, c, now).len(), MAX_PENDING + 1);
    }

    #[test]
    fn a_new_line_on_one_node_starts_when_no_local_append_is_in_flight() {
        let s = Sequencer::new(true);
        let (c, now) = (ConversationId::random(), Instant::now());
        // Two sends in flight; the later seq finishes first.
        s.begin(c, now);
        s.begin(c, now);
        assert!(matches!(
            s.offer(c, 8, "8", true, now),
            Offer::Held(Some(_))
        ));
        assert_eq!(s.offer(c, 7, "7", true, now), Offer::Drain);
        assert_eq!(drain(&s, c, now), vec![7, 8]);
        // A new line whose other append fails starts at what it has.
        let d = ConversationId::random();
        s.begin(d, now);
        s.begin(d, now);
        assert!(matches!(s.offer(d, 5, "5", true, now), Offer::Held(_)));
        assert_eq!(s.cancel(d, now), Offer::Drain);
        assert_eq!(drain(&s, d, now), vec![5]);
    }

    #[test]
    fn a_new_line_in_a_cluster_settles_looks_back_then_starts_unless_it_starts_at_one() {
        let s = Sequencer::new(false);
        let (c, t0) = (ConversationId::random(), Instant::now());
        let first = s.offer(c, 12, "12", false, t0);
        assert_eq!(first, Offer::Held(Some(t0 + SETTLE)));
        assert_eq!(s.offer(c, 11, "11", false, t0), Offer::Held(None));
        let due = t0 + SETTLE;
        assert_eq!(s.wake(c, due), Wake::LookBack { below: 11 });
        // Storage had a recent 10 (its node stalled before publishing it).
        assert_eq!(s.offer(c, 10, "10", false, due), Offer::Held(None));
        assert_eq!(
            s.wake(c, due),
            Wake::Nothing,
            "a wake during the look-back waits"
        );
        assert_eq!(s.filled(c, Filled::Read, due), Wake::Drain);
        assert_eq!(drain(&s, c, due), vec![10, 11, 12]);
        assert_eq!(s.offer(c, 9, "late", false, t0), Offer::Duplicate("late"));
        assert_eq!(s.stats.late.load(Ordering::Relaxed), 1);
        assert_eq!(s.stats.settled_late.load(Ordering::Relaxed), 1);
        let d = ConversationId::random();
        assert_eq!(s.offer(d, 1, "1", false, t0), Offer::Drain);
    }

    #[test]
    fn a_new_line_with_nothing_recent_below_starts_at_its_lowest() {
        let s = Sequencer::new(false);
        let (c, t0) = (ConversationId::random(), Instant::now());
        s.offer(c, 12, "12", false, t0);
        assert_eq!(s.wake(c, t0 + SETTLE), Wake::LookBack { below: 12 });
        assert_eq!(s.filled(c, Filled::Read, t0 + SETTLE), Wake::Drain);
        assert_eq!(drain(&s, c, t0 + SETTLE), vec![12]);
    }

    #[test]
    fn a_new_line_on_one_node_with_an_append_stalled_looks_back_after_settling() {
        let s = Sequencer::new(true);
        let (c, t0) = (ConversationId::random(), Instant::now());
        s.begin(c, t0);
        s.begin(c, t0);
        // The other append (seq 4) is stored but stalls before its offer.
        assert_eq!(s.offer(c, 5, "5", true, t0), Offer::Held(Some(t0 + SETTLE)));
        assert_eq!(s.wake(c, t0 + SETTLE), Wake::LookBack { below: 5 });
        assert_eq!(
            s.offer(c, 4, "4 from storage", false, t0 + SETTLE),
            Offer::Held(None)
        );
        assert_eq!(s.filled(c, Filled::Read, t0 + SETTLE), Wake::Drain);
        assert_eq!(drain(&s, c, t0 + SETTLE), vec![4, 5]);
        // The stalled append's own offer comes later: a duplicate (its Ack still goes out).
        assert_eq!(s.offer(c, 4, "4", true, t0 + SETTLE), Offer::Duplicate("4"));
    }

    #[test]
    fn messages_without_seq_are_not_ordered() {
        let s = Sequencer::new(true);
        let c = ConversationId::random();
        assert_eq!(
            s.offer(c, 0, "old", false, Instant::now()),
            Offer::Unordered("old")
        );
    }

    #[test]
    fn idle_lines_are_forgotten_busy_ones_kept() {
        let s = Sequencer::with_capacity(true, STRIPES * 4);
        let now = Instant::now();
        let busy = ConversationId::random();
        s.offer(busy, 1, "1", false, now);
        drain(&s, busy, now);
        s.offer(busy, 3, "3", false, now);
        for _ in 0..STRIPES * 40 {
            let c = ConversationId::random();
            s.offer(c, 1, "x", false, now);
            drain(&s, c, now);
        }
        assert!(s.lines() <= STRIPES * 4 * 2 + 1, "{} lines", s.lines());
        // The busy line kept its place: seq 2 completes it.
        assert_eq!(s.offer(busy, 2, "2", false, now), Offer::Drain);
        assert_eq!(drain(&s, busy, now), vec![2, 3]);
    }
}
