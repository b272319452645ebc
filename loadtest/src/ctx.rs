//! What every scenario shares: targets, identities, source addresses, pacing, the reporter.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::Totals;

/// Which transport clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// WebSocket on /ws.
    Ws,
    /// QUIC (ALPN parley/1) on the same port number over UDP.
    Quic,
    /// Every other client on each.
    Mix,
}

/// QUIC client state: a few endpoints (one UDP socket each, many connections each) and the
/// certificate to trust.
pub struct QuicCtx {
    pub endpoints: Vec<quinn::Endpoint>,
    pub roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

pub struct Ctx {
    pub targets: Vec<SocketAddr>,
    pub transport: TransportChoice,
    pub quic: Option<QuicCtx>,
    pub secret: Vec<u8>,
    pub run_id: String,
    /// Source addresses to spread client connections over (empty: the kernel picks).
    pub sources: Vec<IpAddr>,
    pub duration: Duration,
    pub drain: Duration,
    pub connect_rate: f64,
    pub quiet: bool,
    pub totals: Arc<Mutex<Totals>>,
}

/// Milliseconds since the Unix epoch (message timestamps are wall clock: see README).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `n` loopback source addresses: 127.0.0.1, 127.0.0.2, … (every 127/8 address is local on
/// Linux). One address gives ~28 k ephemeral ports per target; more lift that limit.
pub fn loopback_sources(n: usize) -> Vec<IpAddr> {
    if n <= 1 {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let i = i as u32 + 1;
            IpAddr::V4(Ipv4Addr::new(127, (i >> 16) as u8, (i >> 8) as u8, i as u8))
        })
        .collect()
}

impl Ctx {
    /// A user id unique to this run.
    pub fn user(&self, name: &str) -> String {
        format!("lt-{}-{name}", self.run_id)
    }

    pub fn token(&self, user: &str) -> String {
        parley_client::token::mint_hs256(&self.secret, user, 48 * 3600, wall_ms())
    }

    /// The gateway for client `i` (round-robin over the targets: a whole cluster).
    pub fn target(&self, i: usize) -> SocketAddr {
        self.targets[i % self.targets.len()]
    }

    /// How client `i` connects: its transport, target and (QUIC) endpoint and TLS config. Each
    /// QUIC client gets its own TLS config, so its session tickets (0-RTT) are its own.
    pub fn via(&self, i: usize) -> crate::client::Via {
        let quic = match self.transport {
            TransportChoice::Ws => false,
            TransportChoice::Quic => true,
            TransportChoice::Mix => i % 2 == 1,
        };
        match (&self.quic, quic) {
            (Some(q), true) => crate::client::Via::Quic {
                target: self.target(i),
                endpoint: q.endpoints[i % q.endpoints.len()].clone(),
                config: parley_client::quic::client_config(&q.roots)
                    .expect("a QUIC client config from the loaded certificate"),
                zero_rtt: false,
            },
            _ => crate::client::Via::WebSocket {
                target: self.target(i),
                source: self.source(i),
            },
        }
    }

    /// The source address for client `i`, if several were asked for.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    pub fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Spaces events `1 / rate` apart (open loop: it never waits for anything but the clock).
pub struct Pacer {
    interval: Duration,
    next: Instant,
}

impl Pacer {
    pub fn new(rate: f64, start: Instant) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / rate.max(1e-6)),
            next: start,
        }
    }

    /// Waits for the next slot and returns its scheduled time.
    pub async fn tick(&mut self) -> Instant {
        let at = self.next;
        self.next += self.interval;
        tokio::time::sleep_until(at).await;
        at
    }
}

/// Prints a progress line every second and folds the recorders into the totals, until
/// `stop` flips. Returns the number of seconds reported.
pub async fn reporter(ctx: Arc<Ctx>, stop: Arc<tokio::sync::Notify>, label: &'static str) {
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.notified() => return,
        }
        let t = start.elapsed().as_secs();
        let s = ctx.totals().collect(t);
        if !ctx.quiet {
            eprint!(
                "\r[{label} {t:>4}s] sent {:>8}/s  delivered {:>9}/s  p50 {:>8}  p99 {:>8}  errors {:>5}  connects {:>6}   ",
                s.sent,
                s.delivered,
                fmt_ms(s.p50_us),
                fmt_ms(s.p99_us),
                s.errors,
                s.connects
            );
        }
    }
}

fn fmt_ms(us: u64) -> String {
    format!("{:.2}ms", us as f64 / 1000.0)
}
