//! A minimal terminal chat client over the reference client (`parley-client`):
//! `cargo run -p gateway --example chat -- 127.0.0.1:3001 "$TOKEN" "$CONVERSATION"`.
//!
//! Connects over WebSocket, authenticates with a token, prints what arrives (messages, typing,
//! read receipts, presence) and sends each line typed on stdin to the conversation.

use std::io::BufRead;
use std::net::SocketAddr;

use parley_client::{Client, Via, text_message};
use parley_proto::{ClientBody, ServerBody};
use parley_types::ConversationId;

fn usage() -> ! {
    eprintln!("usage: chat <host:port> <token> <conversation-id>");
    eprintln!("  e.g. chat 127.0.0.1:3001 \"$TOKEN\" 6c0f...-...");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), parley_client::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, token, conv] = args.as_slice() else {
        usage()
    };
    // Accept the ws://host:port/ws form too.
    let addr = addr.trim_start_matches("ws://").trim_end_matches("/ws");
    let addr: SocketAddr = addr.parse().unwrap_or_else(|_| usage());
    let conversation: ConversationId = conv.parse().unwrap_or_else(|_| usage());
    let mut client = Client::connect(&Via::ws(addr), token, vec![]).await?;
    if let Some(w) = &client.welcome {
        println!("* connected as {} (session {})", w.user, w.session_id);
    }
    client.send(ClientBody::Join { conversation }).await?;
    // Events are read without a deadline: a chat may be quiet for a long time.
    client.timeout = std::time::Duration::from_secs(24 * 3600);

    // Lines from stdin, read on a plain thread.
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut n = 0u64;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                n += 1;
                let id = format!("cli-{}-{n}", std::process::id());
                client.send(text_message(conversation, &id, &line)).await?;
            }
            frame = client.next() => match frame?.body {
                ServerBody::MessageNew(m) => println!("<{}> {}", m.sender, m.content),
                ServerBody::Ack(a) if a.message_id.0 != 0 => println!("* sent #{}", a.message_id),
                ServerBody::Typing { user, active: true, .. } => println!("* {user} is typing…"),
                ServerBody::MessageRead { reader, up_to, .. } => println!("* {reader} read up to #{up_to}"),
                ServerBody::Presence { user, online, .. } => {
                    println!("* {user} is {}", if online { "online" } else { "offline" })
                }
                ServerBody::Error { code, message, .. } => println!("! error {code}: {message}"),
                _ => {}
            },
        }
    }
    Ok(())
}
