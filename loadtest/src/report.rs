//! The run's results: a human table, JSON for machines (`--json`), an HTML page with SVG charts
//! (`--report`), and merging several JSON files into one (`loadtest merge`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{SERIES, Second, Series, Totals, histogram};

/// Percentiles of one latency series, microseconds, plus the raw histogram for merging.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    /// `[value_us, count]` pairs: merge by re-recording them.
    pub histogram: Vec<[u64; 2]>,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
            histogram: h
                .iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect(),
        }
    }

    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = histogram();
        for [v, c] in &self.histogram {
            let _ = h.record_n(*v, *c);
        }
        h
    }
}

/// Server memory, when the run was given the gateway's pid or metrics URL.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerMemory {
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub connections: u64,
    pub bytes_per_connection: f64,
}

/// What the `search` scenario measured: seeding, the index catching up, queries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SearchFigures {
    /// Messages stored (over REST) and how long that took.
    pub seeded: u64,
    pub seed_s: f64,
    /// From the first seeded message to the index having all of them, and the resulting
    /// indexing rate (a floor: it cannot index faster than messages arrive).
    pub indexed_s: f64,
    pub indexed_per_s: f64,
    /// The index directory's size after seeding (given --index-dir), bytes.
    pub index_bytes: Option<u64>,
    /// Searches answered 200, and the mean hits per search.
    pub queries: u64,
    pub failed: u64,
    pub queries_per_s: f64,
    pub mean_hits: f64,
    /// Gateway CPU (user + system) per seeded message and per search, given its pid.
    pub server_cpu_us_per_message: Option<f64>,
    pub server_cpu_us_per_query: Option<f64>,
}

/// What the `push` scenario measured: one message to each offline seller, pushed once.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PushFigures {
    /// Whether the sellers had a device (false: the same sends, nobody to push).
    pub devices: bool,
    pub messages: u64,
    /// How long sending took (REST, one message per conversation).
    pub send_s: f64,
    /// Requests the push service fake received; sellers pushed more than once, never; and
    /// requests for no seller of this run.
    pub pushes: u64,
    pub pushed_twice: u64,
    pub never: u64,
    pub stray: u64,
    /// Pushes per second from the first push to the last, and from the first send.
    pub pushes_per_s: Option<f64>,
    pub pushes_per_s_from_first_send: Option<f64>,
    /// Gateway CPU (user + system) per message, sending and pushing included, given its pid.
    pub server_cpu_us_per_message: Option<f64>,
}

/// What the `media` scenario measured on the server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MediaFigures {
    pub megapixels: f64,
    pub uploaders: u64,
    /// Uploads answered 201; refused for now (429/503, retried after `Retry-After`); failed
    /// otherwise.
    pub uploads: u64,
    #[serde(default)]
    pub busy: u64,
    pub failed: u64,
    pub uploads_per_s: f64,
    /// Bytes the gateway received for stored uploads, and kept for them (its counters).
    pub bytes_in: u64,
    pub bytes_stored: u64,
    /// Gateway CPU (user + system) per stored upload, given its pid.
    pub server_cpu_s_per_upload: Option<f64>,
    pub rss_before_bytes: u64,
    /// The largest of samples every 100 ms while uploading.
    pub rss_peak_bytes: u64,
    pub rss_after_bytes: u64,
}

/// Everything a run reports; the `--json` file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub params: BTreeMap<String, String>,
    pub targets: Vec<String>,
    /// Unix ms when the measured phase began.
    pub started_at_ms: u64,
    /// Seconds of the measured (sending) phase.
    pub duration_s: f64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    /// Deliveries that acknowledged sends should have produced (acked × recipients).
    pub expected_deliveries: u64,
    /// Acknowledged messages some recipient never got.
    pub lost: u64,
    pub duplicates: u64,
    /// Messages a member got above the next seq of its conversation (out of order).
    #[serde(default)]
    pub order_gaps: u64,
    pub connects: u64,
    /// Connections that used QUIC 0-RTT.
    #[serde(default)]
    pub zero_rtt_connects: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub errors: BTreeMap<String, u64>,
    pub sent_per_s: f64,
    pub delivered_per_s: f64,
    pub latency: BTreeMap<String, Latency>,
    pub timeline: Vec<Second>,
    pub server: Option<ServerMemory>,
    #[serde(default)]
    pub media: Option<MediaFigures>,
    #[serde(default)]
    pub search: Option<SearchFigures>,
    #[serde(default)]
    pub push: Option<PushFigures>,
    /// How many runs this report merges (1 for a single run).
    pub merged_runs: u32,
}

