//! `search`: seeds messages of pseudo-words (a Zipf-like vocabulary) over REST into many
//! direct conversations, waits until the gateway's index has them all (its /metrics), then
//! runs searches closed-loop from several clients for the measured duration: seeding and
//! indexing rates, the index's size, search latency, and the gateway's CPU per message and
//! per search (given its pid).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, bail};
use parley_types::ConversationId;
use tokio::time::Instant;

use crate::ctx::Ctx;
use crate::http::Http;
use crate::report::SearchFigures;
use crate::scenario::directs;
use crate::scenario::media::cpu_of;
use crate::stats::{self, Series, now_ns};

pub struct Options {
    pub conversations: usize,
    /// Messages seeded in all.
    pub messages: usize,
    /// Concurrent REST connections seeding.
    pub writers: usize,
    /// Concurrent searching clients (each one search at a time).
    pub searchers: usize,
    pub server_pid: Option<u32>,
    /// The gateway's index directory (its data dir's `search/`), for its size.
    pub index_dir: Option<PathBuf>,
}

/// Conversations per buyer: searchers search as buyers, over this many conversations each.
const PER_BUYER: usize = 10;
/// Words in the vocabulary, and per message.
const VOCABULARY: usize = 5000;
const WORDS: usize = 8;

pub async fn run(ctx: Arc<Ctx>, opts: Options) -> anyhow::Result<(f64, SearchFigures)> {
    let n = opts.conversations.max(1);
    let buyers = n.div_ceil(PER_BUYER);
    // Conversation `i`: buyer `qb{i % buyers}`, seller `qs{i}`.
    let convs = directs(&ctx, n, 16, move |i| {
        (
            format!("qb{}", i % buyers),
            format!("qs{i}"),
            format!("l{i}"),
        )
    })
    .await?;
    let metrics = ctx.target(0);
    let cpu = || opts.server_pid.and_then(cpu_of);

    let indexed_before = counter(metrics, "parley_search_indexed_total").await?;
    let cpu_before_seed = cpu();
    let seed_start = Instant::now();
    seed(&ctx, &convs, buyers, opts.messages, opts.writers).await?;
    let seed_s = seed_start.elapsed().as_secs_f64();
    let cpu_after_seed = cpu();
    let want = indexed_before + opts.messages as u64;
    loop {
        let text = crate::http::get_text(metrics, "/metrics")
            .await
            .unwrap_or_default();
        let indexed = value(&text, "parley_search_indexed_total").unwrap_or(0.0) as u64;
        let lag = value(&text, "parley_search_lag_changes").unwrap_or(1.0);
        if indexed >= want && lag == 0.0 {
            break;
        }
        if seed_start.elapsed() > Duration::from_secs(3600) {
            bail!("the index did not catch up within an hour ({indexed} of {want})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let indexed_s = seed_start.elapsed().as_secs_f64();
    let index_bytes = opts.index_dir.as_deref().map(dir_size);
    if !ctx.quiet {
        eprintln!(
            "seeded {} messages in {seed_s:.1} s; all searchable after {indexed_s:.1} s",
            opts.messages
        );
    }

    let cpu_before_queries = cpu();
    let start = Instant::now();
    let end = start + ctx.duration;
    let (ok, failed, hits) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut tasks = Vec::new();
    for s in 0..opts.searchers.max(1) {
        let ctx = ctx.clone();
        let (ok, failed, hits) = (ok.clone(), failed.clone(), hits.clone());
        tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(ctx.target(s)).await?;
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (s as u64 + 1));
            let tokens: Vec<String> = (0..buyers)
                .map(|b| ctx.token(&ctx.user(&format!("qb{b}"))))
                .collect();
            while Instant::now() < end {
                let token = &tokens[rng.below(buyers)];
                let q = rng.query();
                let path = format!("/api/search?q={q}&limit=20");
                let t0 = now_ns();
                let res = http.request("GET", &path, token, None).await;
                let micros = now_ns().saturating_sub(t0) / 1000;
                match res {
                    Ok((200, json)) => {
                        ok.fetch_add(1, Relaxed);
                        let n = json["results"].as_array().map_or(0, Vec::len);
                        hits.fetch_add(n as u64, Relaxed);
                        stats::with(|r| r.record(Series::Search, micros));
                    }
                    Ok((status, json)) => {
                        failed.fetch_add(1, Relaxed);
                        stats::with(|r| r.error(status));
                        if failed.load(Relaxed) == 1 && !ctx.quiet {
                            eprintln!("search failed: {status} {json}");
                        }
                    }
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        stats::with(|r| r.disconnects += 1);
                        if !ctx.quiet {
                            eprintln!("search failed: {e:#}");
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let measured_s = start.elapsed().as_secs_f64();
    let cpu_after_queries = cpu();
    let queries = ok.load(Relaxed);
    let per = |a: Option<f64>, b: Option<f64>, n: u64| match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some((b - a) / n as f64 * 1e6),
        _ => None,
    };
    let seeded = opts.messages as u64;
    Ok((
        measured_s,
        SearchFigures {
            seeded,
            seed_s,
            indexed_s,
            indexed_per_s: seeded as f64 / indexed_s.max(0.001),
            index_bytes,
            queries,
            failed: failed.load(Relaxed),
            queries_per_s: queries as f64 / measured_s.max(0.001),
            mean_hits: hits.load(Relaxed) as f64 / queries.max(1) as f64,
            server_cpu_us_per_message: per(cpu_before_seed, cpu_after_seed, seeded),
            server_cpu_us_per_query: per(cpu_before_queries, cpu_after_queries, queries),
        },
    ))
}

/// Posts `messages` messages round-robin over `convs`, buyer and seller taking turns.
async fn seed(
    ctx: &Arc<Ctx>,
    convs: &[ConversationId],
    buyers: usize,
    messages: usize,
    writers: usize,
) -> anyhow::Result<()> {
    let writers = writers.max(1);
    let convs = Arc::new(convs.to_vec());
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (ctx, convs, done) = (ctx.clone(), convs.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(ctx.target(w)).await?;
            let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (w as u64 + 1));
            let mut k = w;
            while k < messages {
                let c = k % convs.len();
                let user = if (k / convs.len()) % 2 == 0 {
                    ctx.user(&format!("qb{}", c % buyers))
                } else {
                    ctx.user(&format!("qs{c}"))
                };
                let text = rng.message(k);
                http.post_message(&ctx.token(&user), convs[c], &text)
                    .await
                    .with_context(|| format!("seeding message {k}"))?;
                let d = done.fetch_add(1, Relaxed) + 1;
                if d % 50_000 == 0 && !ctx.quiet {
                    eprintln!("seeded {d} of {messages}");
                }
                k += writers;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// xorshift64*: deterministic words and queries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A vocabulary index, skewed to the first words (a few are common, most rare).
    fn zipf(&mut self) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * VOCABULARY as f64) as usize
    }

    fn message(&mut self, k: usize) -> String {
        let mut words: Vec<String> = (0..WORDS).map(|_| word(self.zipf())).collect();
        words.push(k.to_string());
        words.join(" ")
    }

    /// One word, two words, or a word being typed (its first three letters, no space after).
    fn query(&mut self) -> String {
        match self.below(4) {
            0 | 1 => format!("{}+", word(self.zipf())),
            2 => format!("{}+{}+", word(self.zipf()), word(self.zipf())),
            _ => word(self.zipf()).chars().take(3).collect(),
        }
    }
}

/// The `i`th pseudo-word: syllables of its digits in base 20.
fn word(i: usize) -> String {
    const SYLLABLES: [&str; 20] = [
        "ba", "ko", "ri", "su", "te", "mo", "na", "pi", "lu", "ge", "da", "fo", "hi", "ju", "ke",
        "ma", "no", "pe", "ra", "zu",
    ];
    let mut n = i + 20;
    let mut out = String::new();
    while n > 0 {
        out.push_str(SYLLABLES[n % 20]);
        n /= 20;
    }
    out
}

/// A number from a /metrics page.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn counter(metrics: SocketAddr, name: &str) -> anyhow::Result<u64> {
    let text = crate::http::get_text(metrics, "/metrics")
        .await
        .context("read the gateway's /metrics")?;
    match value(&text, name) {
        Some(v) => Ok(v as u64),
        None => bail!("{name} is not in /metrics: is search on (--search true)?"),
    }
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
