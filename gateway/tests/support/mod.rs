//! Test support: a real gateway process, real WebSocket clients (tokio-tungstenite, an
//! independent implementation) and a small HTTP client, all over loopback.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway::auth::mint_hs256;
use gateway::quic::client::QuicConn;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{decode_server, encode_client};
use parley_proto::*;
use parley_types::{ConversationId, Message, MessageId, MessageKind};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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

    /// Starts a gateway on an existing data directory (restart after a crash).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--port", "0", "--bind", "127.0.0.1", "--shards", "2"])
            .arg("--data-dir")
            .arg(dir)
            .args(["--jwt-secret", SECRET, "--log"])
            // PARLEY_TEST_LOG=debug shows the gateway's logs while debugging a test.
            .arg(std::env::var("PARLEY_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gateway binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
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
        let mut fresh = Self::start_in(&self.dir, &args);
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

pub fn token(user: &str) -> String {
    mint_hs256(SECRET.as_bytes(), user, 3600, gateway::clock::wall_ms())
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The connection under a [`Client`]: a WebSocket, or a QUIC connection's session stream.
enum Link {
    Ws(Box<Ws>),
    Quic(Box<QuicLink>),
}

struct QuicLink {
    conn: gateway::quic::client::QuicConn,
    endpoint: quinn::Endpoint,
}

/// What came from the server.
enum Event {
    Frame(Bytes),
    /// A QUIC datagram (typing indicators).
    Datagram(Bytes),
    /// The connection ended, with its close code (WebSocket close / QUIC application code).
    Closed(Option<u16>),
}

/// A protocol client over a real WebSocket or a real QUIC connection.
pub struct Client {
    link: Link,
    seq: u32,
    pub user: String,
    pub welcome: Option<Welcome>,
    backlog: VecDeque<ServerFrame>,
    /// Typing indicators that arrived as QUIC datagrams.
    pub datagrams: usize,
}

/// How a connection ended.
#[derive(Debug)]
pub struct Closed {
    /// The fatal Error frame before the close, if any.
    pub error: Option<u16>,
    /// The close code (None: the connection just ended).
    pub code: Option<u16>,
}

pub async fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("websocket connect");
    ws
}

/// A QUIC client configuration trusting the gateway's certificate (share it between
/// connections to keep session tickets for 0-RTT).
pub fn quic_config(gw: &Gateway) -> quinn::ClientConfig {
    let certs = gateway::quic::client::load_certs(&gw.cert).unwrap();
    gateway::quic::client::client_config(&certs).unwrap()
}

fn hello(user: &str, resume: Vec<ResumePoint>) -> ClientBody {
    ClientBody::Hello(Hello {
        token: token(user),
        protocol_major: 1,
        protocol_minor: 0,
        resume,
        client_name: Some("test".into()),
    })
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
        let endpoint = gateway::quic::client::endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = gateway::quic::client::connect(&endpoint, config, addr, "localhost", zero_rtt)
            .await
            .expect("quic connect");
        Self::with_link(Link::Quic(Box::new(QuicLink { conn, endpoint })), user)
    }

    /// A connected WebSocket client that has not sent Hello.
    pub async fn unauthenticated(addr: SocketAddr, user: &str) -> Self {
        Self::with_link(Link::Ws(Box::new(ws_connect(addr, "/ws").await)), user)
    }

    fn with_link(link: Link, user: &str) -> Self {
        Self {
            link,
            seq: 0,
            user: user.into(),
            welcome: None,
            backlog: VecDeque::new(),
            datagrams: 0,
        }
    }

    /// Sends Hello and waits for Welcome.
    pub async fn hello(&mut self, resume: Vec<ResumePoint>) {
        let seq = self.send(hello(&self.user.clone(), resume)).await;
        let f = self.next().await;
        assert_eq!(f.seq, seq);
        match f.body {
            ServerBody::Welcome(w) => self.welcome = Some(w),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Whether this QUIC client's connection used 0-RTT.
    pub fn used_0rtt(&self) -> bool {
        matches!(&self.link, Link::Quic(q) if q.conn.zero_rtt)
    }

    /// The QUIC connection (panics on WebSocket clients).
    pub fn quic_connection(&self) -> &quinn::Connection {
        match &self.link {
            Link::Quic(q) => &q.conn.connection,
            Link::Ws(_) => panic!("not a QUIC client"),
        }
    }

    /// Moves this QUIC client to a new local UDP port (a network change, as Wi-Fi → cellular).
    pub fn rebind(&self) {
        match &self.link {
            Link::Quic(q) => q
                .endpoint
                .rebind(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
                .unwrap(),
            Link::Ws(_) => panic!("not a QUIC client"),
        }
    }

    /// Sends a frame; returns its seq.
    pub async fn send(&mut self, body: ClientBody) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        let bytes = encode_client(&ClientFrame { seq, body });
        self.send_bytes(bytes).await;
        seq
    }

    /// Sends raw bytes as one frame (WebSocket binary message / QUIC length-prefixed frame).
    pub async fn send_bytes(&mut self, bytes: Bytes) {
        match &mut self.link {
            Link::Ws(ws) => ws.send(WsMessage::Binary(bytes)).await.unwrap(),
            Link::Quic(q) => q.conn.send.write_frame(&bytes).await.unwrap(),
        }
    }

    /// Sends raw bytes on the QUIC stream, without a length prefix.
    pub async fn send_stream_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Quic(q) => q.conn.send.send.write_all(bytes).await.unwrap(),
            Link::Ws(_) => panic!("not a QUIC client"),
        }
    }

    /// Sends a frame as a QUIC datagram.
    pub fn send_datagram(&mut self, body: ClientBody) {
        self.seq += 1;
        let bytes = encode_client(&ClientFrame {
            seq: self.seq,
            body,
        });
        self.quic_connection().send_datagram(bytes).unwrap();
    }

    pub async fn send_raw(&mut self, msg: WsMessage) {
        match &mut self.link {
            Link::Ws(ws) => ws.send(msg).await.unwrap(),
            Link::Quic(_) => panic!("not a WebSocket client"),
        }
    }

    async fn event(&mut self) -> Event {
        match &mut self.link {
            Link::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Binary(b))) => return Event::Frame(b),
                    Some(Ok(WsMessage::Close(frame))) => {
                        return Event::Closed(frame.map(|f| u16::from(f.code)));
                    }
                    None | Some(Err(_)) => return Event::Closed(None),
                    Some(Ok(_)) => continue,
                }
            },
            Link::Quic(q) => {
                let QuicConn {
                    connection, recv, ..
                } = &mut q.conn;
                tokio::select! {
                    f = recv.read_frame() => match f {
                        Ok(Some(b)) => Event::Frame(b),
                        _ => {
                            // The server finishes the stream, then closes the connection with
                            // the session's close code: wait for that code.
                            let _ = tokio::time::timeout(WAIT, connection.closed()).await;
                            Event::Closed(quic_close_code(connection))
                        }
                    },
                    d = connection.read_datagram() => match d {
                        Ok(b) => Event::Datagram(b),
                        Err(_) => Event::Closed(quic_close_code(connection)),
                    },
                }
            }
        }
    }

    /// The next frame (backlog first).
    pub async fn next(&mut self) -> ServerFrame {
        if let Some(f) = self.backlog.pop_front() {
            return f;
        }
        self.read().await.expect("connection open")
    }

    /// Reads one frame (stream or datagram); None if the connection closed.
    async fn read(&mut self) -> Option<ServerFrame> {
        let event = tokio::time::timeout(WAIT, self.event())
            .await
            .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.user));
        match event {
            Event::Frame(b) => {
                Some(decode_server(&b, &DecodeLimits::server()).expect("valid frame"))
            }
            Event::Datagram(b) => {
                self.datagrams += 1;
                Some(decode_server(&b, &DecodeLimits::server()).expect("valid datagram"))
            }
            Event::Closed(_) => None,
        }
    }

    /// The next frame matching `pred`; others stay in the backlog, in order.
    pub async fn next_where(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let f = self.read().await.expect("connection open");
            if pred(&f) {
                return f;
            }
            self.backlog.push_back(f);
        }
    }

    /// Like `next_where`, but None when the connection ends (a reconnecting client).
    pub async fn next_where_or_closed(
        &mut self,
        pred: impl Fn(&ServerFrame) -> bool,
    ) -> Option<ServerFrame> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        loop {
            let f = self.read().await?;
            if pred(&f) {
                return Some(f);
            }
            self.backlog.push_back(f);
        }
    }

    /// Sends and waits for the answer with the same seq.
    pub async fn request(&mut self, body: ClientBody) -> ServerFrame {
        let seq = self.send(body).await;
        self.next_where(|f| f.seq == seq).await
    }

    /// Sends a text message and returns its Ack.
    pub async fn send_text(
        &mut self,
        conv: ConversationId,
        client_msg_id: &str,
        text: &str,
    ) -> Ack {
        match self
            .request(send_text(conv, client_msg_id, text))
            .await
            .body
        {
            ServerBody::Ack(a) => a,
            other => panic!("{}: send failed: {other:?}", self.user),
        }
    }

    /// The next MessageNew (other frames stay in the backlog).
    pub async fn next_message(&mut self) -> Message {
        match self
            .next_where(|f| matches!(f.body, ServerBody::MessageNew(_)))
            .await
            .body
        {
            ServerBody::MessageNew(m) => m,
            _ => unreachable!(),
        }
    }

    /// Waits for the connection to end; returns the fatal error code and close code seen.
    pub async fn closed(&mut self) -> Closed {
        let mut error = None;
        for f in self.backlog.drain(..) {
            if let ServerBody::Error {
                code, fatal: true, ..
            } = f.body
            {
                error = Some(code);
            }
        }
        loop {
            let event = tokio::time::timeout(WAIT, self.event())
                .await
                .unwrap_or_else(|_| panic!("{}: connection not closed within {WAIT:?}", self.user));
            match event {
                Event::Frame(b) | Event::Datagram(b) => {
                    if let Ok(ServerFrame {
                        body:
                            ServerBody::Error {
                                code, fatal: true, ..
                            },
                        ..
                    }) = decode_server(&b, &DecodeLimits::server())
                    {
                        error = Some(code);
                    }
                }
                Event::Closed(code) => return Closed { error, code },
            }
        }
    }

    /// Asserts nothing matching `pred` arrives within `d` (other frames are kept).
    pub async fn expect_none(&mut self, d: Duration, pred: impl Fn(&ServerFrame) -> bool) {
        assert!(
            !self.backlog.iter().any(&pred),
            "{}: unexpected {:?}",
            self.user,
            self.backlog
        );
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.event()).await {
                Err(_) => return,
                Ok(Event::Frame(b) | Event::Datagram(b)) => {
                    let f = decode_server(&b, &DecodeLimits::server()).unwrap();
                    assert!(!pred(&f), "{}: unexpected {f:?}", self.user);
                    self.backlog.push_back(f);
                }
                Ok(Event::Closed(_)) => return,
            }
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) {
        match &mut self.link {
            Link::Ws(ws) => {
                let _ = WebSocketStream::close(ws.as_mut(), None).await;
                // Drain until the server's close arrives.
                let _ =
                    tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
            }
            Link::Quic(q) => {
                let _ = q.conn.send.send.finish();
                let _ = tokio::time::timeout(WAIT, q.conn.connection.closed()).await;
            }
        }
    }
}

