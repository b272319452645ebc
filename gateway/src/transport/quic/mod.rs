//! The QUIC transport for mobile clients: the same protocol and session core as WebSocket,
//! over one bidirectional stream of u32-little-endian-length-prefixed frames, with typing
//! indicators as datagrams, connection migration and 0-RTT.
//!
//! Sharding: one quinn endpoint (one UDP socket) per node, because quinn routes packets to
//! connections by connection ID only within an endpoint: with one endpoint per shard behind
//! SO_REUSEPORT, a client whose address changes (Wi-Fi → cellular) would be hashed to another
//! shard's socket and lose its connection. The endpoint's work is still spread over the shard
//! threads: its runtime ([`runtime::ShardedRuntime`]) spawns each connection's driver (crypto,
//! packet processing, timers) onto the shards in turn, and each session runs on a shard of its
//! own. Only receiving from the one UDP socket is done by one task. ARCHITECTURE.md has the
//! measured cost.

pub(crate) mod runtime;
pub(crate) mod tls;
pub(crate) mod transport;
