//! Prometheus metrics, hand-rolled on atomics: the hot path pays one relaxed add per event, no
//! label lookup, no allocation. `/metrics` renders the text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parley_proto::ErrorCode;
use parley_proto::{ClientKind, FrameKind};

/// Latency bucket upper bounds, microseconds (50 µs … 10 s).
const BUCKETS_US: [u64; 18] = [
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    u64::MAX,
];

/// A cumulative-bucket latency histogram.
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        let i = BUCKETS_US.partition_point(|b| *b < us);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, bound) in self.buckets.iter().zip(BUCKETS_US) {
            cumulative += b.load(Relaxed);
            let le = if bound == u64::MAX {
                "+Inf".to_owned()
            } else {
                format!("{}", bound as f64 / 1e6)
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Transports, for the connection gauge.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Transport {
    WebSocket = 0,
    Quic = 1,
}

const TRANSPORTS: [&str; 2] = ["ws", "quic"];

/// Counters one shard updates.
pub(crate) struct ShardMetrics {
    connections: [AtomicI64; 2],
    frames_in: [AtomicU64; ClientKind::ALL.len()],
    frames_out: [AtomicU64; FrameKind::ALL.len()],
    deliveries: AtomicU64,
    dropped_ephemeral: AtomicU64,
    slow_consumers: AtomicU64,
    order_resyncs: AtomicU64,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self {
            connections: std::array::from_fn(|_| AtomicI64::new(0)),
            frames_in: std::array::from_fn(|_| AtomicU64::new(0)),
            frames_out: std::array::from_fn(|_| AtomicU64::new(0)),
            deliveries: AtomicU64::new(0),
            dropped_ephemeral: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            order_resyncs: AtomicU64::new(0),
        }
    }
}

impl ShardMetrics {
    pub(crate) fn connection_opened(&self, t: Transport) {
        self.connections[t as usize].fetch_add(1, Relaxed);
    }
    pub(crate) fn connection_closed(&self, t: Transport) {
        self.connections[t as usize].fetch_sub(1, Relaxed);
    }
    pub(crate) fn frame_in(&self, kind: ClientKind) {
        if let Some(c) = self.frames_in.get(kind.index()) {
            c.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn frames_out(&self, kind: FrameKind, n: u64) {
        if let Some(c) = self.frames_out.get(kind.index()) {
            c.fetch_add(n, Relaxed);
        }
    }
    pub(crate) fn delivered(&self, n: u64) {
        self.deliveries.fetch_add(n, Relaxed);
    }
    pub(crate) fn dropped_ephemeral(&self) {
        self.dropped_ephemeral.fetch_add(1, Relaxed);
    }
    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Relaxed);
    }
    pub(crate) fn resync(&self) {
        self.order_resyncs.fetch_add(1, Relaxed);
    }
}

/// Counts a connection as open (by shard and transport) until dropped.
pub(crate) struct ConnectionGauge {
    metrics: std::sync::Arc<Metrics>,
    shard: usize,
    transport: Transport,
}

impl ConnectionGauge {
    pub(crate) fn open(
        metrics: &std::sync::Arc<Metrics>,
        shard: usize,
        transport: Transport,
    ) -> Self {
        metrics.shard(shard).connection_opened(transport);
        Self {
            metrics: metrics.clone(),
            shard,
            transport,
        }
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.metrics
            .shard(self.shard)
            .connection_closed(self.transport);
    }
}

/// Storage calls, for the latency histograms.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StorageOp {
    Write = 0,
    Read = 1,
}

/// The node's metrics.
pub(crate) struct Metrics {
    pub(crate) shards: Box<[ShardMetrics]>,
    errors: Vec<(u16, AtomicU64)>,
    /// Server-side send → deliver: from receiving a Send to enqueueing it on a shard's sessions.
    pub(crate) send_to_deliver: Histogram,
    storage: [Histogram; 2],
    storage_errors: AtomicU64,
    /// Uploads stored (images, files), bytes received and stored, image processing time.
    uploads: [AtomicU64; 2],
    upload_bytes_in: AtomicU64,
    media_reads: AtomicU64,
    media_read_bytes: AtomicU64,
    upload_bytes_stored: AtomicU64,
    pub(crate) image_processing: Histogram,
}

