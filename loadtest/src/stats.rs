//! Measurements: per-thread recorders (an uncontended lock each), folded once a second into the
//! run's totals and its timeline; sequence sets for loss and duplicate accounting.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Wall-clock nanoseconds (the timestamp carried in messages; one clock on one box).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Named latency series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    /// Send (scheduled time) → MessageNew at a recipient.
    Deliver,
    /// Send (scheduled time) → Ack at the sender.
    Ack,
    /// Connect (TCP or QUIC handshake) → Welcome.
    Connect,
    /// Reconnect → Welcome (QUIC: with 0-RTT).
    Reconnect,
    /// History request → HistoryPage.
    History,
    /// Conversations request → ConversationPage.
    List,
    /// Upload request sent → its answer (the photo processed and stored).
    Upload,
    /// Search request → its results.
    Search,
}

pub const SERIES: [Series; 8] = [
    Series::Deliver,
    Series::Ack,
    Series::Connect,
    Series::Reconnect,
    Series::History,
    Series::List,
    Series::Upload,
    Series::Search,
];

/// Counters and histograms of one thread for the current second.
pub struct Recorder {
    /// Connections that used QUIC 0-RTT.
    pub zero_rtt: u64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub errors: BTreeMap<u16, u64>,
    pub latency: Vec<Histogram<u64>>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            zero_rtt: 0,
            sent: 0,
            acked: 0,
            delivered: 0,
            connects: 0,
            connect_failures: 0,
            disconnects: 0,
            errors: BTreeMap::new(),
            latency: SERIES.iter().map(|_| histogram()).collect(),
        }
    }

    pub fn record(&mut self, series: Series, micros: u64) {
        if let Some(h) = self.latency.get_mut(series as usize) {
            h.saturating_record(micros.max(1));
        }
    }

    pub fn error(&mut self, code: u16) {
        *self.errors.entry(code).or_default() += 1;
    }

    fn reset(&mut self) {
        self.zero_rtt = 0;
        self.sent = 0;
        self.acked = 0;
        self.delivered = 0;
        self.connects = 0;
        self.connect_failures = 0;
        self.disconnects = 0;
        self.errors.clear();
        for h in &mut self.latency {
            h.reset();
        }
    }
}

fn registry() -> &'static Mutex<Vec<Arc<Mutex<Recorder>>>> {
    static REGISTRY: OnceLock<Mutex<Vec<Arc<Mutex<Recorder>>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

thread_local! {
    static LOCAL: Arc<Mutex<Recorder>> = {
        let r = Arc::new(Mutex::new(Recorder::new()));
        registry().lock().unwrap_or_else(|e| e.into_inner()).push(r.clone());
        r
    };
}

/// Records into this thread's recorder.
pub fn with<T>(f: impl FnOnce(&mut Recorder) -> T) -> T {
    LOCAL.with(|r| f(&mut r.lock().unwrap_or_else(|e| e.into_inner())))
}

/// One second of the run, all threads together.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the run started (sending phase starts at 0; setup is not recorded).
    pub t: u64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    pub connects: u64,
    /// Delivery latency of this second, µs (0 when nothing was delivered).
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Everything measured, folded from all threads.
pub struct Totals {
    pub zero_rtt: u64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub errors: BTreeMap<u16, u64>,
    pub latency: Vec<Histogram<u64>>,
    pub timeline: Vec<Second>,
}

impl Default for Totals {
    fn default() -> Self {
        Self::new()
    }
}

impl Totals {
    pub fn new() -> Self {
        Self {
            zero_rtt: 0,
            sent: 0,
            acked: 0,
            delivered: 0,
            connects: 0,
            connect_failures: 0,
            disconnects: 0,
            errors: BTreeMap::new(),
            latency: SERIES.iter().map(|_| histogram()).collect(),
            timeline: Vec::new(),
        }
    }

    /// Folds every thread's recorder into the totals and appends one timeline entry.
    pub fn collect(&mut self, t: u64) -> Second {
        let mut second = Second {
            t,
            ..Second::default()
        };
        let mut deliver = histogram();
        let recorders = registry().lock().unwrap_or_else(|e| e.into_inner()).clone();
        for r in recorders {
            let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
            second.sent += r.sent;
            second.acked += r.acked;
            second.delivered += r.delivered;
            second.connects += r.connects;
            second.errors += r.errors.values().sum::<u64>();
            self.connect_failures += r.connect_failures;
            self.zero_rtt += r.zero_rtt;
            self.disconnects += r.disconnects;
            for (code, n) in &r.errors {
                *self.errors.entry(*code).or_default() += n;
            }
            for (total, h) in self.latency.iter_mut().zip(&r.latency) {
                let _ = total.add(h);
            }
            let _ = deliver.add(&r.latency[Series::Deliver as usize]);
            r.reset();
        }
        self.sent += second.sent;
        self.acked += second.acked;
        self.delivered += second.delivered;
        self.connects += second.connects;
        if !deliver.is_empty() {
            second.p50_us = deliver.value_at_quantile(0.5);
            second.p99_us = deliver.value_at_quantile(0.99);
            second.max_us = deliver.max();
        }
        self.timeline.push(second.clone());
        second
    }
}

/// A set of sequence numbers (1, 2, 3, …) as a bitmap: loss and duplicate accounting.
#[derive(Clone, Debug, Default)]
pub struct SeqSet {
    bits: Vec<u64>,
    count: u64,
}

impl SeqSet {
    /// Adds `seq`; false when it was already there (a duplicate).
    pub fn insert(&mut self, seq: u32) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let fresh = self.bits[word] & mask == 0;
        self.bits[word] |= mask;
        self.count += u64::from(fresh);
        fresh
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    /// How many of `self` are missing from `other`.
    pub fn missing_from(&self, other: &SeqSet) -> u64 {
        self.bits
            .iter()
            .enumerate()
            .map(|(i, w)| (w & !other.bits.get(i).copied().unwrap_or(0)).count_ones() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqset_counts_duplicates_and_losses() {
        let mut acked = SeqSet::default();
        let mut seen = SeqSet::default();
        for s in 1..=200 {
            acked.insert(s);
        }
        for s in (1..=200).filter(|s| s % 10 != 0) {
            assert!(seen.insert(s));
        }
        assert!(!seen.insert(5), "duplicate");
        assert_eq!(acked.missing_from(&seen), 20);
        assert_eq!(seen.len(), 180);
    }
}
