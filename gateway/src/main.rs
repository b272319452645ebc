//! `gateway`: runs a Parley node, or prints a token (`gateway token <user>`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use gateway::auth::{Authenticator, mint_hs256};
use gateway::clock::wall_ms;
use gateway::config::{Cli, Command, Config, parse_ttl};
use parley_storage::Storage;
use parley_storage::embedded::{Embedded, EmbeddedConfig};
use parley_storage::scylla::Scylla;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
        None => run(config),
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
    gateway::auth::validate_user_id(user).map_err(anyhow::Error::msg)?;
    let ttl = parse_ttl(ttl).map_err(anyhow::Error::msg)?;
    let secret = config.resolve_secret().context("JWT secret")?;
    if let Some(file) = &secret.dev_file {
        eprintln!("signed with the development secret in {}", file.display());
    }
    println!("{}", mint_hs256(&secret.bytes, user, ttl, wall_ms()));
    Ok(())
}

/// `gateway migrate`: the schema step of a deployment, apart from starting any node.
fn migrate(config: &Config) -> anyhow::Result<()> {
    let scylla = config
        .scylla()
        .context("`gateway migrate` needs --scylla (or SCYLLA_NODES)")?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(Scylla::migrate(
            &scylla.nodes,
            &scylla.keyspace,
            &config.scylla_replication,
        ))
        .with_context(|| format!("apply the CQL schema to {:?}", scylla.nodes))?;
    println!(
        "CQL schema applied: keyspace {} on {}",
        scylla.keyspace,
        scylla.nodes.join(",")
    );
    Ok(())
}

fn run(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .init();
    let secret = config.resolve_secret().context("JWT secret")?;
    if let Some(file) = &secret.dev_file {
        tracing::warn!(
            file = %file.display(),
            generated = secret.generated,
            "no JWT_SECRET configured: using a development secret kept in the data directory; \
             mint tokens with `gateway token <user-id>`"
        );
    }
    let public_key = match &config.jwt_public_key {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("read {}", path.display()))?)
        }
        None => None,
    };
    let auth =
        Authenticator::new(&secret.bytes, public_key.as_deref()).map_err(anyhow::Error::msg)?;
    // Clients of shared services (ScyllaDB, Redis) run their connection tasks here, apart from
    // the shards.
    let services = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("parley-services")
        .enable_all()
        .build()?;
    let storage: Arc<dyn Storage> = match config.scylla() {
        Some(scylla) => {
            if config.migrate {
                services
                    .block_on(Scylla::migrate(
                        &scylla.nodes,
                        &scylla.keyspace,
                        &config.scylla_replication,
                    ))
                    .context("apply the CQL schema (--migrate)")?;
                tracing::info!(keyspace = %scylla.keyspace, "CQL schema applied");
            }
            let engine = services
                .block_on(Scylla::connect(&scylla))
                .with_context(|| format!("connect to ScyllaDB {:?}", scylla.nodes))?;
            Arc::new(engine)
        }
        None => {
            let store_dir = config.data_dir.join("store");
            Arc::new(
                Embedded::open(
                    &store_dir,
                    EmbeddedConfig {
                        node_id: config.session.node_id,
                        max_batch: config.storage_max_batch,
                        commit_delay: config.storage_commit_delay,
                        ..EmbeddedConfig::default()
                    },
                )
                .with_context(|| format!("open storage in {}", store_dir.display()))?,
            )
        }
    };
    tracing::info!(config = %config.describe(), "starting");
    // Signal handlers go in before anyone can learn the address: a SIGTERM right after start
    // must still mean a graceful stop.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = signals.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    let tls = gateway::quic::tls::load_or_generate(
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &config.data_dir,
    )?;
    if tls.generated {
        tracing::warn!(cert = %tls.cert_path.display(), "no --tls-cert configured: generated a self-signed QUIC certificate");
    }
    let running = gateway::server::start(config, storage, auth, &tls, services.handle())?;
    let addr = running.addr();
    tracing::info!(%addr, "listening (HTTP + WebSocket /ws)");
    tracing::info!(
        addr = %running.quic_addr(),
        alpn = "parley/1",
        cert = %tls.cert_path.display(),
        sha256 = %tls.fingerprint,
        "listening (QUIC)"
    );
    // Stable lines on stdout for scripts and tests that start the gateway with --port 0. A
    // closed stdout (a supervisor that does not read it) must not stop the node: errors are
    // ignored, where `println!` would panic.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "parley gateway listening on {addr}");
        let _ = writeln!(
            out,
            "parley quic listening on {} (udp, ALPN parley/1) certificate {} sha256 {}",
            running.quic_addr(),
            tls.cert_path.display(),
            tls.fingerprint
        );
        let _ = out.flush();
    }
    let (mut term, mut int) = stop;
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
