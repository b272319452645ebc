//! `history`: concurrent history pages and conversation lists over seeded conversations,
//! open loop, latency per request type.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_proto::ClientBody;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{ServerPeek, peek_server};
use parley_types::ConversationId;
use tokio::time::Instant;

use crate::client;
use crate::ctx::{Ctx, Pacer};
use crate::scenario::setup_concurrently;
use crate::stats::{self, Series, now_ns};

pub struct Options {
    pub clients: usize,
    pub conversations: usize,
    pub seed: usize,
    pub rate: f64,
}

/// Seeds the conversations and runs the request mix; returns the measured seconds.
pub async fn run(ctx: Arc<Ctx>, opts: Options) -> anyhow::Result<f64> {
    let clients = opts.clients.max(1);
    let convs = seed(&ctx, &opts, clients).await?;
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + ctx.duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let own: Vec<ConversationId> = convs
            .iter()
            .enumerate()
            .filter(|(j, _)| j % clients == c)
            .map(|(_, id)| *id)
            .collect();
        let first = start + Duration::from_secs_f64(c as f64 / clients as f64 / opts.rate);
        let pacer = Pacer::new(opts.rate, first);
        tasks.push(tokio::spawn(client(ctx.clone(), c, own, pacer, end)));
    }
    for t in tasks {
        t.await?;
    }
    Ok(start
        .elapsed()
        .as_secs_f64()
        .min(ctx.duration.as_secs_f64()))
}

/// Creates the conversations and posts `seed` messages into each (over REST, not measured).
async fn seed(
    ctx: &Arc<Ctx>,
    opts: &Options,
    clients: usize,
) -> anyhow::Result<Vec<ConversationId>> {
    let convs: Arc<Mutex<Vec<Option<ConversationId>>>> =
        Arc::new(Mutex::new(vec![None; opts.conversations]));
    let out = convs.clone();
    let seed = opts.seed;
    if !ctx.quiet {
        eprintln!(
            "seeding {} conversations with {seed} messages each",
            opts.conversations
        );
    }
    let jobs = (0..opts.conversations).collect();
    setup_concurrently(ctx, jobs, 32, move |ctx, mut http, j| {
        let out = out.clone();
        async move {
            let buyer = ctx.user(&format!("hc{}", j % clients));
            let seller = ctx.user(&format!("hs{j}"));
            let (bt, st) = (ctx.token(&buyer), ctx.token(&seller));
            let id = http.direct(&bt, &seller, &format!("l{j}")).await?;
            for k in 0..seed {
                let token = if k % 2 == 0 { &bt } else { &st };
                post_retrying(&mut http, token, id, &format!("seed message {k}")).await?;
            }
            out.lock().unwrap_or_else(|e| e.into_inner())[j] = Some(id);
            Ok(http)
        }
    })
    .await?;
    let convs = convs.lock().unwrap_or_else(|e| e.into_inner());
    Ok(convs.iter().flatten().copied().collect())
}

/// Posting faster than the per-user send rate gets 429: wait and retry.
async fn post_retrying(
    http: &mut crate::http::Http,
    token: &str,
    id: ConversationId,
    text: &str,
) -> anyhow::Result<()> {
    loop {
        match http.post_message(token, id, text).await {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains("429") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Requests waiting for their answer: seq → (series, scheduled time in ns).
type Pending = Arc<Mutex<HashMap<u32, (Series, u64)>>>;

/// One client: history pages and conversation lists on its schedule until `end`.
async fn client(ctx: Arc<Ctx>, c: usize, own: Vec<ConversationId>, mut pacer: Pacer, end: Instant) {
    let user = ctx.user(&format!("hc{c}"));
    let Ok(session) = client::connect(&ctx.via(c), &ctx.token(&user), vec![]).await else {
        stats::with(|r| r.connect_failures += 1);
        return;
    };
    stats::with(|r| r.connects += 1);
    let pending: Pending = Arc::default();
    let mut writer = session.writer;
    let reading = tokio::spawn(read_answers(session.reader, pending.clone()));
    let mut k = 0usize;
    loop {
        let at = pacer.tick().await;
        if at >= end || own.is_empty() {
            break;
        }
        k += 1;
        let sched = now_ns().saturating_sub(at.elapsed().as_nanos() as u64);
        let (series, body) = if k.is_multiple_of(3) {
            let body = ClientBody::Conversations {
                query: None,
                cursor: None,
                limit: 20,
            };
            (Series::List, body)
        } else {
            let body = ClientBody::History {
                conversation: own[k % own.len()],
                before: None,
                limit: 50,
            };
            (Series::History, body)
        };
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(writer.next_seq(), (series, sched));
        if writer.send(body).await.is_err() {
            stats::with(|r| r.disconnects += 1);
            break;
        }
        stats::with(|r| r.sent += 1);
    }
    // Give the last answers a moment, then close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.close().await;
    reading.abort();
}

/// Matches answers to their requests and records each one's latency.
async fn read_answers(mut reader: client::Reader, waiting: Pending) {
    let limits = DecodeLimits::server();
    while let Some(bytes) = reader.next().await {
        let (seq, error) = match peek_server(&bytes, &limits) {
            Ok(ServerPeek::Other { seq, .. } | ServerPeek::Ack { seq, .. }) => (seq, None),
            Ok(ServerPeek::Error { seq, code, .. }) => (seq, Some(code)),
            _ => continue,
        };
        let Some((series, sched)) = waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq)
        else {
            continue;
        };
        let latency = now_ns().saturating_sub(sched) / 1000;
        stats::with(|r| match error {
            Some(code) => r.error(code),
            None => {
                r.delivered += 1;
                r.record(series, latency);
            }
        });
    }
}
