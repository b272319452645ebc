//! Parley's wire protocol: the FlatBuffers schema `chat.fbs` and the Rust code flatc generated
//! from it (committed; `generate.sh` rewrites it and `tests/generated_is_fresh.rs` fails when it
//! is stale).
//!
//! Only this crate and the gateway's codec module touch these types; everything else works on
//! domain types.

/// Protocol version spoken by this build. A client with another major version is refused.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Minor versions add optional fields only; any minor of the same major interoperates.
pub const PROTOCOL_MINOR: u16 = 5;

#[allow(
    unsafe_code,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    deprecated,
    missing_docs,
    non_camel_case_types,
    unused_imports,
    mismatched_lifetime_syntaxes
)]
#[rustfmt::skip]
#[path = "chat_generated.rs"]
mod chat_generated;

pub use chat_generated::parley::wire;
