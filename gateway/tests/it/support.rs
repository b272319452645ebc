//! Test support: a real gateway process, protocol clients over real WebSocket and QUIC
//! connections (`parley-client`) and a small HTTP client, all over loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
pub use fastwebsockets::OpCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use parley_client::token::mint_hs256;
use parley_proto::*;
use parley_types::{ConversationId, Message, MessageId, Position};
use serde_json::Value;
use tokio::net::TcpStream;

pub const SECRET: &str = "parley-test-secret-0123456789abcdef";
/// Gateway flags that lift the rate limits, for tests that send a lot.
pub const UNLIMITED: &[&str] = &[
    "--user-messages-per-sec",
    "1000000",
    "--user-message-burst",
    "1000000",
    "--session-frames-per-sec",
    "1000000",
    "--session-frame-burst",
    "1000000",
];
/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A gateway process on a free loopback port with its own data directory.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The QUIC endpoint (UDP) and its certificate.
    pub quic_addr: SocketAddr,
    pub cert: PathBuf,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
    /// Started without `--jwt-secret`: the node signs with its generated development secret.
    dev_secret: bool,
}

impl Gateway {
    /// Starts a gateway with a fresh data directory and `args` on top of test defaults.
    pub fn start(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut g = Self::start_in(&dir, args);
        g._tmp = Some(tmp);
        g
    }

    /// Starts a gateway like [`Gateway::start`] but with no JWT secret: it generates the
    /// development secret in its data directory (and opens the development sign-in). Tokens
    /// of [`token`] do not work on it.
    pub fn start_dev(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut g = Self::spawn(&dir, args, true);
        g._tmp = Some(tmp);
        g
    }

