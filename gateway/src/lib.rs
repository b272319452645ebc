//! The Parley gateway: a sharded WebSocket (and later QUIC) chat server.
//!
//! See ARCHITECTURE.md at the repository root for the code map and invariants.

pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod errors;
pub mod http;
pub mod hub;
pub mod metered;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod outbox;
pub mod quic;
pub mod ratelimit;
pub mod rest;
pub mod server;
pub mod session;
pub mod shard;
pub mod ws;
