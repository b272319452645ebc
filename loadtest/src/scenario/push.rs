//! `push`: N offline sellers, each with one Web Push subscription whose endpoint is a push
//! service this harness runs on `--listen` (or no device at all with `--no-devices`); a buyer
//! sends each of them one message over REST. The gateway (started with
//! `--push-webpush-hosts 127.0.0.1` and a short `--push-grace-ms`) must push every seller
//! exactly once: pushes per second (from the first push to the last, and from the first send),
//! sellers pushed twice or never, and the gateway's CPU per message (given its pid) — run once
//! with devices and once without to see what push costs the send path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::json;
use tokio::time::Instant;

use crate::ctx::Ctx;
use crate::http::Http;
use crate::report::PushFigures;
use crate::scenario::directs;
use crate::scenario::media::cpu_of;

pub struct Options {
    pub conversations: usize,
    /// Concurrent REST connections sending.
    pub writers: usize,
    /// Where the push service fake listens (the subscriptions' endpoints point here).
    pub listen: SocketAddr,
    /// Register a device per seller (false: the same sends with nobody to push).
    pub devices: bool,
    pub server_pid: Option<u32>,
    /// How long to wait for the last push.
    pub timeout: Duration,
    /// Without devices: how long after the last send the gateway's CPU is still counted
    /// (its dispatcher reads every message; give it the grace and some).
    pub settle: Duration,
}

/// What the fake push service saw.
#[derive(Default)]
struct Seen {
    /// Requests per seller index.
    counts: Vec<u32>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Requests for no seller of this run.
    stray: u64,
}

pub async fn run(ctx: Arc<Ctx>, opts: Options) -> anyhow::Result<(f64, PushFigures)> {
    let n = opts.conversations.max(1);
    let seen = Arc::new(Mutex::new(Seen {
        counts: vec![0; n],
        ..Seen::default()
    }));
    let received = Arc::new(AtomicU64::new(0));
    let addr = serve(opts.listen, seen.clone(), received.clone()).await?;
    let convs = directs(&ctx, n, 16, |i| {
        (format!("pb{i}"), format!("ps{i}"), format!("l{i}"))
    })
    .await?;
    if opts.devices {
        register(&ctx, n, addr).await?;
    }
    let cpu = || opts.server_pid.and_then(cpu_of);
    let cpu_before = cpu();
    let start = Instant::now();
    send(&ctx, &convs, opts.writers).await?;
    let send_s = start.elapsed().as_secs_f64();
    if opts.devices {
        let deadline = start + opts.timeout;
        while received.load(Relaxed) < n as u64 {
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Anything pushed twice comes soon after: give it a moment to show.
        tokio::time::sleep(Duration::from_millis(500)).await;
    } else {
        tokio::time::sleep(opts.settle).await;
    }
    let cpu_after = cpu();
    let measured_s = start.elapsed().as_secs_f64();
    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    let pushed_twice = s.counts.iter().filter(|c| **c > 1).count() as u64;
    let never = if opts.devices {
        s.counts.iter().filter(|c| **c == 0).count() as u64
    } else {
        0
    };
    let pushes = received.load(Relaxed);
    let span = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) if b > a => Some((b - a).as_secs_f64()),
        _ => None,
    };
    let figures = PushFigures {
        devices: opts.devices,
        messages: n as u64,
        send_s,
        pushes,
        pushed_twice,
        never,
        stray: s.stray,
        pushes_per_s: span(s.first, s.last).map(|t| pushes as f64 / t),
        pushes_per_s_from_first_send: span(Some(start), s.last).map(|t| pushes as f64 / t),
        server_cpu_us_per_message: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some((b - a) * 1e6 / n as f64),
            _ => None,
        },
    };
    drop(s);
    if opts.devices && (never > 0 || pushed_twice > 0) && !ctx.quiet {
        eprintln!("push: {never} sellers never pushed, {pushed_twice} pushed twice");
    }
    Ok((measured_s, figures))
}

/// The push service: 201 to every POST on `/wp/<seller>`, counted.
async fn serve(
    listen: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    received: Arc<AtomicU64>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen} for pushes"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, received) = (seen.clone(), received.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, received) = (seen.clone(), received.clone());
                    async move {
                        let seller = req
                            .uri()
                            .path()
                            .strip_prefix("/wp/")
                            .and_then(|i| i.parse::<usize>().ok());
                        // Read the body as a service would before answering.
                        let _ = req.into_body().collect().await?;
                        let now = Instant::now();
                        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                        match seller.and_then(|i| s.counts.get_mut(i)) {
                            Some(c) => {
                                *c += 1;
                                s.first.get_or_insert(now);
                                s.last = Some(now);
                                received.fetch_add(1, Relaxed);
                            }
                            None => s.stray += 1,
                        }
                        drop(s);
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = hyper::StatusCode::CREATED;
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// One Web Push subscription per seller (one key pair for all: the gateway encrypts each
/// push with a fresh key of its own anyway).
async fn register(ctx: &Arc<Ctx>, n: usize, addr: SocketAddr) -> anyhow::Result<()> {
    let key = p256::SecretKey::from_slice(&[7u8; 32]).context("a P-256 key")?;
    let p256dh = B64.encode(key.public_key().to_encoded_point(false).as_bytes());
    let auth = B64.encode([9u8; 16]);
    let (p256dh, auth) = (Arc::new(p256dh), Arc::new(auth));
    crate::scenario::setup_concurrently(ctx, (0..n).collect(), 16, move |ctx, mut http, i| {
        let (p256dh, auth) = (p256dh.clone(), auth.clone());
        async move {
            let seller = ctx.user(&format!("ps{i}"));
            let body = json!({
                "platform": "webpush",
                "endpoint": format!("http://{addr}/wp/{i}"),
                "keys": {"p256dh": *p256dh, "auth": *auth},
            });
            let (status, v) = http
                .request(
                    "PUT",
                    "/api/devices/browser",
                    &ctx.token(&seller),
                    Some(body),
                )
                .await?;
            if status != 200 {
                bail!("registering {seller}'s device: {status} {v}");
            }
            Ok(http)
        }
    })
    .await
}

/// One message from each buyer to its seller.
async fn send(
    ctx: &Arc<Ctx>,
    convs: &[parley_types::ConversationId],
    writers: usize,
) -> anyhow::Result<()> {
    let writers = writers.max(1);
    let convs = Arc::new(convs.to_vec());
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (ctx, convs) = (ctx.clone(), convs.clone());
        tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(ctx.target(w)).await?;
            let mut i = w;
            while i < convs.len() {
                let buyer = ctx.user(&format!("pb{i}"));
                http.post_message(&ctx.token(&buyer), convs[i], "is it still for sale?")
                    .await
                    .with_context(|| format!("message {i}"))?;
                i += writers;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