    /// Starts a gateway on an existing data directory (restart after a crash).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::spawn(dir, args, false)
    }

    fn spawn(dir: &Path, args: &[&str], dev_secret: bool) -> Self {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        if dev_secret {
            command
                .env_remove("JWT_SECRET")
                .env_remove("JWT_PUBLIC_KEY_FILE");
        } else {
            command.args(["--jwt-secret", SECRET]);
        }
        let mut child = command
            .args(["--port", "0", "--bind", "127.0.0.1"])
            // Two shards unless the test asks for its own number.
            .args(if args.iter().any(|a| a == "--shards") {
                &[][..]
            } else {
                &["--shards", "2"][..]
            })
            .arg("--data-dir")
            .arg(dir)
            .args(lifted_rest_limits(&args))
            .arg("--log")
            // PARLEY_TEST_LOG=debug shows the gateway's logs while debugging a test.
            .arg(std::env::var("PARLEY_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gateway binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let mut http = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("parley gateway listening on ") {
                    http = Some(addr.parse::<SocketAddr>().unwrap());
                }
                // parley quic listening on ADDR (udp, ALPN parley/1) certificate PATH sha256 FP
                if let Some(rest) = line.strip_prefix("parley quic listening on ") {
                    let quic: SocketAddr = rest.split(' ').next().unwrap().parse().unwrap();
                    let cert = rest.split(" certificate ").nth(1).unwrap();
                    let cert = PathBuf::from(cert.split(" sha256 ").next().unwrap());
                    let _ = tx.send((http.take().unwrap(), quic, cert));
                }
            }
        });
        let (addr, quic_addr, cert) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("gateway did not report its addresses");
        Self {
            child: Some(child),
            addr,
            quic_addr,
            cert,
            dir: dir.to_owned(),
            _tmp: None,
            args,
            dev_secret,
        }
    }

    pub fn token(&self, user: &str) -> String {
        token(user)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        c.wait().unwrap()
    }

    /// Restarts on the same data directory with the same arguments (new port).
    pub fn restart(&mut self) {
        self.kill9();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut fresh = Self::spawn(&self.dir, &args, self.dev_secret);
        self.addr = fresh.addr;
        self.quic_addr = fresh.quic_addr;
        self.cert = fresh.cert.clone();
        // Take the process so dropping `fresh` does not kill it.
        self.child = fresh.child.take();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Tests make REST calls in bursts and create many groups: those limits are lifted unless a
/// test sets them (abuse.rs tests them).
fn lifted_rest_limits(args: &[String]) -> Vec<&'static str> {
    [
        "--rest-requests-per-sec",
        "--rest-request-burst",
        "--groups-per-user-per-hour",
    ]
    .into_iter()
    .filter(|flag| !args.iter().any(|a| a == flag))
    .flat_map(|flag| [flag, "1000000"])
    .collect()
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn token(user: &str) -> String {
    mint_hs256(SECRET.as_bytes(), user, 3600, wall_ms())
}

/// A protocol client (`parley_client`) over a real WebSocket or QUIC connection, with the
/// test's conveniences: every call panics with the user's name instead of returning an error.
pub struct Client {
    inner: parley_client::Client,
    pub user: String,
    /// For QUIC clients: the endpoint, to rebind it (a network change).
    endpoint: Option<quinn::Endpoint>,
}

/// How a connection ended.
pub type Closed = parley_client::Closed;

/// A QUIC client configuration trusting the gateway's certificate (share it between
/// connections to keep session tickets for 0-RTT).
pub fn quic_config(gw: &Gateway) -> quinn::ClientConfig {
    let certs = parley_client::quic::load_certs(&gw.cert).unwrap();
    parley_client::quic::client_config(&certs).unwrap()
}

impl Client {
    /// Connects and authenticates as `user`.
    pub async fn connect(gw: &Gateway, user: &str) -> Self {
        Self::connect_resume(gw, user, vec![]).await
    }

    /// Connects, authenticates and asks to resume from `resume`.
    pub async fn connect_resume(gw: &Gateway, user: &str, resume: Vec<ResumePoint>) -> Self {
        Self::connect_at(gw.addr, user, resume).await
    }

    pub async fn connect_at(addr: SocketAddr, user: &str, resume: Vec<ResumePoint>) -> Self {
        let mut c = Self::unauthenticated(addr, user).await;
        c.hello(resume).await;
        c
    }

    /// Connects over QUIC (to `addr`: the gateway or a relay in front of it) and authenticates.
    pub async fn quic(
        addr: SocketAddr,
        config: &quinn::ClientConfig,
        user: &str,
        resume: Vec<ResumePoint>,
    ) -> Self {
        let mut c = Self::quic_unauthenticated(addr, config, user, false).await;
        c.hello(resume).await;
        c
    }

    /// A QUIC connection whose stream is open but has sent nothing (`zero_rtt`: try 0-RTT).
    pub async fn quic_unauthenticated(
        addr: SocketAddr,
        config: &quinn::ClientConfig,
        user: &str,
        zero_rtt: bool,
    ) -> Self {
        let endpoint = parley_client::quic::endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        let via = parley_client::Via::Quic {
            target: addr,
            endpoint: endpoint.clone(),
            config: config.clone(),
            zero_rtt,
        };
        let inner = parley_client::Client::open(&via)
            .await
            .unwrap_or_else(|e| panic!("{user}: quic connect: {e}"));
        Self {
            inner,
            user: user.into(),
            endpoint: Some(endpoint),
        }
    }

    /// A connected WebSocket client that has not sent Hello.
    pub async fn unauthenticated(addr: SocketAddr, user: &str) -> Self {
        let inner = parley_client::Client::open(&parley_client::Via::ws(addr))
            .await
            .unwrap_or_else(|e| panic!("{user}: websocket connect: {e}"));
        Self {
            inner,
            user: user.into(),
            endpoint: None,
        }
    }

    /// Sends Hello and waits for Welcome.
    pub async fn hello(&mut self, resume: Vec<ResumePoint>) -> Welcome {
        let user = self.user.clone();
        self.inner
            .hello(&token(&user), resume)
            .await
            .unwrap_or_else(|e| panic!("{user}: hello: {e}"))
    }

    /// Sends Hello with `token` (no resume) and waits for Welcome.
    pub async fn hello_with_token(&mut self, token: String) -> Welcome {
        let user = self.user.clone();
        self.inner
            .hello(&token, vec![])
            .await
            .unwrap_or_else(|e| panic!("{user}: hello: {e}"))
    }

    pub fn welcome(&self) -> &Welcome {
        self.inner.welcome.as_ref().expect("authenticated")
    }

    /// Whether this QUIC client's connection used 0-RTT.
    pub fn used_0rtt(&self) -> bool {
        self.inner.used_0rtt()
    }

    /// Typing indicators that arrived as QUIC datagrams.
    pub fn datagrams(&self) -> usize {
        self.inner.datagrams
    }

    /// The QUIC connection (panics on WebSocket clients).
    pub fn quic_connection(&self) -> &quinn::Connection {
        self.inner.quic_connection().expect("a QUIC client")
    }

    /// Moves this QUIC client to a new local UDP port (a network change, as Wi-Fi → cellular).
    pub fn rebind(&self) {
        let endpoint = self.endpoint.as_ref().expect("a QUIC client");
        endpoint
            .rebind(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .unwrap();
    }

    fn fail(&self, what: &str, e: parley_client::Error) -> ! {
        panic!("{}: {what}: {e}", self.user)
    }

    /// Sends a frame; returns its seq.
    pub async fn send(&mut self, body: ClientBody) -> u32 {
        match self.inner.send(body).await {
            Ok(seq) => seq,
            Err(e) => self.fail("send", e),
        }
    }

    /// Sends raw bytes as one frame (WebSocket binary message / QUIC length-prefixed frame).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.inner.send_bytes(bytes).await {
            self.fail("send bytes", e)
        }
    }

    /// Sends raw bytes on the QUIC stream, without a length prefix.
    pub async fn send_stream_raw(&mut self, bytes: &[u8]) {
        let r = match self.inner.writer().inner() {
            parley_client::link::WriterInner::Quic { send, .. } => send.write_raw(bytes).await,
            parley_client::link::WriterInner::WebSocket(_) => panic!("not a QUIC client"),
        };
        if let Err(e) = r {
            self.fail("write raw", e)
        }
    }

    /// One raw WebSocket frame (fragments, text, pings).
    pub async fn ws_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let r = match self.inner.writer().inner() {
            parley_client::link::WriterInner::WebSocket(w) => w.frame(fin, opcode, payload).await,
            parley_client::link::WriterInner::Quic { .. } => panic!("not a WebSocket client"),
        };
        if let Err(e) = r {
            self.fail("write frame", e)
        }
    }

    /// Sends a frame as a QUIC datagram.
    pub fn send_datagram(&mut self, body: ClientBody) {
        if let Err(e) = self.inner.writer().send_datagram(body) {
            self.fail("datagram", e)
        }
    }

    /// The next frame (backlog first).
    pub async fn next(&mut self) -> ServerFrame {
        match self.inner.next().await {
            Ok(f) => f,
            Err(e) => self.fail("next frame", e),
        }
    }

    /// The next frame matching `pred`; others stay in the backlog, in order.
    pub async fn next_where(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        match self.inner.next_where(pred).await {
            Ok(f) => f,
            Err(e) => self.fail("next matching frame", e),
        }
    }

    /// Like `next_where`, but None when the connection ends (a reconnecting client).
    pub async fn next_where_or_closed(
        &mut self,
        pred: impl Fn(&ServerFrame) -> bool,
    ) -> Option<ServerFrame> {
        match self.inner.next_where_or_closed(pred).await {
            Ok(f) => f,
            Err(e) => self.fail("next matching frame", e),
        }
    }

    /// Sends and waits for the answer with the same seq.
    pub async fn request(&mut self, body: ClientBody) -> ServerFrame {
        match self.inner.request(body).await {
            Ok(f) => f,
            Err(e) => self.fail("request", e),
        }
    }

    /// Sends a text message and returns its Ack.
    pub async fn send_text(
        &mut self,
        conv: ConversationId,
        client_msg_id: &str,
        text: &str,
    ) -> Ack {
        match self.inner.send_text(conv, client_msg_id, text).await {
            Ok(a) => a,
            Err(e) => self.fail("send failed", e),
        }
    }

    /// The next MessageNew (other frames stay in the backlog).
    pub async fn next_message(&mut self) -> Message {
        match self.inner.next_message().await {
            Ok(m) => m,
            Err(e) => self.fail("next message", e),
        }
    }

    /// Waits for the connection to end; returns the fatal error code and close code seen.
    pub async fn closed(&mut self) -> Closed {
        match self.inner.closed().await {
            Ok(c) => c,
            Err(e) => self.fail("close", e),
        }
    }

    /// Asserts nothing matching `pred` arrives within `d` (other frames are kept).
    pub async fn expect_none(&mut self, d: Duration, pred: impl Fn(&ServerFrame) -> bool) {
        let backlog = self.inner.backlog();
        assert!(
            !backlog.iter().any(&pred),
            "{}: unexpected {backlog:?}",
            self.user
        );
        let deadline = tokio::time::Instant::now() + d;
        let mut kept = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.inner.next_within(left).await {
                Ok(Some(f)) => {
                    assert!(!pred(&f), "{}: unexpected {f:?}", self.user);
                    kept.push(f);
                }
                Ok(None) | Err(parley_client::Error::Closed) => break,
                Err(e) => self.fail("expect none", e),
            }
        }
        self.inner.keep(kept);
    }

    /// Closes the connection cleanly.
    pub async fn close(self) {
        self.inner.close().await;
    }
}

