//! The `gateway` command line: run a node, print a token, apply the CQL schema.

use std::process::ExitCode;
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::clock::wall_ms;
use crate::config::{Cli, Command, Config, Engine, parse_ttl};
use anyhow::Context;
use clap::Parser;
use parley_storage::Storage;
use parley_storage::embedded::Embedded;
use parley_storage::scylla::Scylla;

/// Parses the command line (and environment) and does what it says.
pub fn run() -> ExitCode {
    // One rustls crypto provider for the process (ring), chosen before any TLS config exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let config = match Config::from_options(&cli.options) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("invalid configuration:\n{problems}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration OK: {}", config.describe());
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        Some(Command::Token { user, ttl }) => token(&config, &user, &ttl),
        Some(Command::Migrate) => migrate(&config),
        Some(Command::Reindex) => reindex(&config),
        None => serve(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn token(config: &Config, user: &str, ttl: &str) -> anyhow::Result<()> {
    crate::auth::validate_user_id(user).map_err(anyhow::Error::msg)?;
    let ttl = parse_ttl(ttl).map_err(anyhow::Error::msg)?;
    let secret = config.resolve_secret().context("JWT secret")?;
    if let Some(file) = &secret.dev_file {
        eprintln!("signed with the development secret in {}", file.display());
    }
    let minted = config
        .token_rules
        .mint_hs256(&secret.bytes, user, ttl, wall_ms());
    if minted.ttl_s < ttl {
        eprintln!(
            "lifetime capped at --jwt-max-lifetime-s ({} s): the node refuses longer ones",
            minted.ttl_s
        );
    }
    println!("{}", minted.token);
    Ok(())
}

/// `gateway migrate`: the schema step of a deployment, apart from starting any node.
fn migrate(config: &Config) -> anyhow::Result<()> {
    let Engine::Scylla {
        config: scylla,
        replication,
        ..
    } = &config.engine
    else {
        anyhow::bail!("`gateway migrate` needs --scylla (or SCYLLA_NODES)");
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(Scylla::migrate(
            &scylla.nodes,
            &scylla.keyspace,
            replication,
        ))
        .with_context(|| format!("apply the CQL schema to {:?}", scylla.nodes))?;
    println!(
        "CQL schema applied: keyspace {} on {}",
        scylla.keyspace,
        scylla.nodes.join(",")
    );
    Ok(())
}

/// `gateway reindex`: rebuilds the search index from the embedded storage, with progress on
/// stderr. The node must be stopped (the storage directory is locked while it runs).
fn reindex(config: &Config) -> anyhow::Result<()> {
    use crate::config::SearchEngine;
    use crate::search::Tantivy;
    use crate::search::indexer::Indexer;
    let Some(search) = &config.search else {
        anyhow::bail!("`gateway reindex` needs search on: --search true (and in a cluster --solr)");
    };
    let (SearchEngine::Embedded(dir), Engine::Embedded(embedded)) =
        (&search.engine, &config.engine)
    else {
        return reindex_cluster(config, search);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store_dir = config.data_dir.join("store");
    let storage = Embedded::open(&store_dir, embedded.clone()).with_context(|| {
        format!(
            "open storage in {} (is a node still running on it?)",
            store_dir.display()
        )
    })?;
    let index = Arc::new(
        Tantivy::open(dir)
            .with_context(|| format!("open the search index in {}", dir.display()))?,
    );
    let storage: Arc<dyn parley_storage::Storage> = Arc::new(storage);
    // Push reads the same feed: keep what it has not done with.
    let keep_above = rt
        .block_on(crate::push::dispatch::stored_cursor(&*storage))
        .context("read the push cursor")?
        .unwrap_or(u64::MAX);
    let indexer = Indexer {
        index: index.clone(),
        storage,
        commit_every: search.commit_every,
        poll: std::time::Duration::from_millis(100),
        keep_above: Arc::new(std::sync::atomic::AtomicU64::new(keep_above)),
    };
    let started = std::time::Instant::now();
    let mut shown = started;
    let scanned = indexer
        .reindex(&rt, &mut |s| {
            if shown.elapsed() >= std::time::Duration::from_secs(1) {
                shown = std::time::Instant::now();
                eprintln!(
                    "reindex: {} conversations, {} messages",
                    s.conversations, s.messages
                );
            }
        })
        .context("rebuild the search index")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "search index rebuilt in {}: {} conversations, {} messages in {secs:.1} s ({:.0} messages/s); {} documents",
        dir.display(),
        scanned.conversations,
        scanned.messages,
        scanned.messages as f64 / secs.max(1e-3),
        index.docs()
    );
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .init();
    let auth = authenticator(&config)?;
    // Clients of shared services (ScyllaDB, Redis) run their connection tasks here, apart from
    // the shards.
    let services = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("parley-services")
        .enable_all()
        .build()?;
    let storage = open_storage(&config, &services)?;
    tracing::info!(config = %config.describe(), "starting");
    // Signal handlers go in before anyone can learn the address: a SIGTERM right after start
    // must still mean a graceful stop.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = signals.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    let tls = crate::transport::quic::tls::load_or_generate(
        config.listen.tls_cert.as_deref(),
        config.listen.tls_key.as_deref(),
        &config.data_dir,
    )?;
    if tls.generated {
        tracing::warn!(cert = %tls.cert_path.display(), "no --tls-cert configured: generated a self-signed QUIC certificate");
    }
    let dev_sign_in = config.node.dev_sign_in;
    let running = crate::server::start(config, storage, auth, &tls, services.handle())?;
    announce(running.addr(), running.quic_addr(), &tls);
    if dev_sign_in {
        tracing::warn!(
            addr = %running.addr(),
            "development sign-in open: POST /api/dev/token hands anyone who can reach this \
             port a token for any user id (only with the development secret; set JWT_SECRET \
             to close it)"
        );
    }
    signals.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    tracing::info!("shutting down: telling clients to reconnect");
    running.shutdown(services.handle());
    tracing::info!("stopped");
    Ok(())
}

/// The token verifier: the configured (or development) secret, plus a public key if any.
/// With only a public key configured there is no secret at all: no development secret is
/// generated or accepted.
fn authenticator(config: &Config) -> anyhow::Result<Authenticator> {
    let public_key = match &config.jwt_public_key {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("read {}", path.display()))?)
        }
        None => None,
    };
    let rules = config.token_rules.clone();
    if config.jwt_secret.is_none() && public_key.is_some() {
        return Authenticator::new(None, public_key.as_deref(), rules).map_err(anyhow::Error::msg);
    }
    let secret = config.resolve_secret().context("JWT secret")?;
    if let Some(file) = &secret.dev_file {
        tracing::warn!(
            file = %file.display(),
            generated = secret.generated,
            "no JWT_SECRET configured: using a development secret kept in the data directory; \
             mint tokens with `gateway token <user-id>`"
        );
    }
    Authenticator::new(Some(&secret.bytes), public_key.as_deref(), rules)
        .map_err(anyhow::Error::msg)
}

