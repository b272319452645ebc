//! The session core fed a sequence of frames (after a Hello): every frame kind and rule.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway::fuzzing::session(data));
