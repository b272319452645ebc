//! Parley's reference client in Rust: what a mobile app or a browser does, over QUIC
//! ([`quic`]) or WebSocket ([`ws`]). Tests, the load test, benches and examples use it, so the
//! server is always exercised through a client that only knows the protocol.
//!
//! - [`link`]: one connection as a read half of whole frames and a write half.
//! - [`Client`]: a session over a link — Hello → Welcome, requests answered by `seq`, events in
//!   order, and per conversation where to resume from ([`Cursors`]).
//! - [`token`]: HS256 development tokens (`parley_proto::token`).

mod error;
pub mod link;
pub mod quic;
mod session;
pub mod ws;

pub use error::Error;
pub use link::Via;
pub use parley_proto::token;
pub use session::{
    Client, Closed, Cursors, DEFAULT_TIMEOUT, Seen, error_code, is_message, text_message,
};
