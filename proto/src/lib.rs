//! Parley's protocol as Rust: the frames ([`frames`]), what kind each is ([`FrameKind`],
//! [`ClientKind`]), the stable error codes and the close codes that go with them
//! ([`ErrorCode`], [`close`]), and the codec between these and FlatBuffers bytes ([`codec`]).
//!
//! The codec has two roles behind features: `server` (decode client frames, encode server
//! frames) and `client` (the opposite). The gateway takes the first, clients the second, so a
//! client build does not carry the server's half and the other way round.

pub mod codec;
mod error;
pub mod frames;
pub mod framing;
mod kind;
#[cfg(feature = "token")]
pub mod token;

pub use error::{ErrorCode, close};
pub use frames::*;
pub use framing::QUIC_ALPN;
pub use kind::{ClientKind, FrameKind};
pub use parley_schema::{PROTOCOL_MAJOR, PROTOCOL_MINOR};
