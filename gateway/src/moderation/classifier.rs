//! The optional external classifier ("AI moderation"): an HTTP service that scores a message's
//! text from 0 (fine) to 1 (abusive). `POST <url>` with `{"text", "sender", "conversation"}`,
//! answered `{"score": <0..1>}`.
//!
//! It sits in the send path, so it is held short: one `--moderation-classifier-timeout-ms`
//! for the whole call (connect included), at most `--moderation-classifier-concurrency` calls
//! at once (past that a message is not sent to it: the caller's rule fails open or closed), an
//! answer cache by content hash (the same text is scored once), kept-alive connections. Plain
//! HTTP: run it beside the node (a sidecar) or on the internal network.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

/// Answers cached before the cache is cleared (a memory bound; a miss is one call).
const CACHE_LIMIT: usize = 100_000;
/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 4096;
/// Idle connections kept.
const IDLE_CONNECTIONS: usize = 32;
/// Call latency bucket bounds, seconds (the `+Inf` bucket is the count).
const BUCKETS_S: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Why a message got no score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// Connection refused or broken, or a status other than 200.
    Unavailable,
    /// The concurrency cap was reached.
    Busy,
    /// An answer without a score from 0 to 1.
    BadAnswer,
}

impl Failure {
    fn index(self) -> usize {
        self as usize
    }
    const ALL: [(Failure, &'static str); 4] = [
        (Failure::Timeout, "timeout"),
        (Failure::Unavailable, "unavailable"),
        (Failure::Busy, "busy"),
        (Failure::BadAnswer, "bad_answer"),
    ];
}

pub(crate) struct Classifier {
    addr: SocketAddr,
    authority: String,
    path: String,
    timeout: Duration,
    permits: Semaphore,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    cache: DashMap<[u8; 16], f32>,
    calls: AtomicU64,
    cache_hits: AtomicU64,
    failures: [AtomicU64; 4],
    buckets: [AtomicU64; BUCKETS_S.len()],
    sum_us: AtomicU64,
}

/// What the classifier is told about a message.
pub(crate) struct Ask<'a> {
    pub(crate) text: &'a str,
    pub(crate) sender: &'a str,
    pub(crate) conversation: &'a str,
}

impl Classifier {
    /// A classifier at `url` (`http://host:port/path`; the host resolved once, here).
    pub(crate) fn new(url: &str, timeout: Duration, concurrency: usize) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{url}: only http:// (run the classifier beside the node)"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url}: no host"))?
            .to_string();
        let host_port = match uri.port_u16() {
            Some(_) => authority.clone(),
            None => format!("{authority}:80"),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&host_port)
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?;
        Ok(Self {
            addr,
            authority,
            path: uri.path_and_query().map_or("/".into(), |p| p.to_string()),
            timeout,
            permits: Semaphore::new(concurrency.max(1)),
            idle: Mutex::new(Vec::new()),
            cache: DashMap::new(),
            calls: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            failures: Default::default(),
            buckets: Default::default(),
            sum_us: AtomicU64::new(0),
        })
    }

    /// The text's score, from the cache or the service.
    pub(crate) async fn score(&self, ask: Ask<'_>) -> Result<f32, Failure> {
        let digest = ring::digest::digest(&ring::digest::SHA256, ask.text.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        if let Some(s) = self.cache.get(&key) {
            self.cache_hits.fetch_add(1, Relaxed);
            return Ok(*s);
        }
        let result = match self.permits.try_acquire() {
            Err(_) => Err(Failure::Busy),
            Ok(_permit) => {
                let started = Instant::now();
                let r = tokio::time::timeout(self.timeout, self.call(&ask))
                    .await
                    .unwrap_or(Err(Failure::Timeout));
                self.observe(started.elapsed());
                r
            }
        };
        match result {
            Ok(score) => {
                if self.cache.len() >= CACHE_LIMIT {
                    self.cache.clear();
                }
                self.cache.insert(key, score);
            }
            Err(f) => {
                self.failures[f.index()].fetch_add(1, Relaxed);
            }
        }
        result
    }

    async fn call(&self, ask: &Ask<'_>) -> Result<f32, Failure> {
        let body = serde_json::json!({
            "text": ask.text,
            "sender": ask.sender,
            "conversation": ask.conversation,
        })
        .to_string();
        let mut sender = self.connection().await?;
        let req = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| Failure::Unavailable)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| Failure::Unavailable)?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(Failure::Unavailable);
        }
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| Failure::BadAnswer)?
            .to_bytes();
        self.put_back(sender);
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| Failure::BadAnswer)?;
        answer["score"]
            .as_f64()
            .filter(|s| (0.0..=1.0).contains(s))
            .map(|s| s as f32)
            .ok_or(Failure::BadAnswer)
    }

    /// An idle kept-alive connection, or a new one.
    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(s) if !s.is_closed() && s.is_ready() => return Ok(s),
                Some(_) => continue,
                None => break,
            }
        }
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|_| Failure::Unavailable)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Unavailable)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn put_back(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(sender);
        }
    }

    fn observe(&self, took: Duration) {
        self.calls.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Relaxed);
        let s = took.as_secs_f64();
        if let Some(i) = BUCKETS_S.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// The `parley_moderation_classifier_*` metrics.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let calls = self.calls.load(Relaxed);
        out.push_str("# HELP parley_moderation_classifier_seconds Classifier calls (the latency they add to a Send).\n# TYPE parley_moderation_classifier_seconds histogram\n");
        let mut cumulative = 0;
        for (b, bound) in self.buckets.iter().zip(BUCKETS_S) {
            cumulative += b.load(Relaxed);
            let _ = writeln!(
                out,
                "parley_moderation_classifier_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "parley_moderation_classifier_seconds_bucket{{le=\"+Inf\"}} {calls}\nparley_moderation_classifier_seconds_sum {sum}\nparley_moderation_classifier_seconds_count {calls}"
        );
        let _ = writeln!(
            out,
            "# HELP parley_moderation_classifier_cache_hits_total Texts scored from the cache.\n# TYPE parley_moderation_classifier_cache_hits_total counter\nparley_moderation_classifier_cache_hits_total {}",
            self.cache_hits.load(Relaxed)
        );
        out.push_str("# HELP parley_moderation_classifier_failures_total Messages the classifier did not score, by reason.\n# TYPE parley_moderation_classifier_failures_total counter\n");
        for (f, name) in Failure::ALL {
            let n = self.failures[f.index()].load(Relaxed);
            let _ = writeln!(
                out,
                "parley_moderation_classifier_failures_total{{reason=\"{name}\"}} {n}"
            );
        }
    }
}
