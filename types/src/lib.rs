//! Parley's domain types, shared by storage engines, the protocol crate, the gateway and clients.
//! No storage engine and no wire format live here: engines map these to their records, the
//! protocol crate to FlatBuffers.

mod domain;
pub mod ids;
mod moderation;
pub mod rules;

pub use domain::*;
pub use moderation::*;

/// Largest page of history or of a conversation list.
pub const MAX_PAGE: usize = 100;
