//! What the fuzz targets in `fuzz/` drive (feature `fuzz-internals`; not an API). Each entry
//! point takes bytes as a client could send them; whatever they are, it must not panic, loop or
//! allocate without bound.

use std::sync::Arc;
use std::time::Duration;

use parley_proto::codec::client::encode_client;
use parley_proto::{ClientBody, ClientFrame, Hello};

use crate::auth::{Authenticator, TokenRules};
use crate::clock::Now;
use crate::session::{Origin, Output, Session, SessionLimits};

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";
/// A fixed wall clock, so that a token minted for the run stays valid and runs repeat.
const WALL_MS: i64 = 1_800_000_000_000;

/// WebSocket frames: the header checks (RSV bits, opcode, masking, control-frame rules, the
/// size limit) and unmasking, over a buffer that holds any bytes.
pub fn ws_frames(data: &[u8]) {
    crate::transport::ws::fuzz_frames(data);
}

/// REST: path segments (percent-decoding, conversation ids), query strings (limits, cursors)
/// and every JSON body the API reads, as far as they are checked before storage.
pub fn rest(data: &[u8]) {
    crate::transport::rest::fuzz_parse(data);
}

/// Tokens: any string as a Bearer token or a Hello's token, against HS256 and the rules.
pub fn token(data: &[u8]) {
    let auth = Authenticator::new(
        Some(SECRET),
        None,
        TokenRules {
            issuer: Some("market".into()),
            audience: Some("chat".into()),
            ..TokenRules::default()
        },
    )
    .expect("auth");
    let text = String::from_utf8_lossy(data);
    let _ = auth.verify(&text, WALL_MS);
    // As a token's claims: the bytes as the payload of a correctly signed token.
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        if let Ok(t) = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key) {
            let _ = auth.verify(&t, WALL_MS);
        }
    }
}

/// The session core: a sequence of frames (each prefixed by its length, u16 big-endian) into
/// one session, after a valid Hello unless the first byte is odd (then the input says Hello,
/// or not, itself). Every frame kind, every validation rule, every error path.
pub fn session(data: &[u8]) {
    let auth =
        Arc::new(Authenticator::new(Some(SECRET), None, TokenRules::default()).expect("auth"));
    let limits = Arc::new(SessionLimits {
        frames_per_sec: 1e9,
        frame_burst: u32::MAX,
        ..SessionLimits::default()
    });
    let t0 = tokio::time::Instant::now();
    let now = |ms: u64| Now {
        mono: t0 + Duration::from_millis(ms),
        wall_ms: WALL_MS + ms as i64,
    };
    let mut s = Session::new(1, limits, auth, now(0));
    let mut out: Vec<Output> = Vec::new();
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    if first & 1 == 0 {
        let hello = encode_client(&ClientFrame {
            seq: 1,
            body: ClientBody::Hello(Hello {
                token: parley_proto::token::mint_hs256(SECRET, "alice", 3600, WALL_MS),
                protocol_major: 1,
                protocol_minor: 2,
                resume: vec![],
                client_name: None,
            }),
        });
        s.handle_frame_from(now(0), &hello, Origin::Stream, &mut out);
    }
    let mut ms = 0;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        // The low bits of the length pick how the frame came; time moves on by a few ms.
        let origin = match a & 0x03 {
            1 => Origin::Early,
            2 => Origin::Datagram,
            _ => Origin::Stream,
        };
        ms += u64::from(*b & 0x0f);
        s.handle_frame_from(now(ms), frame, origin, &mut out);
        if s.next_deadline().is_some_and(|d| d <= now(ms).mono) {
            s.handle_timeout(now(ms), &mut out);
        }
        out.clear();
        rest = next;
    }
    s.handle_shutdown(now(ms), &mut out);
    s.handle_timeout(now(ms + 5_000), &mut out);
    s.handle_transport_closed(&mut out);
}

/// Search: any string as a message query (parsed, turned into a tantivy query, run against a
/// small in-memory index, its snippet cut from any text) and as a conversation query.
pub fn search(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (q, body) = text.split_once('\n').unwrap_or((&text, "castle 城堡 café"));
    crate::search::fuzz_query(q, body);
}
