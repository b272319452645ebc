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
use gateway::codec::{DecodeLimits, decode_server, encode_client};
use gateway::protocol::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use parley_storage::{ConversationId, Message, MessageId, MessageKind};
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
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("parley gateway listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("gateway did not report its address");
        Self {
            child: Some(child),
            addr,
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

/// A protocol client over a real WebSocket.
pub struct Client {
    ws: Ws,
    seq: u32,
    pub user: String,
    pub welcome: Option<Welcome>,
    backlog: VecDeque<ServerFrame>,
}

/// How a connection ended.
#[derive(Debug)]
pub struct Closed {
    /// The fatal Error frame before the close, if any.
    pub error: Option<u16>,
    /// The WebSocket close code (None: no close frame, the connection just ended).
    pub code: Option<u16>,
}

pub async fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("websocket connect");
    ws
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
        let seq = c
            .send(ClientBody::Hello(Hello {
                token: token(user),
                protocol_major: 1,
                protocol_minor: 0,
                resume,
                client_name: Some("test".into()),
            }))
            .await;
        let f = c.next().await;
        assert_eq!(f.seq, seq);
        match f.body {
            ServerBody::Welcome(w) => c.welcome = Some(w),
            other => panic!("expected Welcome, got {other:?}"),
        }
        c
    }

    /// A connected client that has not sent Hello.
    pub async fn unauthenticated(addr: SocketAddr, user: &str) -> Self {
        Self {
            ws: ws_connect(addr, "/ws").await,
            seq: 0,
            user: user.into(),
            welcome: None,
            backlog: VecDeque::new(),
        }
    }

    /// Sends a frame; returns its seq.
    pub async fn send(&mut self, body: ClientBody) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        let bytes = encode_client(&ClientFrame { seq, body });
        self.ws.send(WsMessage::Binary(bytes)).await.unwrap();
        seq
    }

    pub async fn send_raw(&mut self, msg: WsMessage) {
        self.ws.send(msg).await.unwrap();
    }

    /// The next frame (backlog first).
    pub async fn next(&mut self) -> ServerFrame {
        if let Some(f) = self.backlog.pop_front() {
            return f;
        }
        self.read().await.expect("connection open")
    }

    /// Reads one frame from the socket; None if the connection closed.
    async fn read(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.user));
            match msg {
                Some(Ok(WsMessage::Binary(b))) => {
                    return Some(decode_server(&b, &DecodeLimits::server()).expect("valid frame"));
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
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
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: connection not closed within {WAIT:?}", self.user));
            match msg {
                Some(Ok(WsMessage::Binary(b))) => {
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
                Some(Ok(WsMessage::Close(frame))) => {
                    return Closed {
                        error,
                        code: frame.map(|f| u16::from(f.code)),
                    };
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Closed { error, code: None },
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
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(WsMessage::Binary(b)))) => {
                    let f = decode_server(&b, &DecodeLimits::server()).unwrap();
                    assert!(!pred(&f), "{}: unexpected {f:?}", self.user);
                    self.backlog.push_back(f);
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => return,
            }
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close arrives.
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
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