/// Logs where the node listens, and prints stable lines on stdout for scripts and tests that
/// start the gateway with --port 0. A closed stdout (a supervisor that does not read it) must
/// not stop the node: errors are ignored, where `println!` would panic.
fn announce(
    addr: std::net::SocketAddr,
    quic: std::net::SocketAddr,
    tls: &crate::transport::quic::tls::TlsMaterial,
) {
    use std::io::Write;
    tracing::info!(%addr, "listening (HTTP + WebSocket /ws)");
    tracing::info!(
        addr = %quic,
        alpn = "parley/1",
        cert = %tls.cert_path.display(),
        sha256 = %tls.fingerprint,
        "listening (QUIC)"
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "parley gateway listening on {addr}");
    let _ = writeln!(
        out,
        "parley quic listening on {quic} (udp, ALPN parley/1) certificate {} sha256 {}",
        tls.cert_path.display(),
        tls.fingerprint
    );
    let _ = out.flush();
}

/// The configured storage engine, opened (and, with `--migrate`, its schema applied).
fn open_storage(
    config: &Config,
    services: &tokio::runtime::Runtime,
) -> anyhow::Result<Arc<dyn Storage>> {
    match &config.engine {
        Engine::Scylla {
            config: scylla,
            replication,
            migrate,
        } => {
            if *migrate {
                services
                    .block_on(Scylla::migrate(
                        &scylla.nodes,
                        &scylla.keyspace,
                        replication,
                    ))
                    .context("apply the CQL schema (--migrate)")?;
                tracing::info!(keyspace = %scylla.keyspace, "CQL schema applied");
            }
            let engine = services
                .block_on(Scylla::connect(scylla))
                .with_context(|| format!("connect to ScyllaDB {:?}", scylla.nodes))?;
            Ok(Arc::new(engine))
        }
        Engine::Embedded(embedded) => {
            let store_dir = config.data_dir.join("store");
            let engine = Embedded::open(&store_dir, embedded.clone())
                .with_context(|| format!("open storage in {}", store_dir.display()))?;
            Ok(Arc::new(engine))
        }
    }
}

/// `gateway reindex` in a cluster: every message in ScyllaDB written to the Solr collection
/// again (a document per message id: what is there already is replaced, nothing doubles), with
/// progress on stderr. Nodes may go on serving meanwhile.
fn reindex_cluster(config: &Config, search: &crate::config::SearchConfig) -> anyhow::Result<()> {
    use crate::config::SearchEngine;
    let (SearchEngine::Solr { url, timeout }, Engine::Scylla { config: scylla, .. }) =
        (&search.engine, &config.engine)
    else {
        anyhow::bail!("`gateway reindex` needs the embedded storage, or --scylla with --solr");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let solr = Arc::new(crate::search::solr::Solr::new(url, *timeout).map_err(anyhow::Error::msg)?);
        solr.ping()
            .await
            .with_context(|| format!("the Solr collection at {url}"))?;
        let storage: Arc<dyn parley_storage::Storage> = Arc::new(
            Scylla::connect(scylla)
                .await
                .with_context(|| format!("connect to ScyllaDB at {:?}", scylla.nodes))?,
        );
        let started = std::time::Instant::now();
        let mut shown = started;
        let index: Arc<dyn crate::search::SearchIndex> = solr.clone();
        let scanned = crate::search::cluster::reindex(&*storage, index, &mut |s| {
            if shown.elapsed() >= std::time::Duration::from_secs(1) {
                shown = std::time::Instant::now();
                eprintln!("reindex: {} conversations, {} messages", s.conversations, s.messages);
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("rebuild the search index: {e}"))?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "search index rebuilt in {url}: {} conversations, {} messages in {secs:.1} s ({:.0} messages/s); {} documents",
            scanned.conversations,
            scanned.messages,
            scanned.messages as f64 / secs.max(1e-3),
            solr.docs().await?
        );
        anyhow::Ok(())
    })
}
