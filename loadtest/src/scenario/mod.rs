//! The scenarios. Each sets its conversations up over REST (not measured), then measures.

pub mod chat;
pub mod connect;
pub mod history;
pub mod media;
pub mod push;
pub mod search;

use std::sync::Arc;

use crate::ctx::Ctx;
use crate::http::Http;
use chat::{Member, Topology};

/// Runs `jobs` setup calls with `concurrency` kept-alive HTTP connections.
pub async fn setup_concurrently<T, F, Fut>(
    ctx: &Arc<Ctx>,
    jobs: Vec<T>,
    concurrency: usize,
    f: F,
) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: Fn(Arc<Ctx>, Http, T) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = anyhow::Result<Http>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(jobs));
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let (ctx, queue, f) = (ctx.clone(), queue.clone(), f.clone());
        workers.push(tokio::spawn(async move {
            let mut http = Http::connect(ctx.target(w)).await?;
            loop {
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(job) = job else {
                    return Ok::<_, anyhow::Error>(());
                };
                http = f(ctx.clone(), http, job).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// `n` direct conversations, the `i`th of the (buyer, seller, listing) `names(i)` gives
/// (user names without the run prefix), created with `concurrency` connections; their ids in
/// order.
pub async fn directs(
    ctx: &Arc<Ctx>,
    n: usize,
    concurrency: usize,
    names: impl Fn(usize) -> (String, String, String) + Send + Sync + 'static,
) -> anyhow::Result<Vec<parley_types::ConversationId>> {
    let out = Arc::new(std::sync::Mutex::new(vec![None; n]));
    let (slots, names) = (out.clone(), Arc::new(names));
    setup_concurrently(
        ctx,
        (0..n).collect(),
        concurrency,
        move |ctx, mut http, i| {
            let (slots, names) = (slots.clone(), names.clone());
            async move {
                let (buyer, seller, listing) = names(i);
                let (buyer, seller) = (ctx.user(&buyer), ctx.user(&seller));
                let id = http.direct(&ctx.token(&buyer), &seller, &listing).await?;
                slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(id);
                Ok(http)
            }
        },
    )
    .await?;
    let convs = out.lock().unwrap_or_else(|e| e.into_inner()).clone();
    convs
        .into_iter()
        .enumerate()
        .map(|(i, c)| c.ok_or_else(|| anyhow::anyhow!("conversation {i} was not created")))
        .collect()
}

/// `pairs` buyer/seller pairs, each in its own direct conversation; both sides send.
pub async fn direct_topology(ctx: &Arc<Ctx>, pairs: usize) -> anyhow::Result<Topology> {
    let convs = Arc::new(std::sync::Mutex::new(vec![None; pairs]));
    let out = convs.clone();
    setup_concurrently(ctx, (0..pairs).collect(), 32, move |ctx, mut http, i| {
        let out = out.clone();
        async move {
            let buyer = ctx.user(&format!("b{i}"));
            let seller = ctx.user(&format!("s{i}"));
            let id = http.direct(&ctx.token(&buyer), &seller, "listing").await?;
            out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(id);
            Ok(http)
        }
    })
    .await?;
    let convs = convs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut members = Vec::with_capacity(pairs * 2);
    let mut receivers = Vec::with_capacity(pairs * 2);
    for (i, c) in convs.into_iter().enumerate() {
        let conversation = c.ok_or_else(|| anyhow::anyhow!("pair {i} has no conversation"))?;
        for (j, role) in ["b", "s"].iter().enumerate() {
            members.push(Member {
                user: ctx.user(&format!("{role}{i}")),
                conversation,
                sends: true,
            });
            // The partner is the member next to it.
            receivers.push(vec![(2 * i + 1 - j) as u32]);
        }
    }
    Ok(Topology { members, receivers })
}

/// `rooms` groups of `members` each; the first `senders` of each room send.
pub async fn rooms_topology(
    ctx: &Arc<Ctx>,
    rooms: usize,
    members: usize,
    senders: usize,
) -> anyhow::Result<Topology> {
    let convs = Arc::new(std::sync::Mutex::new(vec![None; rooms]));
    let out = convs.clone();
    setup_concurrently(ctx, (0..rooms).collect(), 8, move |ctx, mut http, g| {
        let out = out.clone();
        async move {
            let names: Vec<String> = (1..members)
                .map(|k| ctx.user(&format!("r{g}m{k}")))
                .collect();
            let creator = ctx.user(&format!("r{g}m0"));
            let id = http
                .group(&ctx.token(&creator), &names, "load room")
                .await?;
            out.lock().unwrap_or_else(|e| e.into_inner())[g] = Some(id);
            Ok(http)
        }
    })
    .await?;
    let convs = convs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut all = Vec::with_capacity(rooms * members);
    let mut receivers = Vec::with_capacity(rooms * members);
    for (g, c) in convs.into_iter().enumerate() {
        let conversation = c.ok_or_else(|| anyhow::anyhow!("room {g} has no conversation"))?;
        for k in 0..members {
            all.push(Member {
                user: ctx.user(&format!("r{g}m{k}")),
                conversation,
                sends: k < senders,
            });
            let base = (g * members) as u32;
            receivers.push(if k < senders {
                (0..members as u32)
                    .filter(|o| *o != k as u32)
                    .map(|o| base + o)
                    .collect()
            } else {
                Vec::new()
            });
        }
    }
    Ok(Topology {
        members: all,
        receivers,
    })
}
