//! The probes of the hardening issue, against the real binary: what one client — with a token
//! or without — could once do to a node (stop its writes, hold its connections, pin its
//! memory, make it replay without end, outlive its token). Each probe is bounded in time, and
//! each checks that a normal client is still served while (or right after) it runs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use parley_client::Via;
use parley_client::token::mint_hs256;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{decode_server, encode_client};
use parley_proto::*;
use parley_types::Position;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

/// A normal client gets its answer while, or right after, the abuse ran.
async fn still_serving(gw: &Gateway) {
    let mut c = Client::connect(gw, "canary").await;
    let r = tokio::time::timeout(WAIT, c.request(ClientBody::Ping { nonce: 7 }))
        .await
        .expect("the node answers a normal client in time");
    assert!(matches!(r.body, ServerBody::Pong { nonce: 7, .. }));
}

/// A Hello of the current protocol with `token`.
fn hello(token: String, resume: Vec<ResumePoint>) -> ClientBody {
    ClientBody::Hello(Hello {
        token,
        protocol_major: 1,
        protocol_minor: 2,
        resume,
        client_name: None,
    })
}

fn code(json: &serde_json::Value) -> String {
    json["error"]["code"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn oversized_and_invisible_ids_are_refused_and_writes_go_on() {
    let gw = Gateway::start(&[]);
    // The original probe: a 65 522-byte id under a user id of 10+ bytes stopped the writer.
    let user = "abuser-0123456789";
    let huge = "a".repeat(65_522);
    let (s, j, _) = delete(&gw, user, &format!("/api/blocks/{huge}")).await;
    assert_eq!((s, code(&j)), (400, "invalid".into()), "{j}");
    let body = serde_json::json!({ "userId": "b".repeat(129) }).to_string();
    let (s, j, _) = post(&gw, user, "/api/blocks", &body).await;
    assert_eq!((s, code(&j)), (400, "invalid".into()), "{j}");
    for seller in ["bob\u{202E}gpj", "zero\u{200B}width", "   ", "tab\there"] {
        let body = serde_json::json!({ "sellerId": seller, "listingId": "l" }).to_string();
        let (s, j, _) = post(&gw, user, "/api/conversations", &body).await;
        assert_eq!((s, code(&j)), (400, "invalid".into()), "{seller:?}: {j}");
    }
    let body = serde_json::json!({ "sellerId": "bob", "listingId": "l".repeat(257) }).to_string();
    let (s, j, _) = post(&gw, user, "/api/conversations", &body).await;
    assert_eq!((s, code(&j)), (400, "invalid".into()), "{j}");
    // A token whose subject is not a valid user id opens no session.
    let mut c = Client::unauthenticated(gw.addr, "x").await;
    let invisible = mint_hs256(SECRET.as_bytes(), "ali\u{200B}ce", 60, wall_ms());
    c.send(hello(invisible, vec![])).await;
    assert_eq!(c.closed().await.error, Some(1100));
    // A client_msg_id over 64 bytes is an error to that Send only.
    let conv = direct(&gw, user, "bob", "l").await;
    let mut c = Client::connect(&gw, user).await;
    let r = c.request(send_text(conv, &"k".repeat(65), "hi")).await;
    assert_eq!(error_code(&r), Some(1300), "{r:?}");
    // The node is healthy and writes for everyone.
    let (s, _, _) = http(gw.addr, "GET", "/healthz", None, None, &[]).await;
    assert_eq!(s, 200);
    c.send_text(conv, "ok", "still writing").await;
    let (s, j, _) = post(
        &gw,
        "bob",
        &format!("/api/conversations/{conv}/messages"),
        r#"{"content":"and over REST","clientMsgId":"r1"}"#,
    )
    .await;
    assert_eq!(s, 201, "{j}");
    still_serving(&gw).await;
}

#[tokio::test]
async fn unblocking_an_id_that_needs_percent_encoding_lifts_the_block() {
    let gw = Gateway::start(&[]);
    let blocked = "bob/ü shop";
    let conv = direct(&gw, blocked, "alice", "l").await;
    let body = serde_json::json!({ "userId": blocked }).to_string();
    let (s, j, _) = post(&gw, "alice", "/api/blocks", &body).await;
    assert_eq!(s, 204, "{j}");
    let path = format!("/api/conversations/{conv}/messages");
    let (s, j, _) = post(&gw, blocked, &path, r#"{"content":"hi","clientMsgId":"1"}"#).await;
    assert_eq!((s, code(&j)), (403, "blocked".into()), "{j}");
    // A malformed escape is an error, not a silent no-op.
    let (s, j, _) = delete(&gw, "alice", "/api/blocks/bob%2").await;
    assert_eq!((s, code(&j)), (400, "invalid".into()), "{j}");
    let (s, j, _) = delete(&gw, "alice", "/api/blocks/bob%2+").await;
    assert_eq!((s, code(&j)), (400, "invalid".into()), "{j}");
    let (s, j, _) = delete(&gw, "alice", "/api/blocks/bob%2F%C3%BC%20shop").await;
    assert_eq!(s, 204, "{j}");
    let (s, j, _) = post(&gw, blocked, &path, r#"{"content":"hi","clientMsgId":"2"}"#).await;
    assert_eq!(s, 201, "the block is gone: {j}");
}

/// Writes pipelined requests and never reads, until the node cuts the connection off.
async fn pipeline_without_reading(addr: SocketAddr) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut s = socket.connect(addr).await?;
    let chunk = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".repeat(512);
    loop {
        s.write_all(&chunk).await?;
    }
}

#[tokio::test]
async fn pipelined_requests_whose_answers_are_never_read_are_cut_off() {
    let gw = Gateway::start(&["--write-timeout-ms", "1000"]);
    let abusers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(pipeline_without_reading(gw.addr)))
        .collect();
    still_serving(&gw).await;
    for a in abusers {
        let ended = tokio::time::timeout(Duration::from_secs(30), a)
            .await
            .expect("the node cut the non-reading connection off")
            .unwrap();
        assert!(ended.is_err(), "the connection ended with an error");
    }
    still_serving(&gw).await;
}

#[tokio::test]
async fn slow_headers_slow_bodies_idle_keep_alives_and_huge_lengths_are_refused() {
    let gw = Gateway::start(&[
        "--http-header-timeout-ms",
        "500",
        "--http-body-timeout-ms",
        "1000",
        "--http-idle-timeout-ms",
        "500",
    ]);
    let read_all = |mut s: TcpStream| async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
            .await
            .expect("the node closed the connection in time");
        String::from_utf8_lossy(&out).into_owned()
    };
    // Headers that never finish.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let answer = read_all(s).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    // A body trickling a byte at a time is answered (and the connection closed) once its
    // time is up, while the client is still sending.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /api/conversations HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n",
        token("alice")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        while w.write_all(b"1\r\n \r\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut out))
        .await
        .expect("the trickling body was cut off in time")
        .ok();
    trickle.abort();
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");

    // A keep-alive connection left idle is closed.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A Content-Length past the limit is refused before any body is sent.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /api/conversations HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
        token("alice")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_all(s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    still_serving(&gw).await;
}

async fn ws_from(gw: &Gateway, source: &str, user: &str) -> Result<parley_client::Client, String> {
    let via = Via::WebSocket {
        target: gw.addr,
        source: Some(source.parse::<IpAddr>().unwrap()),
    };
    connect_via(&via, user).await
}

async fn quic_from(
    gw: &Gateway,
    source: &str,
    user: &str,
) -> Result<parley_client::Client, String> {
    let bind = SocketAddr::new(source.parse().unwrap(), 0);
    let via = Via::Quic {
        target: gw.quic_addr,
        endpoint: parley_client::quic::endpoint(bind).map_err(|e| e.to_string())?,
        config: quic_config(gw),
        zero_rtt: false,
    };
    connect_via(&via, user).await
}

async fn connect_via(via: &Via, user: &str) -> Result<parley_client::Client, String> {
    tokio::time::timeout(
        WAIT,
        parley_client::Client::connect(via, &token(user), vec![]),
    )
    .await
    .map_err(|_| "no answer in time".to_owned())?
    .map_err(|e| e.to_string())
}

/// Connects (with `connect`) until a place is free again, within [`WAIT`].
async fn once_admitted<F, Fut>(connect: F) -> parley_client::Client
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<parley_client::Client, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(c) = connect().await {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_are_capped_per_address_and_per_node() {
    let gw = Gateway::start(&["--max-connections", "4", "--max-connections-per-ip", "2"]);
    let mut a1 = ws_from(&gw, "127.0.0.1", "a").await.unwrap();
    let a2 = ws_from(&gw, "127.0.0.1", "a").await.unwrap();
    assert!(
        ws_from(&gw, "127.0.0.1", "a").await.is_err(),
        "3rd from one address"
    );
    let b1 = ws_from(&gw, "127.0.0.2", "b").await.unwrap();
    let b2 = ws_from(&gw, "127.0.0.2", "b").await.unwrap();
    assert!(
        ws_from(&gw, "127.0.0.3", "c").await.is_err(),
        "5th on the node"
    );
    // Those admitted are served.
    let r = a1.request(ClientBody::Ping { nonce: 1 }).await.unwrap();
    assert!(matches!(r.body, ServerBody::Pong { .. }));
    // A closed connection gives its place back.
    a1.close().await;
    let a3 = once_admitted(|| ws_from(&gw, "127.0.0.3", "c")).await;
    for c in [a2, b1, b2, a3] {
        c.close().await;
    }
    let m = metrics(gw.addr).await;
    assert!(metric_value(&m, "parley_connections_refused_total{limit=\"address\"}") >= 1.0);
    assert!(metric_value(&m, "parley_connections_refused_total{limit=\"node\"}") >= 1.0);
}

/// QUIC connections are admitted (or refused) when they arrive, before any handshake work,
/// under the same caps as TCP: one count per node and per address for both.
#[tokio::test]
async fn quic_connections_share_the_caps_with_websockets() {
    let gw = Gateway::start(&["--max-connections", "3", "--max-connections-per-ip", "2"]);
    let mut q1 = quic_from(&gw, "127.0.0.1", "a").await.unwrap();
    let q2 = quic_from(&gw, "127.0.0.1", "a").await.unwrap();
    let third = quic_from(&gw, "127.0.0.1", "a").await;
    assert!(third.is_err(), "3rd from one address");
    let w = ws_from(&gw, "127.0.0.2", "b").await.unwrap();
    assert!(
        quic_from(&gw, "127.0.0.3", "c").await.is_err(),
        "4th on the node (two QUIC, one WebSocket)"
    );
    let r = q1.request(ClientBody::Ping { nonce: 1 }).await.unwrap();
    assert!(matches!(r.body, ServerBody::Pong { .. }));
    // A closed QUIC connection gives its place back.
    q1.close().await;
    let q3 = once_admitted(|| quic_from(&gw, "127.0.0.3", "c")).await;
    for c in [q2, w, q3] {
        c.close().await;
    }
    let m = metrics(gw.addr).await;
    assert!(metric_value(&m, "parley_connections_refused_total{limit=\"address\"}") >= 1.0);
    assert!(metric_value(&m, "parley_connections_refused_total{limit=\"node\"}") >= 1.0);
}

#[tokio::test]
async fn sessions_per_user_are_capped() {
    let gw = Gateway::start(&["--max-sessions-per-user", "3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(&gw, "alice").await);
    }
    let mut c = Client::unauthenticated(gw.addr, "alice").await;
    c.send(hello(token("alice"), vec![])).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1402), Some(4402)));
    // Other users are not affected, and a closed session frees its place.
    still_serving(&gw).await;
    held.pop().unwrap().close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Client::unauthenticated(gw.addr, "alice").await;
        c.send(hello(token("alice"), vec![])).await;
        let f = c.next_where_or_closed(|_| true).await;
        if matches!(
            f,
            Some(ServerFrame {
                body: ServerBody::Welcome(_),
                ..
            })
        ) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_hello_with_a_thousand_copies_of_one_point_replays_once_and_a_hello_has_a_budget() {
    let gw = Gateway::start(&{
        let mut a = UNLIMITED.to_vec();
        a.extend(["--resume-max-total-messages", "250"]);
        a
    });
    let convs = [
        direct(&gw, "alice", "bob", "l1").await,
        direct(&gw, "alice", "bob", "l2").await,
        direct(&gw, "alice", "bob", "l3").await,
    ];
    let mut bob = Client::connect(&gw, "bob").await;
    for (i, conv) in convs.iter().enumerate() {
        for n in 0..100 {
            bob.send_text(*conv, &format!("{i}-{n}"), "x").await;
        }
    }
    // 1 000 copies of one point: one replay of 100.
    let point = resume_point(convs[0], Position::default());
    let mut alice = Client::connect_resume(&gw, "alice", vec![point; 1000]).await;
    let mut replayed = 0;
    let resumed = loop {
        let f = alice.next().await;
        match f.body {
            ServerBody::MessageNew(_) => replayed += 1,
            ServerBody::Resumed { .. } => break f.body,
            _ => {}
        }
    };
    assert_eq!(replayed, 100);
    assert!(matches!(
        resumed,
        ServerBody::Resumed {
            replayed: 100,
            complete: true,
            ..
        }
    ));
    // Nothing else is replayed: the next answer comes with no message before it.
    let seq = alice.send(ClientBody::Ping { nonce: 3 }).await;
    loop {
        let f = alice.next().await;
        assert!(!matches!(f.body, ServerBody::MessageNew(_)), "{f:?}");
        assert!(!matches!(f.body, ServerBody::Resumed { .. }), "{f:?}");
        if f.seq == seq {
            break;
        }
    }
    // Three points of 100 each under a budget of 250 per Hello.
    let points = convs
        .iter()
        .map(|c| resume_point(*c, Position::default()))
        .collect();
    let mut alice2 = Client::connect_resume(&gw, "alice", points).await;
    let mut total = 0;
    let mut ends = Vec::new();
    while ends.len() < 3 {
        let f = alice2.next().await;
        match f.body {
            ServerBody::MessageNew(_) => total += 1,
            ServerBody::Resumed {
                replayed, complete, ..
            } => ends.push((replayed, complete)),
            _ => {}
        }
    }
    assert_eq!(total, 250);
    assert_eq!(ends, vec![(100, true), (100, true), (50, false)]);
    still_serving(&gw).await;
}

#[tokio::test]
async fn a_session_ends_when_its_token_expires_unless_it_is_refreshed() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    // exp is whole seconds: this token ends 2 to 3 s from now.
    let short = || mint_hs256(SECRET.as_bytes(), "alice", 3, wall_ms());
    let mut c = Client::unauthenticated(gw.addr, "alice").await;
    let welcome = c.hello_with_token(short()).await;
    assert!(welcome.token_expires_ms > wall_ms(), "{welcome:?}");
    c.send_text(conv, "before", "sent while valid").await;
    let closed = tokio::time::timeout(WAIT, c.closed())
        .await
        .expect("closed at expiry");
    assert_eq!((closed.error, closed.code), (Some(1101), Some(4101)));

    // Refreshed in time, the session lives on past the first token's expiry.
    let mut c = Client::unauthenticated(gw.addr, "alice").await;
    let first = c.hello_with_token(short()).await.token_expires_ms;
    let r = c
        .request(ClientBody::Refresh {
            token: mint_hs256(SECRET.as_bytes(), "bob", 3600, wall_ms()),
        })
        .await;
    assert_eq!(error_code(&r), Some(1201), "another user's token: {r:?}");
    let r = c
        .request(ClientBody::Refresh {
            token: token("alice"),
        })
        .await;
    let ServerBody::Ack(ack) = r.body else {
        panic!("{r:?}")
    };
    assert!(
        ack.created_at_ms > first + 60_000,
        "the new expiry: {ack:?}"
    );
    // Past the first expiry: still here, still sending.
    while wall_ms() < first + 500 {
        let r = c.request(ClientBody::Ping { nonce: 1 }).await;
        assert!(matches!(r.body, ServerBody::Pong { .. }));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.send_text(conv, "after", "sent after the first expiry")
        .await;
}

/// A WebSocket session that says Hello, reads its Welcome and never reads again, on a socket
/// with a small receive buffer (so what it does not read stays in the node, not the kernel).
async fn silent_session(addr: SocketAddr, user: &str, resume: Vec<ResumePoint>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    let hello = encode_client(&ClientFrame {
        seq: 1,
        body: hello(token(user), resume),
    });
    s.write_all(&masked_binary(&hello)).await.unwrap();
    // Until Welcome, or until the node sheds the session (its queue, Welcome and all, is
    // dropped then: a fatal error and a close frame come instead).
    loop {
        let (opcode, payload) = read_ws_frame(&mut s).await;
        if opcode == 0x8 {
            return s;
        }
        match decode_server(&payload, &DecodeLimits::server())
            .unwrap()
            .body
        {
            ServerBody::Welcome(_) | ServerBody::Error { fatal: true, .. } => return s,
            _ => {}
        }
    }
}

fn masked_binary(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend((n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend((n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    f.extend(mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// One unmasked server frame: its opcode and payload.
async fn read_ws_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.unwrap();
    let len = match h[1] & 0x7f {
        126 => u64::from(s.read_u16().await.unwrap()),
        127 => s.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    s.read_exact(&mut payload).await.unwrap();
    (h[0] & 0x0f, payload)
}

/// Resident and peak resident memory of a process, bytes.
fn rss_and_peak(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_that_never_read_stay_within_the_node_budget() {
    const SESSIONS: usize = 1000;
    const BUDGET: u64 = 16 << 20;
    let budget = BUDGET.to_string();
    let mut args = UNLIMITED.to_vec();
    args.extend([
        "--outbox-node-bytes",
        &budget,
        "--max-sessions-per-user",
        "2000",
        // What the kernel holds for each: little, so the node's own queues are what is tested.
        "--socket-send-buffer-bytes",
        "16384",
    ]);
    let gw = Gateway::start(&args);
    let conv = direct(&gw, "seller", "sink", "l").await;
    // 400 messages of 3 000 bytes: every session that resumes from the start is sent its own
    // 1.2 MB (replayed frames are encoded per session), 1.2 GB for all of them.
    let text = "x".repeat(3000);
    let mut seller = Client::connect(&gw, "seller").await;
    for i in 0..400 {
        seller.send_text(conv, &i.to_string(), &text).await;
    }
    let (baseline, _) = rss_and_peak(gw.pid());
    let from_start = vec![resume_point(conv, Position::default())];
    let mut silent = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        silent.push(silent_session(gw.addr, "sink", from_start.clone()).await);
    }
    // Every replay ends: complete (queued whole) or shed for the budget.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (shed, replayed) = loop {
        let m = metrics(gw.addr).await;
        let shed = metric_value(&m, "parley_outbox_shed_total");
        let replayed = metric_value(&m, "parley_frames_out_total{type=\"resumed\"}");
        if shed + replayed >= SESSIONS as f64 {
            break (shed, replayed);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replays still running: {shed} shed, {replayed} complete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    still_serving(&gw).await;
    let (_, peak) = rss_and_peak(gw.pid());
    // The bound: the budget, plus what each session may hold past it before it is shed
    // (64 KiB queued, a 64 KiB write batch), plus 64 MiB for the allocator's slack.
    let bound = BUDGET + SESSIONS as u64 * (128 << 10) + (64 << 20);
    eprintln!(
        "rss baseline {} MiB, peak {} MiB (+{} MiB, bound +{} MiB), shed {shed}, complete {replayed}",
        baseline >> 20,
        peak >> 20,
        (peak - baseline) >> 20,
        bound >> 20
    );
    assert!(shed >= 1.0, "slow consumers were shed");
    assert!(
        peak - baseline < bound,
        "peak RSS grew by {} MiB, over the bound of {} MiB",
        (peak - baseline) >> 20,
        bound >> 20
    );
    drop(silent);
}

#[tokio::test]
async fn a_wildcard_origin_never_comes_with_credentials_and_a_429_says_when_to_retry() {
    let mut args = vec!["--client-url", "*"];
    args.extend(["--user-messages-per-sec", "1", "--user-message-burst", "1"]);
    let gw = Gateway::start(&args);
    let t = token("alice");
    let origin = [("origin", "https://evil.example")];
    let (_, _, h) = http(
        gw.addr,
        "GET",
        "/api/conversations",
        Some(&t),
        None,
        &origin,
    )
    .await;
    assert_eq!(h.get("access-control-allow-origin").unwrap(), "*");
    assert!(h.get("access-control-allow-credentials").is_none(), "{h:?}");
    let conv = direct(&gw, "alice", "bob", "l").await;
    let path = format!("/api/conversations/{conv}/messages");
    let mut limited = None;
    for i in 0..5 {
        let body = format!(r#"{{"content":"hi","clientMsgId":"{i}"}}"#);
        let (s, _, h) = post(&gw, "alice", &path, &body).await;
        if s == 429 {
            limited = Some(h);
            break;
        }
    }
    let h = limited.expect("the fifth send within a second is limited");
    assert_eq!(h.get("retry-after").unwrap(), "1");
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_configured() {
    let secret = "metrics-token-0123456789";
    let gw = Gateway::start(&["--metrics-token", secret]);
    let (s, j, _) = http(gw.addr, "GET", "/metrics", None, None, &[]).await;
    assert_eq!((s, code(&j)), (401, "auth_failed".into()), "{j}");
    let (s, _, _) = http(
        gw.addr,
        "GET",
        "/metrics",
        Some("metrics-token-0123456788"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 401);
    let (s, body, _) = http(gw.addr, "GET", "/metrics", Some(secret), None, &[]).await;
    assert_eq!(s, 200);
    assert!(
        body.as_str()
            .unwrap()
            .contains("parley_connections_admitted")
    );
}

#[tokio::test]
async fn rest_requests_are_rate_limited_per_user() {
    let gw = Gateway::start(&["--rest-requests-per-sec", "1", "--rest-request-burst", "3"]);
    for _ in 0..3 {
        let (s, j, _) = get(&gw, "alice", "/api/unread").await;
        assert_eq!(s, 200, "{j}");
    }
    let (s, j, h) = get(&gw, "alice", "/api/unread").await;
    assert_eq!((s, code(&j)), (429, "rate_limited".into()), "{j}");
    assert_eq!(h.get("retry-after").unwrap(), "1");
    // Per user: another one is not affected.
    let (s, _, _) = get(&gw, "bob", "/api/unread").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn one_user_can_create_only_so_many_groups() {
    let gw = Gateway::start(&["--groups-per-user-per-hour", "2"]);
    let members = vec!["x".to_owned(), "y".to_owned()];
    group(&gw, "spammer", &members, "one").await;
    group(&gw, "spammer", &members, "two").await;
    let body = serde_json::json!({ "participantIds": members, "title": "three" }).to_string();
    let (s, j, h) = post(&gw, "spammer", "/api/conversations", &body).await;
    assert_eq!((s, code(&j)), (429, "rate_limited".into()), "{j}");
    assert!(h.get("retry-after").is_some());
    // Others still can, and direct conversations are not limited by it.
    group(&gw, "someone", &members, "fine").await;
    direct(&gw, "spammer", "seller", "l").await;
}

#[tokio::test]
async fn a_big_group_lists_100_participants_and_pages_the_rest() {
    let gw = Gateway::start(&[]);
    let members: Vec<String> = (0..250).map(|i| format!("member-{i}")).collect();
    let conv = group(&gw, "host", &members, "big").await;
    let (s, j, _) = get(&gw, "member-7", "/api/conversations").await;
    assert_eq!(s, 200, "{j}");
    let listed = &j["conversations"][0];
    assert_eq!(listed["participantIds"].as_array().unwrap().len(), 100);
    assert_eq!(listed["participantCount"], 251);
    let mut all = Vec::new();
    let mut path = format!("/api/conversations/{conv}/participants");
    loop {
        let (s, j, _) = get(&gw, "member-7", &path).await;
        assert_eq!(s, 200, "{j}");
        for p in j["participantIds"].as_array().unwrap() {
            all.push(p.as_str().unwrap().to_owned());
        }
        match j["nextOffset"].as_u64() {
            Some(next) => path = format!("/api/conversations/{conv}/participants?offset={next}"),
            None => break,
        }
    }
    let mut expected = members.clone();
    expected.push("host".into());
    all.sort();
    expected.sort();
    assert_eq!(all, expected);
    // Only participants may list them.
    let (s, _, _) = get(
        &gw,
        "outsider",
        &format!("/api/conversations/{conv}/participants"),
    )
    .await;
    assert_eq!(s, 403);
}
