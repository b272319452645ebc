//! Frame codec: what one frame costs to verify+decode (client → server) and to encode
//! (server → client). Isolates the wire format from sockets and storage.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{decode_server, encode_client};
use parley_proto::codec::server::{decode_client, encode_server};
use parley_proto::*;
use parley_types::{ConversationId, Message, MessageId, MessageKind};
use std::hint::black_box;

fn send_frame() -> ClientFrame {
    ClientFrame {
        seq: 42,
        body: ClientBody::Send(SendMessage {
            conversation: ConversationId::random(),
            client_msg_id: "0f6c1c1e-8e0a-4b8e-9a57-3c4d2b1e0a99".into(),
            kind: MessageKind::Text,
            content: "Hi! Is the bike still available? I could pick it up tomorrow.".into(),
            media: None,
        }),
    }
}

fn message_new() -> ServerFrame {
    ServerFrame::push(ServerBody::MessageNew(Message {
        id: MessageId(384_082_353_594_564_608),
        conversation: ConversationId::random(),
        sender: "user-123456".into(),
        kind: MessageKind::Text,
        content: "Hi! Is the bike still available? I could pick it up tomorrow.".into(),
        media: None,
        client_msg_id: "0f6c1c1e-8e0a-4b8e-9a57-3c4d2b1e0a99".into(),
        created_at_ms: 1_795_637_975_123,
        seq: 0,
        visibility: Default::default(),
    }))
}

fn codec(c: &mut Criterion) {
    let limits = DecodeLimits::client(64 * 1024, 1000);
    let send = encode_client(&send_frame());
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_client/send (verify + decode)", |b| {
        b.iter(|| decode_client(black_box(&send), &limits))
    });
    g.bench_function("encode_server/message_new", |b| {
        let frame = message_new();
        b.iter(|| encode_server(black_box(&frame)))
    });
    let encoded = encode_server(&message_new());
    let server_limits = DecodeLimits::server();
    g.bench_function("decode_server/message_new (client side)", |b| {
        b.iter(|| decode_server(black_box(&encoded), &server_limits))
    });
    g.finish();
}

// The gateway runs on mimalloc; measure with it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, codec);
criterion_main!(benches);
