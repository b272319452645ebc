//! The Parley gateway: a sharded WebSocket (and later QUIC) chat server.
//!
//! See ARCHITECTURE.md at the repository root for the code map and invariants.

pub mod auth;
pub mod clock;
pub mod codec;
pub mod config;
pub mod errors;
pub mod protocol;
pub mod ratelimit;
pub mod session;
