//! `loadtest`: drives Parley gateways (one node or a cluster) with realistic chat load and
//! reports throughput, latency percentiles, loss and errors. See README.md, "Load testing".

mod client;
mod ctx;
mod http;
mod report;
mod scenario;
mod slo;
mod stats;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::ctx::{Ctx, loopback_sources};
use crate::report::Report;
use crate::scenario::chat::Behaviour;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "loadtest", version, about = "Load-test Parley gateways")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Gateway address(es) host:port, comma-separated or repeated: clients spread over them.
    #[arg(
        long,
        default_value = "127.0.0.1:3001",
        value_delimiter = ',',
        global = true
    )]
    target: Vec<String>,
    /// Transport of the clients (QUIC uses the same host:port over UDP).
    #[arg(long, value_enum, default_value = "ws", global = true)]
    transport: ctx::TransportChoice,
    /// The gateways' QUIC certificate (PEM) to trust; the gateway prints its path at start
    /// (default: its data directory's quic-cert.pem). Needed for --transport quic|mix.
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// QUIC client endpoints (UDP sockets) the clients share.
    #[arg(long, default_value_t = 4, global = true)]
    quic_endpoints: usize,
    /// The gateways' JWT HS256 secret (tokens are minted locally).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    secret: Option<String>,
    /// Length of the measured phase, e.g. 30s, 2m.
    #[arg(long, default_value = "30s", global = true)]
    duration: String,
    /// After sending stops, how long to wait for outstanding acks and deliveries.
    #[arg(long, default_value = "10s", global = true)]
    drain: String,
    /// New connections per second while connecting.
    #[arg(long, default_value_t = 2000.0, global = true)]
    connect_rate: f64,
    /// Spread client connections over this many loopback source addresses (127.0.0.1, .2, …)
    /// to get past ~28 k ports per address; 1 = let the kernel choose.
    #[arg(long, default_value_t = 1, global = true)]
    source_ips: usize,
    /// Tokio worker threads of the load generator (0 = one per core).
    #[arg(long, default_value_t = 0, global = true)]
    threads: usize,
    /// Prefix for user ids (default: random), so runs against one server never collide.
    #[arg(long, global = true)]
    run_id: Option<String>,
    /// Write the full results as JSON.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Write an HTML page with latency-over-time and throughput charts.
    #[arg(long, global = true)]
    report: Option<PathBuf>,
    /// Service-level objectives; a missed one makes the exit status 3, e.g. 'p99<5ms,loss=0'.
    #[arg(long, global = true)]
    slo: Option<String>,
    /// No live progress line.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Open N authenticated connections at a rate, hold them idle with heartbeats; report
    /// connect rate, failures and (given --server-pid or --metrics) server memory per connection.
    Connect {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Heartbeat (Ping) interval per connection.
        #[arg(long, default_value = "25s")]
        heartbeat: String,
        /// The gateway's pid, to read its RSS from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// A gateway host:port whose /metrics gives its RSS.
        #[arg(long)]
        metrics: Option<String>,
        /// After the hold, close all and reconnect once (QUIC: with 0-RTT); reported as
        /// the `reconnect` latency.
        #[arg(long)]
        reconnect: bool,
    },
    /// N buyer/seller pairs in direct conversations, both sides sending at a fixed rate.
    Direct {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Messages per second per user.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Group conversations of K members, S senders per room at a fixed rate; every member
    /// receives and is checked.
    Rooms {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 100)]
        members: usize,
        #[arg(long, default_value_t = 2)]
        senders: usize,
        /// Messages per second per sender.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Concurrent history pages and conversation lists over seeded conversations.
    History {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        /// Messages seeded per conversation.
        #[arg(long, default_value_t = 120)]
        seed: usize,
        /// Requests per second per client.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
    },
    /// A realistic blend for soak runs: pairs chatting with typing, read receipts and
    /// periodic reconnects that resume; loss must stay zero.
    Mixed {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// Each user reconnects (and resumes) about this often.
        #[arg(long, default_value = "20s")]
        reconnect_every: String,
    },
    /// Uploaders posting photos of one size back to back (see README "Load testing"),
    /// optionally while pairs chat: upload latency and throughput, the gateway's CPU per
    /// upload, memory and bytes stored, and the chat's latency during the uploads.
    Media {
        #[command(flatten)]
        common: Common,
        /// Concurrent uploaders (each one upload at a time).
        #[arg(long, default_value_t = 4)]
        uploaders: usize,
        /// Photo size, megapixels (4:3 JPEG at quality 90).
        #[arg(long, default_value_t = 4.0)]
        megapixels: f64,
        /// The gateway's pid, for its CPU time (and RSS) from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Buyer/seller pairs chatting meanwhile (0: none).
        #[arg(long, default_value_t = 0)]
        chat_pairs: usize,
        /// Messages per second per chatting user.
        #[arg(long, default_value_t = 2.0)]
        chat_rate: f64,
    },
    /// Seeds messages into many conversations, waits until the gateway's search index has
    /// them, then searches closed-loop from several clients (see README "Load testing"):
    /// seeding and indexing rates, index size, search latency, CPU per message and search.
    Search {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        conversations: usize,
        /// Messages seeded in all.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Concurrent REST connections seeding.
        #[arg(long, default_value_t = 32)]
        writers: usize,
        /// Concurrent searching clients.
        #[arg(long, default_value_t = 8)]
        searchers: usize,
        /// The gateway's pid, for its CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// The gateway's search index directory (its --data-dir's `search/`), for its size.
        #[arg(long)]
        index_dir: Option<PathBuf>,
    },
    /// One message to each of N offline sellers whose Web Push endpoints point at a push
    /// service this harness runs (see README "Load testing"): pushes per second, every seller
    /// pushed exactly once, the gateway's CPU per message; `--no-devices` for the same sends
    /// with nobody to push (what push costs the send path).
    Push {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        conversations: usize,
        /// Concurrent REST connections sending.
        #[arg(long, default_value_t = 32)]
        writers: usize,
        /// Where the push service fake listens (the gateway needs
        /// `--push-webpush-hosts 127.0.0.1`).
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: std::net::SocketAddr,
        /// Register no devices.
        #[arg(long)]
        no_devices: bool,
        /// The gateway's pid, for its CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Without devices: how long after the last send the gateway's CPU still counts.
        #[arg(long, default_value = "3s")]
        settle: String,
    },
    /// Merge JSON results of runs made at the same time (several processes or machines).
    Merge {
        files: Vec<PathBuf>,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long)]
        slo: Option<String>,
    },
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad duration {s:?}"))?;
    if !v.is_finite() || v < 0.0 {
        bail!("bad duration {s:?}");
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    let t = target
        .trim()
        .trim_start_matches("ws://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let t = t.strip_suffix("/ws").unwrap_or(t);
    t.to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {target}"))
}

fn context(c: &Common) -> anyhow::Result<Ctx> {
    let secret = c
        .secret
        .clone()
        .context("--secret (or JWT_SECRET) is required: the gateways' HS256 secret")?;
    let targets = c
        .target
        .iter()
        .map(|t| resolve(t))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        bail!("no --target");
    }
    let quic = match c.transport {
        ctx::TransportChoice::Ws => None,
        _ => {
            let cert = c
                .cert
                .as_ref()
                .context("--cert (the gateway's QUIC certificate PEM) is required for QUIC")?;
            let roots = parley_client::quic::load_certs(cert)?;
            let endpoints = (0..c.quic_endpoints.max(1))
                .map(|_| parley_client::quic::endpoint("0.0.0.0:0".parse().expect("addr")))
                .collect::<Result<Vec<_>, _>>()?;
            Some(ctx::QuicCtx { endpoints, roots })
        }
    };
    Ok(Ctx {
        transport: c.transport,
        quic,
        targets,
        secret: secret.into_bytes(),
        run_id: c
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()),
        sources: loopback_sources(c.source_ips),
        duration: parse_duration(&c.duration)?,
        drain: parse_duration(&c.drain)?,
        connect_rate: c.connect_rate,
        quiet: c.quiet,
        totals: Default::default(),
    })
}

