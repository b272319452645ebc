//! HTTP on each shard: hyper serves `/ws` (upgraded to a WebSocket session), the REST API,
//! health probes, the web chat page (`page`, unless `--web-page false`) and, only with
//! `--test-endpoints`, `/test/echo`.

use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::deadline::Deadlines;
use super::response::{Body, error, json};
use super::{media, page, rest, ws};
use crate::node::Node;
use crate::shard::{ConnGuard, Shard};
use crate::state::admission::Admitted;
use parley_proto::ErrorCode;

/// Serves one accepted TCP connection until it closes or is upgraded.
pub(crate) async fn serve_connection(shard: Rc<Shard>, stream: TcpStream, admitted: Admitted) {
    let admitted = Rc::new(admitted);
    let _guard = ConnGuard::new(&shard, admitted.clone());
    let _ = stream.set_nodelay(true);
    let send_buffer = shard.node.settings.socket_send_buffer;
    if send_buffer > 0 {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer);
    }
    let svc_shard = shard.clone();
    let service = service_fn(move |req| {
        let (shard, admitted) = (svc_shard.clone(), admitted.clone());
        async move { Ok::<_, Infallible>(route(shard, req, admitted).await) }
    });
    // Every phase has a deadline: the headers (slowloris), a response write the client does
    // not take (pipelined requests whose answers it never reads), silence between requests;
    // the body's is in `rest`.
    let s = &shard.node.settings;
    let io = Deadlines::new(stream, s.write_timeout, Some(s.http_idle_timeout));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(s.http_header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut shutdown = shard.shutdown.clone();
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = tokio::time::timeout(shard.node.settings.shutdown_grace, conn).await;
}

async fn route(
    shard: Rc<Shard>,
    mut req: Request<Incoming>,
    admitted: Rc<Admitted>,
) -> Response<Body> {
    let node = &shard.node;
    let path = req.uri().path().to_owned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = match (req.method(), path.as_str()) {
        (&Method::OPTIONS, _) => preflight(),
        (&Method::GET, "/healthz") => health(node),
        (&Method::GET, "/readyz") => ready(node).await,
        (&Method::GET, "/metrics") => {
            metrics_refusal(node, &req, admitted.ip()).unwrap_or_else(|| metrics(node))
        }
        (&Method::GET, "/ws") => upgrade(&shard, &mut req, false, admitted),
        (&Method::GET, "/test/echo") if node.settings.test_endpoints => {
            upgrade(&shard, &mut req, true, admitted)
        }
        (&Method::GET | &Method::HEAD, p)
            if node.settings.web_page
                && let Some(asset) = page::asset(p) =>
        {
            page::serve(asset, req.headers(), req.method() == Method::HEAD)
        }
        (_, p) if p.starts_with("/api/") => rest::handle(node, req).await,
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/media/") => {
            media::serve(node, req).await
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    cors(node, origin, &mut resp);
    resp
}

async fn ready(node: &Node) -> Response<Body> {
    if node.lifecycle.is_shutting_down() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down",
        );
    }
    match node.chat.storage_health().await {
        Ok(()) => json(StatusCode::OK, r#"{"status":"ready"}"#.into()),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable.name(),
            &e.to_string(),
        ),
    }
}

/// Liveness: 503 once storage cannot write any more (restart the process), 200 otherwise.
fn health(node: &Node) -> Response<Body> {
    if node.chat.storage_alive() {
        json(StatusCode::OK, r#"{"status":"ok"}"#.into())
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_writer_stopped",
            "storage can no longer write; restart the node",
        )
    }
}

/// Who may read `/metrics`: with `--metrics-token`, a request bearing it; without, clients on
/// the loopback interface only (a scraper on the same host or behind a local proxy). The
/// refusal, or None when the request may read them.
fn metrics_refusal(
    node: &Node,
    req: &Request<Incoming>,
    peer: std::net::IpAddr,
) -> Option<Response<Body>> {
    match &node.settings.metrics_token {
        Some(expected) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // Constant time in the token's bytes: nothing to learn from the answer's timing.
            let same = given.is_some_and(|g| {
                g.len() == expected.len()
                    && g.bytes()
                        .zip(expected.bytes())
                        .fold(0u8, |d, (a, b)| d | (a ^ b))
                        == 0
            });
            (!same).then(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::AuthFailed.name(),
                    "metrics need the configured --metrics-token",
                )
            })
        }
        None if peer.is_loopback() || peer.to_canonical().is_loopback() => None,
        None => Some(error(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden.name(),
            "metrics are served to loopback clients only (or set --metrics-token)",
        )),
    }
}

fn metrics(node: &Node) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut text = node.metrics.render(&crate::metrics::NodeGauges {
        online_users: node.chat.routes.online_users(),
        resident_bytes: resident_bytes().unwrap_or(0),
        inbox_full_drops: node.chat.fanout().inbox_full_drops.load(Relaxed),
        block_invalidations: node.chat.blocks.invalidations(),
        connections_admitted: node.admission.open(),
        refused_node_full: node.admission.refused_node_full.load(Relaxed),
        refused_address_full: node.admission.refused_address_full.load(Relaxed),
        outbox_queued_bytes: node.outbox_budget.used(),
        outbox_shed: node.outbox_budget.shed.load(Relaxed),
        order: {
            let s = &node.chat.delivery.lines.stats;
            crate::metrics::OrderGauges {
                duplicates: s.duplicates.load(Relaxed),
                late: s.late.load(Relaxed),
                fills: s.fills.load(Relaxed),
                gaps_skipped: s.gaps_skipped.load(Relaxed),
            }
        },
        search: node.chat.search.as_ref().map(|index| {
            let s = index.stats();
            crate::metrics::SearchGauges {
                indexed: s.indexed.load(Relaxed),
                deletes: s.deleted.load(Relaxed),
                commits: s.commits.load(Relaxed),
                queries: s.queries.load(Relaxed),
                relaxed: s.relaxed.load(Relaxed),
                lag: s
                    .head
                    .load(Relaxed)
                    .saturating_sub(s.watermark.load(Relaxed)),
            }
        }),
        bus: node.chat.bus.as_ref().map(|b| {
            let s = b.stats();
            crate::metrics::BusGauges {
                connected: s.connected(),
                published: s.published.load(Relaxed),
                received: s.received.load(Relaxed),
                dropped: s.dropped.load(Relaxed),
                gaps: s.gaps.load(Relaxed),
                lag: &s.lag,
            }
        }),
    });
    node.chat.moderation.render(&mut text);
    if let Some(push) = &node.chat.push {
        push.stats.render(&mut text);
    }
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

fn upgrade(
    shard: &Rc<Shard>,
    req: &mut Request<Incoming>,
    echo: bool,
    admitted: Rc<Admitted>,
) -> Response<Body> {
    if shard.node.lifecycle.is_shutting_down() {
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
        let guard = ConnGuard::new(&shard, admitted);
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
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
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

/// Adds CORS headers when the request's Origin is one of the configured ones. With `*`
/// configured, any origin may call, but without credentials: the browser then sends no
/// cookies, and the API needs none (it authenticates by the `Authorization` header), so an
/// arbitrary page can never ride on a user's ambient credentials.
fn cors(node: &Node, origin: Option<HeaderValue>, resp: &mut Response<Body>) {
    let Some(origin) = origin else { return };
    let origins = &node.settings.cors_origins;
    let listed = origins
        .iter()
        .any(|o| origin.to_str().is_ok_and(|v| v.trim_end_matches('/') == o));
    let h = resp.headers_mut();
    if listed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    } else if origins.iter().any(|o| o == "*") {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
}
