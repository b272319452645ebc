//! Tokens (Bearer or Hello): JWT parsing, signature, claims and the token rules.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway::fuzzing::token(data));
