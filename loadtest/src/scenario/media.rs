//! `media`: uploaders posting photos of a given size as fast as the gateway takes them (each
//! uploader one upload at a time: a closed loop, so the figure is the node's throughput),
//! optionally while buyer/seller pairs chat, so the chat's latency during an upload storm is
//! measured in the same run. Server figures (CPU per upload, resident memory before, at its
//! peak and after, bytes received and stored) come from the gateway's /metrics and, given its
//! pid, /proc.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};
use tokio::time::Instant;

use crate::ctx::Ctx;
use crate::report::MediaFigures;
use crate::scenario::directs;
use crate::stats::{self, Series, now_ns};

pub struct Options {
    pub uploaders: usize,
    /// Size of the photos, megapixels (4:3).
    pub megapixels: f64,
    /// The gateway's pid (CPU time from /proc).
    pub server_pid: Option<u32>,
}

/// Distinct photos cycled through (the store keeps renditions by their hash).
const PHOTOS: usize = 4;

/// Creates the uploaders' conversations and runs the uploads for `ctx.duration`.
pub async fn run(ctx: Arc<Ctx>, opts: Options) -> anyhow::Result<(f64, MediaFigures)> {
    let uploaders = opts.uploaders.max(1);
    let mp = opts.megapixels.clamp(0.01, 100.0);
    if !ctx.quiet {
        eprintln!("encoding {PHOTOS} photos of {mp} MP");
    }
    let photos = tokio::task::spawn_blocking(move || {
        (0..PHOTOS as u32)
            .map(|seed| photo(mp, seed))
            .collect::<Vec<_>>()
    })
    .await?;
    // One direct conversation per uploader (the uploader is its buyer).
    let convs = directs(&ctx, uploaders, 8, |i| {
        (format!("mu{i}"), format!("ms{i}"), "photos".to_owned())
    })
    .await?;
    let metrics = ctx.target(0);
    let before = Sample::take(metrics, opts.server_pid).await;

    let start = Instant::now();
    let end = start + ctx.duration;
    let peak = Arc::new(AtomicU64::new(before.rss));
    let sampler = tokio::spawn(sample_peak(metrics, opts.server_pid, peak.clone(), end));
    let counter = || Arc::new(AtomicU64::new(0));
    let (ok, failed, busy) = (counter(), counter(), counter());
    let mut tasks = Vec::new();
    for (i, conv) in convs.into_iter().enumerate() {
        let (ctx, photos) = (ctx.clone(), photos.clone());
        let (ok, failed, busy) = (ok.clone(), failed.clone(), busy.clone());
        tasks.push(tokio::spawn(async move {
            let user = ctx.user(&format!("mu{i}"));
            let token = ctx.token(&user);
            let mut http = crate::http::Http::connect(ctx.target(i)).await?;
            let mut k = i;
            while Instant::now() < end {
                let t0 = now_ns();
                let photo = photos[k % photos.len()].clone();
                k += 1;
                let res = http.upload(&token, conv, "photo.jpg", photo).await;
                let micros = now_ns().saturating_sub(t0) / 1000;
                match res {
                    Ok((201, _)) => {
                        ok.fetch_add(1, Relaxed);
                        stats::with(|r| r.record(Series::Upload, micros));
                    }
                    Ok((status @ (429 | 503), json)) => {
                        // Refused for now (the node holds as many upload bodies as it
                        // allows, or a rate limit): wait as told, as a client should.
                        busy.fetch_add(1, Relaxed);
                        if json["error"]["code"] == "rate_limited" {
                            anyhow::bail!(
                                "uploader {i} hit a limit ({json}): start the gateway with \
                                 larger --media-uploads-per-hour and --rest-requests-per-sec"
                            );
                        }
                        stats::with(|r| r.error(status));
                        let wait = http.retry_after().unwrap_or(Duration::from_secs(1));
                        tokio::time::sleep(wait.min(end.saturating_duration_since(Instant::now())))
                            .await;
                        // The node closes a connection whose body it did not read.
                        http = crate::http::Http::connect(ctx.target(i)).await?;
                    }
                    Ok((status, _)) => {
                        failed.fetch_add(1, Relaxed);
                        stats::with(|r| r.error(status));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        stats::with(|r| r.disconnects += 1);
                        note(&ctx, &format!("upload failed: {e:#}"));
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let mut first_error = None;
    for t in tasks {
        if let Err(e) = t.await? {
            first_error.get_or_insert(e);
        }
    }
    let measured_s = start.elapsed().as_secs_f64();
    let _ = sampler.await;
    if let Some(e) = first_error {
        return Err(e);
    }
    let after = Sample::take(metrics, opts.server_pid).await;
    let uploads = ok.load(Relaxed);
    let cpu = match (before.cpu_s, after.cpu_s) {
        (Some(b), Some(a)) if uploads > 0 => Some((a - b) / uploads as f64),
        _ => None,
    };
    let figures = MediaFigures {
        megapixels: mp,
        uploaders: uploaders as u64,
        uploads,
        failed: failed.load(Relaxed),
        busy: busy.load(Relaxed),
        uploads_per_s: uploads as f64 / measured_s.max(0.001),
        bytes_in: after.bytes_in.saturating_sub(before.bytes_in),
        bytes_stored: after.bytes_stored.saturating_sub(before.bytes_stored),
        server_cpu_s_per_upload: cpu,
        rss_before_bytes: before.rss,
        rss_peak_bytes: peak.load(Relaxed).max(after.rss),
        rss_after_bytes: after.rss,
    };
    Ok((measured_s, figures))
}

fn note(ctx: &Ctx, line: &str) {
    if !ctx.quiet {
        eprintln!("{line}");
    }
}

/// A photo-like JPEG (gradients and noise, quality 90, so it compresses like a camera's).
fn photo(megapixels: f64, seed: u32) -> Bytes {
    let w = ((megapixels * 1e6 * 4.0 / 3.0).sqrt() as u32).max(8);
    let h = (w * 3 / 4).max(6);
    let mut s = 0x2545_f491_u32 ^ seed.wrapping_mul(0x9e37_79b9);
    let img = RgbImage::from_fn(w, h, |x, y| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let n = (s & 15) as u8;
        Rgb([
            ((x * 255 / w) as u8).saturating_add(n),
            ((y * 255 / h) as u8).saturating_add(n),
            ((seed * 60) as u8).saturating_add(n),
        ])
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encoding to memory");
    Bytes::from(out)
}

/// The server's counters at one moment.
#[derive(Default)]
struct Sample {
    rss: u64,
    cpu_s: Option<f64>,
    bytes_in: u64,
    bytes_stored: u64,
}

impl Sample {
    async fn take(metrics: SocketAddr, pid: Option<u32>) -> Self {
        let text = crate::http::get_text(metrics, "/metrics")
            .await
            .unwrap_or_default();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        Self {
            rss: pid
                .and_then(crate::http::rss_of)
                .unwrap_or_else(|| value("process_resident_memory_bytes")),
            cpu_s: pid.and_then(cpu_of),
            bytes_in: value("parley_media_upload_bytes_in_total"),
            bytes_stored: value("parley_media_upload_bytes_stored_total"),
        }
    }
}

/// Samples the server's resident memory every 100 ms until `end`, keeping the largest.
async fn sample_peak(metrics: SocketAddr, pid: Option<u32>, peak: Arc<AtomicU64>, end: Instant) {
    while Instant::now() < end {
        let rss = Sample::take(metrics, pid).await.rss;
        peak.fetch_max(rss, Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// User + system CPU seconds of `pid` (clock ticks of 1/100 s, Linux's USER_HZ).
pub fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