/// Node-wide values read when `/metrics` is rendered (they live with their owners).
pub(crate) struct NodeGauges<'a> {
    pub(crate) online_users: usize,
    pub(crate) resident_bytes: u64,
    /// Deliveries dropped because a shard's inbox was full (ephemeral events only).
    pub(crate) inbox_full_drops: u64,
    /// Block changes that made the block cache forget users (this node's and the bus's).
    pub(crate) block_invalidations: u64,
    /// Delivery order (`state::sequencer`): duplicates skipped, late messages not delivered
    /// live, gaps filled from storage and given up.
    pub(crate) order: OrderGauges,
    /// Connections admitted now, and refused because the node or one address was full.
    pub(crate) connections_admitted: usize,
    pub(crate) refused_node_full: u64,
    pub(crate) refused_address_full: u64,
    /// Bytes queued in all outboxes now, and sessions shed for the node's budget.
    pub(crate) outbox_queued_bytes: usize,
    pub(crate) outbox_shed: u64,
    pub(crate) bus: Option<BusGauges<'a>>,
    pub(crate) search: Option<SearchGauges>,
}

/// The search index: what it took in, and how far behind the change feed it is.
pub(crate) struct SearchGauges {
    pub(crate) indexed: u64,
    pub(crate) deletes: u64,
    pub(crate) commits: u64,
    pub(crate) queries: u64,
    /// Searches run again relaxed (Solr: a typed prefix expanding past the clause limit).
    pub(crate) relaxed: u64,
    /// Change-feed entries stored but not yet searchable.
    pub(crate) lag: u64,
}

fn labelled_refusals(out: &mut String, node_full: u64, address_full: u64) {
    let _ = writeln!(
        out,
        "# HELP parley_connections_refused_total Connections refused at accept, by the limit they hit."
    );
    let _ = writeln!(out, "# TYPE parley_connections_refused_total counter");
    let _ = writeln!(
        out,
        "parley_connections_refused_total{{limit=\"node\"}} {node_full}"
    );
    let _ = writeln!(
        out,
        "parley_connections_refused_total{{limit=\"address\"}} {address_full}"
    );
}

/// The delivery order's counters, read when `/metrics` is rendered.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OrderGauges {
    pub(crate) duplicates: u64,
    pub(crate) late: u64,
    pub(crate) fills: u64,
    pub(crate) gaps_skipped: u64,
}

/// The cluster bus's counters, read when `/metrics` is rendered.
pub(crate) struct BusGauges<'a> {
    pub(crate) connected: bool,
    pub(crate) published: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
    pub(crate) gaps: u64,
    pub(crate) lag: &'a Histogram,
}

impl Metrics {
    pub(crate) fn new(shards: usize) -> Self {
        let errors = (1000..=1999)
            .filter_map(ErrorCode::from_code)
            .map(|c| (c.code(), AtomicU64::new(0)))
            .collect();
        Self {
            shards: (0..shards).map(|_| ShardMetrics::default()).collect(),
            errors,
            send_to_deliver: Histogram::default(),
            storage: [Histogram::default(), Histogram::default()],
            storage_errors: AtomicU64::new(0),
            uploads: [AtomicU64::new(0), AtomicU64::new(0)],
            upload_bytes_in: AtomicU64::new(0),
            media_reads: AtomicU64::new(0),
            media_read_bytes: AtomicU64::new(0),
            upload_bytes_stored: AtomicU64::new(0),
            image_processing: Histogram::default(),
        }
    }

    pub(crate) fn shard(&self, id: usize) -> &ShardMetrics {
        // Shard ids come from `server::start`, which sized this; fall back to shard 0.
        self.shards.get(id).unwrap_or(&self.shards[0])
    }

