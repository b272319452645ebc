//! A minimal terminal chat client: `cargo run -p gateway --example chat -- --help`.
//!
//! Connects to `/ws`, authenticates with a token, prints what arrives (messages, typing, read
//! receipts, presence) and sends each line typed on stdin to the conversation.
#![allow(clippy::unwrap_used)]

use std::io::BufRead;

use futures_util::{SinkExt, StreamExt};
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{decode_server, encode_client};
use parley_proto::*;
use parley_types::{ConversationId, MessageKind};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn usage() -> ! {
    eprintln!("usage: chat <ws-url> <token> <conversation-id>");
    eprintln!("  e.g. chat ws://127.0.0.1:3001/ws \"$TOKEN\" 6c0f...-...");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, conv] = args.as_slice() else {
        usage()
    };
    let conversation: ConversationId = conv.parse().unwrap_or_else(|_| usage());
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let (mut tx, mut rx) = ws.split();
    let frame = |seq, body| WsMessage::Binary(encode_client(&ClientFrame { seq, body }));
    let hello = ClientBody::Hello(Hello {
        token: token.clone(),
        protocol_major: 1,
        protocol_minor: 0,
        resume: vec![],
        client_name: Some("parley-example-chat".into()),
    });
    tx.send(frame(1, hello)).await.unwrap();
    tx.send(frame(2, ClientBody::Join { conversation }))
        .await
        .unwrap();

    // Lines from stdin, read on a plain thread.
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut seq = 2;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                seq += 1;
                let body = ClientBody::Send(SendMessage {
                    conversation,
                    client_msg_id: format!("cli-{}-{seq}", std::process::id()),
                    kind: MessageKind::Text,
                    content: line,
                    media: None,
                });
                tx.send(frame(seq, body)).await.unwrap();
            }
            msg = rx.next() => {
                let Some(Ok(WsMessage::Binary(bytes))) = msg else { break };
                match decode_server(&bytes, &DecodeLimits::server()).map(|f| f.body) {
                    Ok(ServerBody::Welcome(w)) => println!("* connected as {} (session {})", w.user, w.session_id),
                    Ok(ServerBody::MessageNew(m)) => println!("<{}> {}", m.sender, m.content),
                    Ok(ServerBody::Ack(a)) if a.message_id.0 != 0 => println!("* sent #{}", a.message_id),
                    Ok(ServerBody::Typing { user, active: true, .. }) => println!("* {user} is typing…"),
                    Ok(ServerBody::MessageRead { reader, up_to, .. }) => println!("* {reader} read up to #{up_to}"),
                    Ok(ServerBody::Presence { user, online, .. }) => {
                        println!("* {user} is {}", if online { "online" } else { "offline" })
                    }
                    Ok(ServerBody::Error { code, message, .. }) => println!("! error {code}: {message}"),
                    Ok(_) => {}
                    Err(e) => println!("! undecodable frame: {e}"),
                }
            }
        }
    }
}
