//! A search query as a client types it (REST `q`, the protocol's Search and Conversations
//! query), parsed, run against a small index, and its snippet cut from text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway::fuzzing::search(data));