/// The application close code of a closed QUIC connection.
fn quic_close_code(c: &quinn::Connection) -> Option<u16> {
    match c.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(a)) => {
            u16::try_from(a.error_code.into_inner()).ok()
        }
        _ => None,
    }
}

pub fn send_text(conversation: ConversationId, client_msg_id: &str, text: &str) -> ClientBody {
    ClientBody::Send(SendMessage {
        conversation,
        client_msg_id: client_msg_id.into(),
        kind: MessageKind::Text,
        content: text.into(),
        media: None,
    })
}

pub fn error_code(f: &ServerFrame) -> Option<u16> {
    match f.body {
        ServerBody::Error { code, .. } => Some(code),
        _ => None,
    }
}

pub fn is_message(f: &ServerFrame) -> bool {
    matches!(f.body, ServerBody::MessageNew(_))
}

/// One HTTP request; returns status, JSON body (Null when empty) and headers.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value, hyper::HeaderMap) {
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
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("http response in time")
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, json, headers)
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

pub fn resume_point(conversation: ConversationId, last: MessageId) -> ResumePoint {
    ResumePoint {
        conversation,
        last_message_id: last,
    }
}

/// A redis-server process of a test's own (so a test may stop and restart it), persisting to
/// an append-only file in a temp dir so a restart keeps the streams.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start() -> Self {
        let port = free_port();
        let mut s = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port and directory; waits until it answers.
    pub fn restart(&mut self) {
        let bin = std::env::var("PARLEY_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin} not found ({e}): scripts/test.sh installs redis-server")
            });
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// SIGTERM (a clean stop: the append-only file is flushed).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The CQL server the test run started (`scripts/test.sh`), as host:port.
pub fn cassandra() -> String {
    std::env::var("PARLEY_CASSANDRA").unwrap_or_else(|_| {
        panic!("PARLEY_CASSANDRA is not set: run scripts/test.sh (it starts Cassandra)")
    })
}

/// A fresh keyspace name for one test.
pub fn keyspace() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}