pub use parley_client::{error_code, is_message, text_message as send_text};

/// One HTTP request; returns status, JSON body (Null when empty) and headers.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value, hyper::HeaderMap) {
    let body = Bytes::from(body.unwrap_or("").to_owned());
    let (status, headers, bytes) = request(addr, method, path, token, body, headers, WAIT).await;
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, json, headers)
}

/// One HTTP request with any body, answered within `deadline`: status, headers, raw body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Bytes,
    headers: &[(&str, &str)],
    deadline: Duration,
) -> (u16, hyper::HeaderMap, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = tokio::time::timeout(deadline, sender.send_request(req))
        .await
        .expect("http response in time")
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}

/// GET `path` as `user`.
pub async fn get(gw: &Gateway, user: &str, path: &str) -> (u16, Value, hyper::HeaderMap) {
    http(gw.addr, "GET", path, Some(&token(user)), None, &[]).await
}

/// POST a JSON `body` to `path` as `user`.
pub async fn post(
    gw: &Gateway,
    user: &str,
    path: &str,
    body: &str,
) -> (u16, Value, hyper::HeaderMap) {
    http(gw.addr, "POST", path, Some(&token(user)), Some(body), &[]).await
}

/// DELETE `path` as `user`.
pub async fn delete(gw: &Gateway, user: &str, path: &str) -> (u16, Value, hyper::HeaderMap) {
    http(gw.addr, "DELETE", path, Some(&token(user)), None, &[]).await
}

