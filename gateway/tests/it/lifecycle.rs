//! The binary's command line, graceful shutdown and the generated development secret.

use std::process::Command;
use std::time::Duration;

use crate::support::*;
use parley_proto::*;

fn gateway_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn check_config_accepts_valid_and_lists_every_problem() {
    let ok = gateway_cmd()
        .args(["--check-config", "--port", "4000"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration OK"));
    let bad = gateway_cmd()
        .args([
            "--check-config",
            "--node-id",
            "9999",
            "--max-frame-bytes",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--node-id") && err.contains("--max-frame-bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn token_command_mints_tokens_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    // No secret configured anywhere: `token` generates the development secret...
    let out = gateway_cmd()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["token", "alice", "--ttl", "10m"])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(dir.path().join("dev-jwt-secret").exists());
    // ...and a server started on that data directory without a secret accepts it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--port", "0", "--bind", "127.0.0.1", "--log", "warn"])
        .env_remove("JWT_SECRET")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: std::net::SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    // Nobody reads the gateway's stdout any more: that must not stop it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the gateway is running"
    );
    let (status, _, _) = http(addr, "GET", "/api/conversations", Some(&token), None, &[]).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sigterm_tells_clients_to_reconnect_and_exits_cleanly() {
    let mut gw = Gateway::start(&["--shutdown-grace-ms", "2000"]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let ack = alice
        .send_text(conv, "before", "stored before shutdown")
        .await;
    assert_eq!(bob.next_message().await.id, ack.message_id);
    let status = tokio::task::spawn_blocking(move || {
        let status = gw.terminate();
        (status, gw)
    });
    let goaway = bob
        .next_where(|f| matches!(f.body, ServerBody::Goaway { .. }))
        .await;
    assert!(matches!(goaway.body, ServerBody::Goaway { .. }));
    let closed = bob.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1700), Some(1012)));
    let (status, mut gw) = status.await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    // The data is there after a clean stop too.
    gw.restart();
    let mut bob = Client::connect_resume(
        &gw,
        "bob",
        vec![resume_point(conv, parley_types::Position::default())],
    )
    .await;
    assert_eq!(bob.next_message().await.id, ack.message_id);
}

/// One sender that keeps 8 Sends in flight until Goaway, then collects the answers.
/// Returns how many Sends it made, how many were acked, and how the connection ended.
async fn send_until_goaway(
    mut c: Client,
    conv: parley_types::ConversationId,
) -> (usize, usize, Closed) {
    use std::collections::HashSet;
    let mut open = HashSet::new();
    let (mut sent, mut acked, mut n) = (0, 0, 0u32);
    let mut goaway = false;
    let answer = |f: &ServerFrame| {
        matches!(
            f.body,
            ServerBody::Ack(_) | ServerBody::Goaway { .. } | ServerBody::Error { fatal: false, .. }
        )
    };
    loop {
        if !goaway && open.len() < 8 {
            n += 1;
            open.insert(c.send(send_text(conv, &n.to_string(), "in flight")).await);
            sent += 1;
            continue;
        }
        if goaway && open.is_empty() {
            break;
        }
        let f = c.next_where(answer).await;
        match f.body {
            ServerBody::Goaway { .. } => goaway = true,
            ServerBody::Ack(_) => {
                assert!(open.remove(&f.seq), "an answer to a request: {f:?}");
                acked += 1;
            }
            ServerBody::Error { code, .. } => {
                assert_eq!(code, 1700, "{f:?}");
                assert!(open.remove(&f.seq), "an error by the request's seq: {f:?}");
            }
            _ => unreachable!(),
        }
    }
    (sent, acked, c.closed().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readiness_first_and_answers_every_request() {
    let mut args = UNLIMITED.to_vec();
    args.extend([
        "--shutdown-ready-delay-ms",
        "1500",
        "--shutdown-drain-ms",
        "1000",
        "--shutdown-grace-ms",
        "3000",
    ]);
    let mut gw = Gateway::start(&args);
    let addr = gw.addr;
    let mut senders = Vec::new();
    for i in 0..5 {
        let user = format!("seller{i}");
        let conv = direct(&gw, &user, "buyer", "l").await;
        let c = Client::connect(&gw, &user).await;
        senders.push(tokio::spawn(send_until_goaway(c, conv)));
    }
    let mut canary = Client::connect(&gw, "canary").await;
    let pid = gw.pid();
    let stopped = tokio::task::spawn_blocking(move || {
        let status = gw.terminate();
        (status, gw)
    });
    // Readiness goes first, while the node still serves.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, _, _) = http(addr, "GET", "/readyz", None, None, &[]).await;
        if s == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never said 503 (pid {pid})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = canary.request(ClientBody::Ping { nonce: 5 }).await;
    assert!(matches!(r.body, ServerBody::Pong { nonce: 5, .. }), "{r:?}");
    for s in senders {
        let (sent, acked, closed) = s.await.unwrap();
        assert!(acked > 0 && sent >= acked, "{sent} sent, {acked} acked");
        assert_eq!((closed.error, closed.code), (Some(1700), Some(1012)));
    }
    let (status, _gw) = stopped.await.unwrap();
    assert!(status.success(), "exit status {status:?}");
}
