//! `connect`: many idle, authenticated connections kept alive with heartbeats; connect rate,
//! failures, the server's memory per connection, and (with `--reconnect`) how fast they all
//! come back (QUIC: with 0-RTT).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parley_proto::ClientBody;
use tokio::time::Instant;

use crate::client::{self, Via};
use crate::ctx::{Ctx, Pacer};
use crate::report::ServerMemory;
use crate::stats::{self, Series};

pub struct Options {
    pub connections: usize,
    pub hold: Duration,
    pub heartbeat: Duration,
    pub server_pid: Option<u32>,
    pub metrics: Option<SocketAddr>,
    /// After the hold, close everything and reconnect once (QUIC: 0-RTT).
    pub reconnect: bool,
}

/// The gateway's resident memory: from /proc when we have its pid, else from its /metrics.
async fn server_rss(opts: &Options) -> Option<u64> {
    if let Some(pid) = opts.server_pid {
        return crate::http::rss_of(pid);
    }
    let text = crate::http::get_text(opts.metrics?, "/metrics").await?;
    text.lines()
        .find(|l| l.starts_with("process_resident_memory_bytes "))?
        .rsplit(' ')
        .next()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// Holds one connection until `stop`, with heartbeats; returns whether it stayed up.
async fn hold(session: client::Session, heartbeat: Duration, stop: Arc<tokio::sync::Notify>) {
    let mut reader = session.reader;
    let mut writer = session.writer;
    let reading = tokio::spawn(async move { while reader.next().await.is_some() {} });
    let mut tick = tokio::time::interval(heartbeat);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if writer.send(ClientBody::Ping { nonce: 0 }).await.is_err() {
                    stats::with(|r| r.disconnects += 1);
                    break;
                }
            }
            _ = stop.notified() => break,
        }
    }
    writer.close().await;
    reading.abort();
}

/// Connects `via` as `user` and records it in `series`.
async fn open(ctx: &Ctx, via: &Via, user: &str, series: Series) -> Option<client::Session> {
    match client::connect(via, &ctx.token(user), vec![]).await {
        Ok(s) => {
            stats::with(|r| {
                r.connects += 1;
                r.zero_rtt += u64::from(s.zero_rtt);
                r.record(series, s.connect_us);
            });
            Some(s)
        }
        Err(_) => {
            stats::with(|r| r.connect_failures += 1);
            None
        }
    }
}

/// One round: open every connection at the context's rate, keep them until `stop`.
async fn round(
    ctx: &Arc<Ctx>,
    vias: &[Via],
    series: Series,
    heartbeat: Duration,
    stop: &Arc<tokio::sync::Notify>,
    open_now: &Arc<std::sync::atomic::AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut pacer = Pacer::new(ctx.connect_rate, Instant::now());
    let mut tasks = Vec::with_capacity(vias.len());
    for (i, via) in vias.iter().enumerate() {
        pacer.tick().await;
        let (ctx, via, stop, open_now) = (ctx.clone(), via.clone(), stop.clone(), open_now.clone());
        tasks.push(tokio::spawn(async move {
            let user = ctx.user(&format!("c{i}"));
            if let Some(session) = open(&ctx, &via, &user, series).await {
                open_now.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                hold(session, heartbeat, stop).await;
                open_now.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    tasks
}

/// Opens the connections at the context's rate and holds them.
pub async fn run(ctx: Arc<Ctx>, opts: Options) -> anyhow::Result<(f64, Option<ServerMemory>)> {
    let before = server_rss(&opts).await;
    let vias: Vec<Via> = (0..opts.connections).map(|i| ctx.via(i)).collect();
    let open_now = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let tasks = round(
        &ctx,
        &vias,
        Series::Connect,
        opts.heartbeat,
        &stop,
        &open_now,
    )
    .await;
    // Let the last handshakes finish, then weigh the server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = open_now.load(std::sync::atomic::Ordering::Relaxed);
    let after = server_rss(&opts).await;
    if !ctx.quiet {
        eprintln!(
            "\n{connected} connections open; holding for {:?}",
            opts.hold
        );
    }
    let start = Instant::now();
    tokio::time::sleep(opts.hold).await;
    let held = start.elapsed().as_secs_f64();
    stop.notify_waiters();
    for t in tasks {
        let _ = t.await;
    }
    if opts.reconnect {
        // Everyone comes back once: QUIC clients with 0-RTT from the ticket they hold.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again: Vec<Via> = vias.iter().map(Via::reconnecting).collect();
        let stop = Arc::new(tokio::sync::Notify::new());
        let tasks = round(
            &ctx,
            &again,
            Series::Reconnect,
            opts.heartbeat,
            &stop,
            &open_now,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.notify_waiters();
        for t in tasks {
            let _ = t.await;
        }
    }
    let memory = match (before, after) {
        (Some(b), Some(a)) => Some(ServerMemory {
            rss_before_bytes: b,
            rss_after_bytes: a,
            connections: connected,
            bytes_per_connection: a.saturating_sub(b) as f64 / connected.max(1) as f64,
        }),
        _ => None,
    };
    Ok((held, memory))
}