/// Creates (or gets) the direct conversation of `buyer` with `seller` about `listing`.
pub async fn direct(gw: &Gateway, buyer: &str, seller: &str, listing: &str) -> ConversationId {
    let body = format!(r#"{{"sellerId":"{seller}","listingId":"{listing}"}}"#);
    let (status, json, _) = http(
        gw.addr,
        "POST",
        "/api/conversations",
        Some(&token(buyer)),
        Some(&body),
        &[],
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {json}");
    json["id"].as_str().unwrap().parse().unwrap()
}

/// Creates a group of `creator` and `members`.
pub async fn group(gw: &Gateway, creator: &str, members: &[String], title: &str) -> ConversationId {
    let body = serde_json::json!({ "participantIds": members, "title": title }).to_string();
    let (status, json, _) = http(
        gw.addr,
        "POST",
        "/api/conversations",
        Some(&token(creator)),
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{json}");
    json["id"].as_str().unwrap().parse().unwrap()
}

/// "I have everything of `conversation` up to `at`."
pub fn resume_point(conversation: ConversationId, at: Position) -> ResumePoint {
    ResumePoint::at(conversation, at)
}

/// A resume point as clients before protocol 1.1 send it: by message id only.
pub fn resume_point_by_id(conversation: ConversationId, last: MessageId) -> ResumePoint {
    ResumePoint {
        conversation,
        last_message_id: last,
        last_seq: 0,
    }
}

/// Where an Ack puts the sender.
pub fn acked(a: &Ack) -> Position {
    Position {
        seq: a.message_seq,
        id: a.message_id,
    }
}

pub use parley_testsupport::{
    CachingProxy, RedisServer, S3Server, SolrCollection, cassandra, free_port, keyspace,
};

/// `/metrics` over a fresh connection, or None when the node refuses the connection.
pub async fn try_metrics(addr: SocketAddr) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8(out).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// `/metrics`, retried while the node is still releasing connection places.
pub async fn metrics(addr: SocketAddr) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = try_metrics(addr).await {
            return m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no /metrics");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the line that starts with `series` (a name with its labels).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

/// The VAPID key file the nodes of the test cluster on keyspace `ks` share (the first node
/// makes it).
pub fn cluster_vapid_key(ks: &str) -> String {
    let path = std::env::temp_dir().join(format!("parley-test-vapid-{ks}.pem"));
    path.to_str().expect("a UTF-8 temp dir").to_owned()
}

/// A node of a test cluster: `--redis`, `--scylla` (keyspace `ks`, created if missing).
pub fn cluster_node(redis: &RedisServer, ks: &str, id: u16, extra: &[&str]) -> Gateway {
    let id = id.to_string();
    let cass = cassandra();
    let vapid = cluster_vapid_key(ks);
    let mut args: Vec<&str> = vec![
        "--redis",
        "",
        "--scylla",
        &cass,
        "--scylla-keyspace",
        ks,
        "--migrate",
        "--node-id",
        &id,
        "--presence-ttl-ms",
        "3000",
        "--push-vapid-key-file",
        &vapid,
    ];
    let url = redis.url();
    args[1] = &url;
    args.extend_from_slice(UNLIMITED);
    args.extend_from_slice(extra);
    Gateway::start(&args)
}
