//! End-to-end tests against the real `gateway` binary: one test crate, so `support` compiles
//! once. Each module starts its own gateway processes (and, for the cluster, Redis) on free
//! loopback ports; `scripts/test.sh` starts the Cassandra they share.

#![allow(clippy::unwrap_used)]

mod abuse;
mod autobahn;
mod blocks;
mod cluster;
mod durability;
mod ledger;
mod lifecycle;
mod media;
mod moderation;
mod push;
mod quic;
mod quic_aioquic;
mod search;
mod support;
mod web;
mod ws_chat;
mod ws_limits;
