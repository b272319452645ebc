//! WebSocket frames off a socket: header checks, masking, limits, unmasking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway::fuzzing::ws_frames(data));
