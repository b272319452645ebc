//! The binary's command line, graceful shutdown and the generated development secret.

use std::process::Command;

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