    pub(crate) fn error(&self, code: u16) {
        if let Some((_, c)) = self.errors.iter().find(|(k, _)| *k == code) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn storage(&self, op: StorageOp, took: Duration, ok: bool) {
        self.storage[op as usize].observe(took);
        if !ok {
            self.storage_errors.fetch_add(1, Relaxed);
        }
    }

    /// An upload was stored: `bytes_in` received, `bytes_stored` kept (renditions for images).
    pub(crate) fn media_upload(
        &self,
        image: bool,
        bytes_in: u64,
        bytes_stored: u64,
        processing: Duration,
    ) {
        self.uploads[usize::from(!image)].fetch_add(1, Relaxed);
        self.upload_bytes_in.fetch_add(bytes_in, Relaxed);
        self.upload_bytes_stored.fetch_add(bytes_stored, Relaxed);
        if image {
            self.image_processing.observe(processing);
        }
    }

    /// The origin served `bytes` of a stored blob (a CDN in front makes these rare).
    pub(crate) fn media_read(&self, bytes: u64) {
        self.media_reads.fetch_add(1, Relaxed);
        self.media_read_bytes.fetch_add(bytes, Relaxed);
    }

    /// The Prometheus text format.
    pub(crate) fn render(&self, node: &NodeGauges<'_>) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP parley_connections Open client connections.\n");
        out.push_str("# TYPE parley_connections gauge\n");
        for (i, s) in self.shards.iter().enumerate() {
            for (t, name) in TRANSPORTS.iter().enumerate() {
                let v = s.connections[t].load(Relaxed);
                let _ = writeln!(
                    out,
                    "parley_connections{{transport=\"{name}\",shard=\"{i}\"}} {v}"
                );
            }
        }
        self.render_counters(&mut out);
        out.push_str("# HELP parley_send_to_deliver_seconds Server side: Send received → enqueued on a shard's sessions.\n");
        out.push_str("# TYPE parley_send_to_deliver_seconds histogram\n");
        self.send_to_deliver
            .render(&mut out, "parley_send_to_deliver_seconds", "");
        out.push_str("# HELP parley_storage_seconds Storage call latency.\n");
        out.push_str("# TYPE parley_storage_seconds histogram\n");
        for (op, label) in [
            (StorageOp::Write, "op=\"write\""),
            (StorageOp::Read, "op=\"read\""),
        ] {
            self.storage[op as usize].render(&mut out, "parley_storage_seconds", label);
        }
        out.push_str("# HELP parley_media_image_processing_seconds An uploaded image's decode, resize and encode on the blocking pool.\n");
        out.push_str("# TYPE parley_media_image_processing_seconds histogram\n");
        self.image_processing
            .render(&mut out, "parley_media_image_processing_seconds", "");
        render_node(&mut out, node);
        out
    }

    fn render_counters(&self, out: &mut String) {
        let sum = |f: &dyn Fn(&ShardMetrics) -> u64| self.shards.iter().map(f).sum::<u64>();
        labelled(
            out,
            "parley_frames_in_total",
            "Frames received from clients, by type.",
            ClientKind::ALL.iter().map(|k| {
                let v = sum(&|s| s.frames_in[k.index()].load(Relaxed));
                (format!("type=\"{}\"", k.name()), v)
            }),
        );
        labelled(
            out,
            "parley_frames_out_total",
            "Frames queued to clients, by type.",
            FrameKind::ALL.iter().map(|k| {
                let v = sum(&|s| s.frames_out[k.index()].load(Relaxed));
                (format!("type=\"{}\"", k.name()), v)
            }),
        );
        for (name, help, v) in [
            (
                "parley_deliveries_total",
                "Fan-out events enqueued to sessions.",
                sum(&|s| s.deliveries.load(Relaxed)),
            ),
            (
                "parley_dropped_ephemeral_total",
                "Typing/presence events dropped because a session's queue was half full.",
                sum(&|s| s.dropped_ephemeral.load(Relaxed)),
            ),
            (
                "parley_slow_consumer_disconnects_total",
                "Sessions closed because they could not keep up.",
                sum(&|s| s.slow_consumers.load(Relaxed)),
            ),
            (
                "parley_order_resyncs_total",
                "Sessions told to resync because a message would have skipped a seq.",
                sum(&|s| s.order_resyncs.load(Relaxed)),
            ),
            (
                "parley_storage_errors_total",
                "Storage calls that failed.",
                self.storage_errors.load(Relaxed),
            ),
            (
                "parley_media_upload_bytes_in_total",
                "Bytes of uploads stored, as received.",
                self.upload_bytes_in.load(Relaxed),
            ),
            (
                "parley_media_upload_bytes_stored_total",
                "Bytes kept for those uploads (images: the renditions, never the original).",
                self.upload_bytes_stored.load(Relaxed),
            ),
            (
                "parley_media_origin_reads_total",
                "Media bodies the /media/ route read from the store and served.",
                self.media_reads.load(Relaxed),
            ),
            (
                "parley_media_origin_read_bytes_total",
                "Bytes of those bodies.",
                self.media_read_bytes.load(Relaxed),
            ),
        ] {
            counter(out, name, help, v);
        }
        labelled(
            out,
            "parley_media_uploads_total",
            "Uploads stored, by kind.",
            ["image", "file"]
                .iter()
                .zip(&self.uploads)
                .map(|(k, c)| (format!("kind=\"{k}\""), c.load(Relaxed))),
        );
        labelled(
            out,
            "parley_errors_total",
            "Error frames and REST errors sent, by code.",
            self.errors.iter().filter_map(|(code, c)| {
                let v = c.load(Relaxed);
                let name = ErrorCode::from_code(*code).map_or("unknown", ErrorCode::name);
                (v > 0).then(|| (format!("code=\"{code}\",name=\"{name}\""), v))
            }),
        );
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// A counter with one series per label set.
fn labelled(out: &mut String, name: &str, help: &str, values: impl Iterator<Item = (String, u64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in values {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn render_node(out: &mut String, n: &NodeGauges<'_>) {
    gauge(
        out,
        "parley_online_users",
        "Users with at least one session on this node.",
        n.online_users as f64,
    );
    gauge(
        out,
        "process_resident_memory_bytes",
        "Resident memory of this process.",
        n.resident_bytes as f64,
    );
    counter(
        out,
        "parley_inbox_full_drops_total",
        "Typing/presence deliveries dropped because a shard's inbox was full.",
        n.inbox_full_drops,
    );
    counter(
        out,
        "parley_block_invalidations_total",
        "Block changes (here or from the bus) that dropped users from the block cache.",
        n.block_invalidations,
    );
    gauge(
        out,
        "parley_connections_admitted",
        "Connections (TCP and QUIC) holding a place under --max-connections.",
        n.connections_admitted as f64,
    );
    labelled_refusals(out, n.refused_node_full, n.refused_address_full);
    gauge(
        out,
        "parley_outbox_queued_bytes",
        "Bytes queued for clients in all outboxes (bounded by --outbox-node-bytes).",
        n.outbox_queued_bytes as f64,
    );
    counter(
        out,
        "parley_outbox_shed_total",
        "Sessions closed as slow consumers because the node's outbox budget was used up.",
        n.outbox_shed,
    );
    for (name, help, v) in [
        (
            "parley_duplicate_deliveries_total",
            "Messages this node skipped because it had delivered them already (retries).",
            n.order.duplicates,
        ),
        (
            "parley_late_messages_total",
            "Messages that reached a newly started delivery line below where it started.",
            n.order.late,
        ),
        (
            "parley_order_fills_total",
            "Delivery gaps filled from storage.",
            n.order.fills,
        ),
        (
            "parley_order_gaps_skipped_total",
            "Delivery gaps given up (storage failing, messages gone, too many held).",
            n.order.gaps_skipped,
        ),
    ] {
        counter(out, name, help, v);
    }
    if let Some(s) = &n.search {
        for (name, help, v) in [
            (
                "parley_search_indexed_total",
                "Messages added to the search index.",
                s.indexed,
            ),
            (
                "parley_search_deletes_total",
                "Deleted conversations removed from the search index.",
                s.deletes,
            ),
            (
                "parley_search_commits_total",
                "Search index commits (each makes what came before searchable).",
                s.commits,
            ),
            ("parley_search_queries_total", "Searches run.", s.queries),
            (
                "parley_search_relaxed_total",
                "Searches run again with a typed prefix matched anywhere in the message, not \
                 right after the words before it (Solr: it expanded past the clause limit).",
                s.relaxed,
            ),
        ] {
            counter(out, name, help, v);
        }
        gauge(
            out,
            "parley_search_lag_changes",
            "Stored messages and deletes not yet searchable (change-feed entries behind).",
            s.lag as f64,
        );
    }
    let Some(bus) = &n.bus else { return };
    gauge(
        out,
        "parley_bus_connected",
        "1 while the cluster bus reads from its log.",
        f64::from(u8::from(bus.connected)),
    );
    for (name, help, v) in [
        (
            "parley_bus_published_total",
            "Events written to the cluster bus.",
            bus.published,
        ),
        (
            "parley_bus_received_total",
            "Events read from other nodes.",
            bus.received,
        ),
        (
            "parley_bus_dropped_total",
            "Events dropped because the publish queue was full.",
            bus.dropped,
        ),
        (
            "parley_bus_gaps_total",
            "Times this node found it had missed bus events.",
            bus.gaps,
        ),
    ] {
        counter(out, name, help, v);
    }
    out.push_str(
        "# HELP parley_bus_lag_seconds Cluster bus: event read time minus publication time.\n",
    );
    out.push_str("# TYPE parley_bus_lag_seconds histogram\n");
    bus.lag.render(out, "parley_bus_lag_seconds", "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(2);
        m.shard(1).connection_opened(Transport::WebSocket);
        m.shard(0).frame_in(ClientKind::Send);
        m.shard(1).frames_out(FrameKind::MessageNew, 5);
        m.error(1500);
        m.send_to_deliver.observe(Duration::from_micros(700));
        m.storage(StorageOp::Write, Duration::from_millis(2), true);
        let lag = Histogram::default();
        let text = m.render(&NodeGauges {
            online_users: 4,
            resident_bytes: 1,
            inbox_full_drops: 2,
            block_invalidations: 0,
            order: OrderGauges::default(),
            connections_admitted: 7,
            refused_node_full: 0,
            refused_address_full: 2,
            outbox_queued_bytes: 10,
            outbox_shed: 3,
            bus: Some(BusGauges {
                connected: true,
                published: 3,
                received: 0,
                dropped: 0,
                gaps: 0,
                lag: &lag,
            }),
            search: Some(SearchGauges {
                indexed: 9,
                deletes: 1,
                commits: 2,
                queries: 5,
                relaxed: 1,
                lag: 4,
            }),
        });
        assert!(text.contains("parley_search_indexed_total 9"));
        assert!(text.contains("parley_search_lag_changes 4"));
        assert!(text.contains("parley_connections{transport=\"ws\",shard=\"1\"} 1"));
        assert!(text.contains("parley_frames_in_total{type=\"send\"} 1"));
        assert!(text.contains("parley_frames_out_total{type=\"message_new\"} 5"));
        assert!(text.contains("parley_connections_refused_total{limit=\"address\"} 2"));
        assert!(text.contains("parley_connections_admitted 7"));
        assert!(text.contains("parley_outbox_queued_bytes 10"));
        assert!(text.contains("parley_outbox_shed_total 3"));
        assert!(text.contains("parley_errors_total{code=\"1500\",name=\"slow_consumer\"} 1"));
        assert!(text.contains("parley_send_to_deliver_seconds_bucket{le=\"0.0005\"} 0"));
        assert!(text.contains("parley_send_to_deliver_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("parley_send_to_deliver_seconds_count 1"));
        assert!(text.contains("parley_storage_seconds_bucket{op=\"write\",le=\"0.0025\"} 1"));
        assert!(text.contains("parley_online_users 4"));
        assert!(text.contains(
            "# TYPE parley_inbox_full_drops_total counter\nparley_inbox_full_drops_total 2"
        ));
        assert!(
            text.contains(
                "# TYPE parley_bus_published_total counter\nparley_bus_published_total 3"
            )
        );
        assert!(text.contains("parley_bus_lag_seconds_count 0"));
    }
}