fn finish(
    report: &Report,
    json: Option<&PathBuf>,
    html: Option<&PathBuf>,
    slo: Option<&str>,
) -> anyhow::Result<ExitCode> {
    println!("{}", report.table());
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = html {
        std::fs::write(path, report.html()).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(spec) = slo {
        let terms = slo::parse(spec)?;
        let missed = slo::check(&terms, report);
        if !missed.is_empty() {
            for m in &missed {
                println!("SLO missed: {m}");
            }
            return Ok(ExitCode::from(3));
        }
        println!("SLO met: {spec}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The scenario's name, its common options and its own parameters (for the report).
fn describe(command: &Command) -> (Common, &'static str, BTreeMap<String, String>) {
    match command {
        Command::Connect {
            common,
            connections,
            heartbeat,
            ..
        } => (
            common.clone(),
            "connect",
            BTreeMap::from([
                ("connections".into(), connections.to_string()),
                ("heartbeat".into(), heartbeat.clone()),
            ]),
        ),
        Command::Direct {
            common,
            pairs,
            rate,
            size,
        } => (
            common.clone(),
            "direct",
            BTreeMap::from([
                ("pairs".into(), pairs.to_string()),
                ("rate_per_user".into(), rate.to_string()),
                ("size".into(), size.to_string()),
            ]),
        ),
        Command::Rooms {
            common,
            rooms,
            members,
            senders,
            rate,
            size,
        } => (
            common.clone(),
            "rooms",
            BTreeMap::from([
                ("rooms".into(), rooms.to_string()),
                ("members".into(), members.to_string()),
                ("senders".into(), senders.to_string()),
                ("rate_per_sender".into(), rate.to_string()),
                ("size".into(), size.to_string()),
            ]),
        ),
        Command::History {
            common,
            clients,
            conversations,
            seed,
            rate,
        } => (
            common.clone(),
            "history",
            BTreeMap::from([
                ("clients".into(), clients.to_string()),
                ("conversations".into(), conversations.to_string()),
                ("seed".into(), seed.to_string()),
                ("rate_per_client".into(), rate.to_string()),
            ]),
        ),
        Command::Mixed {
            common,
            pairs,
            rate,
            reconnect_every,
        } => (
            common.clone(),
            "mixed",
            BTreeMap::from([
                ("pairs".into(), pairs.to_string()),
                ("rate_per_user".into(), rate.to_string()),
                ("reconnect_every".into(), reconnect_every.clone()),
            ]),
        ),
        Command::Media {
            common,
            uploaders,
            megapixels,
            chat_pairs,
            chat_rate,
            ..
        } => (
            common.clone(),
            "media",
            BTreeMap::from([
                ("uploaders".into(), uploaders.to_string()),
                ("megapixels".into(), megapixels.to_string()),
                ("chat_pairs".into(), chat_pairs.to_string()),
                ("chat_rate_per_user".into(), chat_rate.to_string()),
            ]),
        ),
        Command::Search {
            common,
            conversations,
            messages,
            writers,
            searchers,
            ..
        } => (
            common.clone(),
            "search",
            BTreeMap::from([
                ("conversations".into(), conversations.to_string()),
                ("messages".into(), messages.to_string()),
                ("writers".into(), writers.to_string()),
                ("searchers".into(), searchers.to_string()),
            ]),
        ),
        Command::Push {
            common,
            conversations,
            writers,
            no_devices,
            ..
        } => (
            common.clone(),
            "push",
            BTreeMap::from([
                ("conversations".into(), conversations.to_string()),
                ("writers".into(), writers.to_string()),
                ("devices".into(), (!no_devices).to_string()),
            ]),
        ),
        Command::Merge { .. } => unreachable_merge(),
    }
}

/// What a scenario run produced besides the shared totals.
struct Outcome {
    measured_s: f64,
    server: Option<report::ServerMemory>,
    chat: Option<scenario::chat::Outcome>,
    media: Option<report::MediaFigures>,
    search: Option<report::SearchFigures>,
    push: Option<report::PushFigures>,
}

async fn chat_run(
    ctx: &Arc<Ctx>,
    topology: scenario::chat::Topology,
    behaviour: Behaviour,
) -> anyhow::Result<Outcome> {
    let outcome = scenario::chat::run(ctx.clone(), topology, behaviour).await?;
    Ok(Outcome {
        measured_s: outcome.measured_s,
        server: None,
        chat: Some(outcome),
        media: None,
        search: None,
        push: None,
    })
}

/// Chatting with typing, read receipts and reconnects that resume (the soak).
fn mixed(rate: f64, reconnect_every: Option<Duration>) -> Behaviour {
    Behaviour {
        rate,
        size: 64,
        typing: 0.3,
        read: 0.5,
        reconnect_every,
    }
}

fn steady(rate: f64, size: usize) -> Behaviour {
    Behaviour {
        rate,
        size,
        typing: 0.0,
        read: 0.0,
        reconnect_every: None,
    }
}

async fn run_one(command: Command, ctx: &Arc<Ctx>) -> anyhow::Result<Outcome> {
    Ok(match command {
        Command::Connect {
            connections,
            heartbeat,
            server_pid,
            metrics,
            reconnect,
            ..
        } => {
            let options = scenario::connect::Options {
                connections,
                hold: ctx.duration,
                heartbeat: parse_duration(&heartbeat)?,
                server_pid,
                metrics: metrics.as_deref().map(resolve).transpose()?,
                reconnect,
            };
            let (measured_s, server) = scenario::connect::run(ctx.clone(), options).await?;
            Outcome {
                measured_s,
                server,
                chat: None,
                media: None,
                search: None,
                push: None,
            }
        }
        Command::Direct {
            pairs, rate, size, ..
        } => {
            let topology = scenario::direct_topology(ctx, pairs).await?;
            chat_run(ctx, topology, steady(rate, size)).await?
        }
        Command::Rooms {
            rooms,
            members,
            senders,
            rate,
            size,
            ..
        } => {
            let topology =
                scenario::rooms_topology(ctx, rooms, members, senders.min(members)).await?;
            chat_run(ctx, topology, steady(rate, size)).await?
        }
        Command::History {
            clients,
            conversations,
            seed,
            rate,
            ..
        } => {
            let options = scenario::history::Options {
                clients,
                conversations,
                seed,
                rate,
            };
            Outcome {
                measured_s: scenario::history::run(ctx.clone(), options).await?,
                server: None,
                chat: None,
                media: None,
                search: None,
                push: None,
            }
        }
        Command::Mixed {
            pairs,
            rate,
            reconnect_every,
            ..
        } => {
            let topology = scenario::direct_topology(ctx, pairs).await?;
            let reconnect_every = Some(parse_duration(&reconnect_every)?);
            chat_run(ctx, topology, mixed(rate, reconnect_every)).await?
        }
        Command::Media {
            uploaders,
            megapixels,
            server_pid,
            chat_pairs,
            chat_rate,
            ..
        } => {
            let options = scenario::media::Options {
                uploaders,
                megapixels,
                server_pid,
            };
            let uploads = scenario::media::run(ctx.clone(), options);
            let ((measured_s, figures), chat) = if chat_pairs > 0 {
                let topology = scenario::direct_topology(ctx, chat_pairs).await?;
                let chat = scenario::chat::run(ctx.clone(), topology, steady(chat_rate, 64));
                let (uploads, chat) = tokio::join!(uploads, chat);
                (uploads?, Some(chat?))
            } else {
                (uploads.await?, None)
            };
            Outcome {
                measured_s,
                server: None,
                chat,
                media: Some(figures),
                search: None,
                push: None,
            }
        }
        Command::Search {
            conversations,
            messages,
            writers,
            searchers,
            server_pid,
            index_dir,
            ..
        } => {
            let options = scenario::search::Options {
                conversations,
                messages,
                writers,
                searchers,
                server_pid,
                index_dir,
            };
            let (measured_s, figures) = scenario::search::run(ctx.clone(), options).await?;
            Outcome {
                measured_s,
                server: None,
                chat: None,
                media: None,
                search: Some(figures),
                push: None,
            }
        }
        Command::Push {
            conversations,
            writers,
            listen,
            no_devices,
            server_pid,
            settle,
            ..
        } => {
            let options = scenario::push::Options {
                conversations,
                writers,
                listen,
                devices: !no_devices,
                server_pid,
                // --duration: how long the last push may take.
                timeout: ctx.duration,
                settle: parse_duration(&settle)?,
            };
            let (measured_s, figures) = scenario::push::run(ctx.clone(), options).await?;
            Outcome {
                measured_s,
                server: None,
                chat: None,
                media: None,
                search: None,
                push: Some(figures),
            }
        }
        Command::Merge { .. } => unreachable_merge(),
    })
}

async fn run_scenario(command: Command) -> anyhow::Result<ExitCode> {
    let (common, name, mut params) = describe(&command);
    let ctx = Arc::new(context(&common)?);
    params.insert("duration".into(), common.duration.clone());
    params.insert(
        "transport".into(),
        format!("{:?}", common.transport).to_lowercase(),
    );
    let started_at_ms = crate::ctx::wall_ms() as u64;
    let stop = Arc::new(tokio::sync::Notify::new());
    let reporter = tokio::spawn(ctx::reporter(ctx.clone(), stop.clone(), name));
    let outcome = run_one(command, &ctx).await?;
    stop.notify_waiters();
    let _ = reporter.await;
    let seconds = ctx.totals().timeline.len() as u64;
    ctx.totals().collect(seconds + 1);
    if !ctx.quiet {
        eprintln!();
    }
    let mut report = Report::from_totals(&ctx.totals(), outcome.measured_s);
    report.scenario = name.to_owned();
    report.params = params;
    report.targets = ctx.targets.iter().map(ToString::to_string).collect();
    report.started_at_ms = started_at_ms;
    report.server = outcome.server;
    report.media = outcome.media;
    report.search = outcome.search;
    report.push = outcome.push;
    if let Some(o) = outcome.chat {
        report.expected_deliveries = o.expected_deliveries;
        report.lost = o.lost;
        report.duplicates = o.duplicates;
        report.order_gaps = o.gaps;
    } else {
        report.expected_deliveries = report.delivered;
    }
    finish(
        &report,
        common.json.as_ref(),
        common.report.as_ref(),
        common.slo.as_deref(),
    )
}

fn unreachable_merge() -> ! {
    // `main` handles merge before a runtime exists.
    panic!("merge is not a scenario")
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Merge {
            files,
            json,
            report,
            slo,
        } => (|| {
            let reports = files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f)
                        .with_context(|| format!("read {}", f.display()))?;
                    serde_json::from_str::<Report>(&text)
                        .with_context(|| format!("parse {}", f.display()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if reports.is_empty() {
                bail!("nothing to merge");
            }
            finish(
                &Report::merge(&reports),
                json.as_ref(),
                report.as_ref(),
                slo.as_deref(),
            )
        })(),
        command => {
            // A load generator holds many sockets: raise the open-file limit as far as allowed.
            let _ = rlimit::increase_nofile_limit(u64::MAX);
            let threads = match &command {
                Command::Connect { common, .. }
                | Command::Direct { common, .. }
                | Command::Rooms { common, .. }
                | Command::History { common, .. }
                | Command::Mixed { common, .. }
                | Command::Media { common, .. }
                | Command::Search { common, .. }
                | Command::Push { common, .. } => common.threads,
                Command::Merge { .. } => 1,
            };
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            if threads > 0 {
                rt.worker_threads(threads);
            }
            match rt.enable_all().build() {
                Ok(rt) => rt.block_on(run_scenario(command)),
                Err(e) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}
