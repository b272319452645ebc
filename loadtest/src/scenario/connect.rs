//! `connect`: many idle, authenticated connections kept alive with heartbeats; connect rate,
//! failures, and the server's memory per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway::protocol::ClientBody;
use tokio::time::Instant;

use crate::client;
use crate::ctx::{Ctx, Pacer};
use crate::report::ServerMemory;
use crate::stats::{self, Series};

pub struct Options {
    pub connections: usize,
    pub hold: Duration,
    pub heartbeat: Duration,
    pub server_pid: Option<u32>,
    pub metrics: Option<SocketAddr>,
}

/// The gateway's resident memory: from /proc when we have its pid, else from its /metrics.
async fn server_rss(opts: &Options) -> Option<u64> {
    if let Some(pid) = opts.server_pid {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        return Some(kb * 1024);
    }
    let text = raw_get(opts.metrics?, "/metrics").await?;
    text.lines()
        .find(|l| l.starts_with("process_resident_memory_bytes "))?
        .rsplit(' ')
        .next()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

async fn raw_get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// Opens the connections at the context's rate and holds them.
pub async fn run(ctx: Arc<Ctx>, opts: Options) -> anyhow::Result<(f64, Option<ServerMemory>)> {
    let before = server_rss(&opts).await;
    let mut pacer = Pacer::new(ctx.connect_rate, Instant::now());
    let open = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(opts.connections);
    for i in 0..opts.connections {
        pacer.tick().await;
        let (ctx, open, stop, heartbeat) =
            (ctx.clone(), open.clone(), stop.clone(), opts.heartbeat);
        tasks.push(tokio::spawn(async move {
            let user = ctx.user(&format!("c{i}"));
            let session = match client::connect(
                ctx.target(i),
                ctx.source(i),
                &ctx.token(&user),
                vec![],
            )
            .await
            {
                Ok(s) => s,
                Err(_) => {
                    stats::with(|r| r.connect_failures += 1);
                    return;
                }
            };
            stats::with(|r| {
                r.connects += 1;
                r.record(Series::Connect, session.connect_us);
            });
            open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        }));
    }
    // Let the last handshakes finish, then weigh the server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = open.load(std::sync::atomic::Ordering::Relaxed);
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
