//! The Parley gateway: a sharded WebSocket and QUIC chat server. The binary calls [`run`];
//! everything else is internal (`pub(crate)`), reached by clients only through the protocol.
//!
//! See ARCHITECTURE.md at the repository root for the code map, the layers and the rules on
//! which module may use which (checked by `tests/layers.rs`).

#![warn(unreachable_pub)]

mod auth;
mod bus;
mod chat;
mod cli;
mod clock;
mod config;
mod driver;
mod errors;
mod event;
mod files;
#[cfg(test)]
mod layers;
mod media;
mod metered;
mod metrics;
mod moderation;
mod node;
mod outbound;
mod outbox;
mod push;
mod ratelimit;
mod search;
mod server;
mod session;
mod shard;
mod state;
#[cfg(test)]
mod testkit;
mod transport;

#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench;

#[cfg(feature = "fuzz-internals")]
#[doc(hidden)]
pub mod fuzzing;

pub use cli::run;