fn series_name(s: Series) -> &'static str {
    match s {
        Series::Deliver => "deliver",
        Series::Ack => "ack",
        Series::Connect => "connect",
        Series::Reconnect => "reconnect",
        Series::History => "history",
        Series::List => "list",
        Series::Upload => "upload",
        Series::Search => "search",
    }
}

impl Report {
    pub fn from_totals(t: &Totals, duration_s: f64) -> Self {
        let mut latency = BTreeMap::new();
        for s in SERIES {
            let h = &t.latency[s as usize];
            if !h.is_empty() {
                latency.insert(series_name(s).to_owned(), Latency::of(h));
            }
        }
        let d = duration_s.max(0.001);
        Self {
            duration_s,
            sent: t.sent,
            acked: t.acked,
            delivered: t.delivered,
            connects: t.connects,
            zero_rtt_connects: t.zero_rtt,
            connect_failures: t.connect_failures,
            disconnects: t.disconnects,
            errors: t.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            sent_per_s: t.sent as f64 / d,
            delivered_per_s: t.delivered as f64 / d,
            latency,
            timeline: t.timeline.clone(),
            merged_runs: 1,
            ..Self::default()
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Merges reports of runs that ran at the same time (several load processes or machines):
    /// counts and rates add up, histograms merge exactly, timelines add by wall-clock second
    /// (percentiles per second take the worst of the runs).
    pub fn merge(reports: &[Report]) -> Report {
        let mut out = Report {
            scenario: reports
                .first()
                .map(|r| r.scenario.clone())
                .unwrap_or_default(),
            params: reports
                .first()
                .map(|r| r.params.clone())
                .unwrap_or_default(),
            started_at_ms: reports.iter().map(|r| r.started_at_ms).min().unwrap_or(0),
            ..Report::default()
        };
        let mut hists: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        let mut timeline: BTreeMap<u64, Second> = BTreeMap::new();
        let mut memory: Option<ServerMemory> = None;
        for r in reports {
            out.merged_runs += r.merged_runs.max(1);
            out.targets.extend(r.targets.iter().cloned());
            out.duration_s = out.duration_s.max(r.duration_s);
            out.sent += r.sent;
            out.acked += r.acked;
            out.delivered += r.delivered;
            out.expected_deliveries += r.expected_deliveries;
            out.lost += r.lost;
            out.duplicates += r.duplicates;
            out.order_gaps += r.order_gaps;
            out.connects += r.connects;
            out.zero_rtt_connects += r.zero_rtt_connects;
            out.connect_failures += r.connect_failures;
            out.disconnects += r.disconnects;
            out.sent_per_s += r.sent_per_s;
            out.delivered_per_s += r.delivered_per_s;
            for (k, v) in &r.errors {
                *out.errors.entry(k.clone()).or_default() += v;
            }
            for (k, l) in &r.latency {
                let h = hists.entry(k.clone()).or_insert_with(histogram);
                let _ = h.add(l.to_histogram());
            }
            let offset = r.started_at_ms.saturating_sub(out.started_at_ms) / 1000;
            for s in &r.timeline {
                let e = timeline.entry(s.t + offset).or_default();
                e.t = s.t + offset;
                e.sent += s.sent;
                e.acked += s.acked;
                e.delivered += s.delivered;
                e.errors += s.errors;
                e.connects += s.connects;
                e.p50_us = e.p50_us.max(s.p50_us);
                e.p99_us = e.p99_us.max(s.p99_us);
                e.max_us = e.max_us.max(s.max_us);
            }
            if let Some(m) = &r.server {
                let acc = memory.get_or_insert_with(ServerMemory::default);
                acc.rss_before_bytes += m.rss_before_bytes;
                acc.rss_after_bytes += m.rss_after_bytes;
                acc.connections += m.connections;
            }
        }
        if let Some(m) = &mut memory
            && m.connections > 0
        {
            m.bytes_per_connection =
                m.rss_after_bytes.saturating_sub(m.rss_before_bytes) as f64 / m.connections as f64;
        }
        out.server = memory;
        out.latency = hists
            .iter()
            .map(|(k, h)| (k.clone(), Latency::of(h)))
            .collect();
        out.timeline = timeline.into_values().collect();
        out
    }

    /// The human table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "\nscenario   {} ({})", self.scenario, params.join(" "));
        if self.merged_runs > 1 {
            let _ = writeln!(s, "merged     {} runs", self.merged_runs);
        }
        let _ = writeln!(s, "targets    {}", self.targets.join(", "));
        let _ = writeln!(s, "measured   {:.1} s", self.duration_s);
        let _ = writeln!(
            s,
            "messages   sent {}  acked {}  delivered {} of {} expected",
            self.sent, self.acked, self.delivered, self.expected_deliveries
        );
        let _ = writeln!(
            s,
            "integrity  lost {}  duplicates {}  order gaps {}  errors {}  disconnects {}",
            self.lost,
            self.duplicates,
            self.order_gaps,
            self.errors_total(),
            self.disconnects
        );
        let _ = writeln!(
            s,
            "throughput {:.0} sent/s  {:.0} deliveries/s",
            self.sent_per_s, self.delivered_per_s
        );
        let _ = writeln!(
            s,
            "connects   {} ok  {} failed  {} with 0-RTT",
            self.connects, self.connect_failures, self.zero_rtt_connects
        );
        if !self.errors.is_empty() {
            let errs: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect();
            let _ = writeln!(s, "errors     {}", errs.join("  "));
        }
        if let Some(m) = &self.server {
            let _ = writeln!(
                s,
                "server RSS {:.1} MiB → {:.1} MiB for {} connections: {:.0} bytes per connection",
                m.rss_before_bytes as f64 / 1048576.0,
                m.rss_after_bytes as f64 / 1048576.0,
                m.connections,
                m.bytes_per_connection
            );
        }
        if let Some(f) = &self.search {
            let cpu = |v: Option<f64>| v.map_or("?".to_owned(), |us| format!("{us:.0} µs"));
            let _ = writeln!(
                s,
                "search     seeded {} messages in {:.1} s ({:.0}/s, server CPU {} each); all \
                 searchable after {:.1} s ({:.0} indexed/s); index {}",
                f.seeded,
                f.seed_s,
                f.seeded as f64 / f.seed_s.max(0.001),
                cpu(f.server_cpu_us_per_message),
                f.indexed_s,
                f.indexed_per_s,
                f.index_bytes
                    .map_or("? (no --index-dir)".to_owned(), |b| format!(
                        "{:.1} MiB ({:.0} bytes per message)",
                        b as f64 / 1048576.0,
                        b as f64 / f.seeded.max(1) as f64
                    )),
            );
            let _ = writeln!(
                s,
                "search     {} queries ({} failed), {:.0}/s, {:.1} hits each; server CPU {} per query",
                f.queries,
                f.failed,
                f.queries_per_s,
                f.mean_hits,
                cpu(f.server_cpu_us_per_query),
            );
        }
        if let Some(p) = &self.push {
            let rate = |v: Option<f64>| v.map_or("?".to_owned(), |r| format!("{r:.0}/s"));
            let _ = writeln!(
                s,
                "push       {} messages sent in {:.1} s ({}); {} pushes: {} (first push to last), \
                 {} from the first send; {} pushed twice, {} never, {} stray; server CPU {} per message",
                p.messages,
                p.send_s,
                if p.devices {
                    "each seller one device"
                } else {
                    "no devices"
                },
                p.pushes,
                rate(p.pushes_per_s),
                rate(p.pushes_per_s_from_first_send),
                p.pushed_twice,
                p.never,
                p.stray,
                p.server_cpu_us_per_message
                    .map_or("?".to_owned(), |us| format!("{us:.0} µs")),
            );
        }
        if let Some(m) = &self.media {
            let mib = |b: u64| b as f64 / 1048576.0;
            let _ = writeln!(
                s,
                "media      {} uploads of {} MP ({} refused busy, {} failed) by {} uploaders: \
                 {:.2}/s; stored {:.1} MiB of {:.1} MiB received ({:.2})",
                m.uploads,
                m.megapixels,
                m.busy,
                m.failed,
                m.uploaders,
                m.uploads_per_s,
                mib(m.bytes_stored),
                mib(m.bytes_in),
                m.bytes_stored as f64 / m.bytes_in.max(1) as f64
            );
            let cpu = m
                .server_cpu_s_per_upload
                .map_or("? (no --server-pid)".to_owned(), |c| {
                    format!("{:.1} ms", c * 1000.0)
                });
            let _ = writeln!(
                s,
                "server     CPU per upload {cpu}; RSS {:.1} MiB before, {:.1} MiB peak, \
                 {:.1} MiB after",
                mib(m.rss_before_bytes),
                mib(m.rss_peak_bytes),
                mib(m.rss_after_bytes)
            );
        }
        let _ = writeln!(
            s,
            "\n{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "latency", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        for (name, l) in &self.latency {
            let _ = writeln!(
                s,
                "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                name,
                l.count,
                fmt_us(l.p50_us),
                fmt_us(l.p90_us),
                fmt_us(l.p99_us),
                fmt_us(l.p999_us),
                fmt_us(l.max_us),
                fmt_us(l.mean_us as u64)
            );
        }
        s
    }

    /// A self-contained HTML page: parameters, the table, latency and throughput over time.
    pub fn html(&self) -> String {
        let lat: Vec<(f64, [f64; 3])> = self
            .timeline
            .iter()
            .map(|s| {
                (
                    s.t as f64,
                    [
                        s.p50_us as f64 / 1000.0,
                        s.p99_us as f64 / 1000.0,
                        s.max_us as f64 / 1000.0,
                    ],
                )
            })
            .collect();
        let rate: Vec<(f64, [f64; 3])> = self
            .timeline
            .iter()
            .map(|s| {
                (
                    s.t as f64,
                    [s.sent as f64, s.delivered as f64, s.errors as f64],
                )
            })
            .collect();
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Parley load test: {scenario}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}pre{{background:#f6f6f6;padding:1em}}\
             h2{{margin-top:1.5em}} .legend span{{margin-right:1.5em}}</style></head><body>\
             <h1>Parley load test: {scenario}</h1><pre>{table}</pre>\
             <h2>Send → deliver latency per second (ms)</h2>{lat_svg}\
             <div class=\"legend\"><span style=\"color:#1f77b4\">■ p50</span><span style=\"color:#d62728\">■ p99</span><span style=\"color:#999\">■ max</span></div>\
             <h2>Throughput per second</h2>{rate_svg}\
             <div class=\"legend\"><span style=\"color:#1f77b4\">■ sent</span><span style=\"color:#d62728\">■ delivered</span><span style=\"color:#999\">■ errors</span></div>\
             </body></html>",
            scenario = escape(&self.scenario),
            table = escape(&self.table()),
            lat_svg = svg_chart(&lat),
            rate_svg = svg_chart(&rate),
        )
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Three lines over time in one SVG, with axis labels.
fn svg_chart(points: &[(f64, [f64; 3])]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 260.0;
    const PAD: f64 = 50.0;
    let colors = ["#1f77b4", "#d62728", "#999999"];
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points
        .iter()
        .flat_map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |v: f64| PAD + v / max_x * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD + -(v / max_y) * (H - 2.0 * PAD);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#444\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#444\"/>\
         <text x=\"{PAD}\" y=\"{t}\" font-size=\"11\">{top:.3}</text>\
         <text x=\"{r}\" y=\"{lb}\" font-size=\"11\" text-anchor=\"end\">{max_x:.0} s</text>\
         <text x=\"{PAD}\" y=\"{lb}\" font-size=\"11\">0</text>",
        b = H - PAD,
        r = W - PAD,
        t = PAD - 6.0,
        lb = H - PAD + 16.0,
        top = max_y / 1.1,
    );
    for (i, color) in colors.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(v[i])))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(delivered: u64, values: &[u64], started_at_ms: u64) -> Report {
        let mut h = histogram();
        for v in values {
            h.record(*v).expect("record");
        }
        Report {
            scenario: "direct".into(),
            started_at_ms,
            duration_s: 10.0,
            sent: delivered,
            acked: delivered,
            delivered,
            expected_deliveries: delivered,
            sent_per_s: delivered as f64 / 10.0,
            delivered_per_s: delivered as f64 / 10.0,
            latency: BTreeMap::from([("deliver".to_owned(), Latency::of(&h))]),
            timeline: vec![Second {
                t: 0,
                sent: delivered,
                delivered,
                p99_us: values.iter().copied().max().unwrap_or(0),
                ..Second::default()
            }],
            merged_runs: 1,
            ..Report::default()
        }
    }

    #[test]
    fn merge_adds_counts_and_merges_histograms_exactly() {
        let a = run(100, &[100, 200, 300], 1_000);
        let b = run(50, &[10_000], 2_000);
        let m = Report::merge(&[a, b]);
        assert_eq!(m.merged_runs, 2);
        assert_eq!(m.delivered, 150);
        assert_eq!(m.delivered_per_s, 15.0);
        let l = &m.latency["deliver"];
        assert_eq!(l.count, 4);
        assert!(l.max_us >= 9_990 && l.max_us <= 10_010, "{}", l.max_us);
        assert_eq!(m.timeline.len(), 2, "b started a second later");
        assert!(m.table().contains("delivered 150"));
        let html = m.html();
        assert!(html.contains("<svg") && html.contains("polyline"));
        // JSON round trip keeps what merging needs.
        let json = serde_json::to_string(&m).expect("json");
        let back: Report = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.latency["deliver"].count, 4);
    }
}
