//! An independent QUIC implementation (aioquic, Python) as a client: handshake with ALPN
//! `parley/1`, Hello → Welcome, Send → Ack, and a MessageNew sent by a WebSocket user. The
//! Python side builds and reads frames with code flatc generated from the same chat.fbs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::*;

#[tokio::test]
async fn aioquic_client_interoperates_with_a_websocket_user() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "py", "web", "l").await;
    let mut web = Client::connect(&gw, "web").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quic/aioquic_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", &gw.quic_addr.port().to_string()])
        .arg("--cert")
        .arg(&gw.cert)
        .args(["--token", &token("py"), "--conversation", &conv.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aioquic (scripts/test.sh installs it in target/test-venv)");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let next_line = async |rx: &mut tokio::sync::mpsc::Receiver<String>| {
        tokio::time::timeout(WAIT * 2, rx.recv())
            .await
            .expect("python output in time")
    };
    assert_eq!(next_line(&mut rx).await.as_deref(), Some("READY"));
    // The Python client's message reached the WebSocket user...
    let from_py = web.next_message().await;
    assert_eq!(
        (from_py.sender.as_str(), from_py.content.as_str()),
        ("py", "hello from aioquic")
    );
    // ...and the WebSocket user's message reaches the Python client.
    let ack = web.send_text(conv, "w1", "hello from the browser").await;
    let line = next_line(&mut rx).await.expect("result line");
    let seen: serde_json::Value = serde_json::from_str(&line).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "aioquic client failed: {line}");
    assert_eq!(seen["welcome_user"], "py");
    assert_eq!(seen["alpn"], "parley/1");
    assert_eq!(seen["ack_message_id"], from_py.id.0.to_string());
    assert_eq!(seen["message_new"]["id"], ack.message_id.0.to_string());
    assert_eq!(seen["message_new"]["sender"], "web");
    assert_eq!(seen["message_new"]["content"], "hello from the browser");
}
