//! HTTP on each shard: hyper serves `/ws` (upgraded to a WebSocket session), the REST API,
//! health probes and, only with `--test-endpoints`, `/test/echo`.

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::node::Node;
use crate::rest;
use crate::shard::Shard;
use crate::ws;
use parley_proto::ErrorCode;

/// Time a client gets to send a request's headers (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub type Body = Full<Bytes>;

/// Counts a connection as open on its shard until dropped (for draining at shutdown).
pub struct ConnGuard(Rc<Shard>);

impl ConnGuard {
    pub fn new(shard: &Rc<Shard>) -> Self {
        shard.connections.set(shard.connections.get() + 1);
        Self(shard.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// Serves one accepted TCP connection until it closes or is upgraded.
pub async fn serve_connection(shard: Rc<Shard>, stream: TcpStream) {
    let _guard = ConnGuard::new(&shard);
    let _ = stream.set_nodelay(true);
    let svc_shard = shard.clone();
    let service = service_fn(move |req| {
        let shard = svc_shard.clone();
        async move { Ok::<_, Infallible>(route(shard, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut shutdown = shard.shutdown.clone();
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = tokio::time::timeout(shard.node.config.shutdown_grace, conn).await;
}

async fn route(shard: Rc<Shard>, mut req: Request<Incoming>) -> Response<Body> {
    let node = &shard.node;
    let path = req.uri().path().to_owned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = match (req.method(), path.as_str()) {
        (&Method::OPTIONS, _) => preflight(),
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        (&Method::GET, "/readyz") => ready(node).await,
        (&Method::GET, "/metrics") => metrics(node),
        (&Method::GET, "/ws") => upgrade(&shard, &mut req, false),
        (&Method::GET, "/test/echo") if node.config.test_endpoints => {
            upgrade(&shard, &mut req, true)
        }
        (_, p) if p.starts_with("/api/") => rest::handle(node, req).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    cors(node, origin, &mut resp);
    resp
}

async fn ready(node: &Node) -> Response<Body> {
    if node.is_shutting_down() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down",
        );
    }
    match node.storage.health().await {
        Ok(()) => json(StatusCode::OK, r#"{"status":"ready"}"#.into()),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable.name(),
            &e.to_string(),
        ),
    }
}

fn metrics(node: &Node) -> Response<Body> {
    let online = node.hub.online_users() as f64;
    let rss = resident_bytes().unwrap_or(0) as f64;
    let mut extra = vec![
        (
            "parley_online_users",
            "Users with at least one session on this node.",
            online,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory of this process.",
            rss,
        ),
    ];
    if let Some(c) = &node.cluster {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &c.stats;
        let connected = f64::from(u8::from(c.is_connected()));
        extra.extend([
            (
                "parley_bus_connected",
                "1 while the cluster bus reads from Redis.",
                connected,
            ),
            (
                "parley_bus_published_total",
                "Events written to the cluster bus.",
                s.published.load(Relaxed) as f64,
            ),
            (
                "parley_bus_received_total",
                "Events read from other nodes.",
                s.received.load(Relaxed) as f64,
            ),
            (
                "parley_bus_dropped_total",
                "Events dropped because the publish queue was full.",
                s.dropped.load(Relaxed) as f64,
            ),
            (
                "parley_bus_duplicates_total",
                "Events read twice and delivered once.",
                s.duplicates.load(Relaxed) as f64,
            ),
            (
                "parley_bus_gaps_total",
                "Times this node found it had missed bus events.",
                s.gaps.load(Relaxed) as f64,
            ),
        ]);
    }
    let text = node.metrics.render(&extra);
    let mut resp = Response::new(Body::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// This process's resident set size (Linux `/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn upgrade(shard: &Rc<Shard>, req: &mut Request<Incoming>, echo: bool) -> Response<Body> {
    if shard.node.is_shutting_down() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down",
        );
    }
    let (resp, fut) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_upgrade", &e.to_string()),
    };
    let shard = shard.clone();
    // This task only finishes the upgrade; the session then runs in tasks of its own sized
    // for the long idle life of a connection.
    tokio::task::spawn_local(async move {
        let guard = ConnGuard::new(&shard);
        match fut.await {
            Ok(ws) if echo => ws::serve_echo(shard, ws, guard).await,
            Ok(ws) => ws::start_session(shard, ws, guard),
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    resp.map(|_| Body::default())
}

fn preflight() -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, idempotency-key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    resp
}

/// Adds CORS headers when the request's Origin is one of the configured ones.
fn cors(node: &Node, origin: Option<HeaderValue>, resp: &mut Response<Body>) {
    let Some(origin) = origin else { return };
    let allowed = node
        .config
        .cors_origins
        .iter()
        .any(|o| o == "*" || origin.to_str().is_ok_and(|v| v.trim_end_matches('/') == o));
    if allowed {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// A JSON response.
pub fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"error": {"code", "message"}}` with `status`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    json(status, body.to_string())
}
