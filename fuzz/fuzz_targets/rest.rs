//! A REST request line and body: path segments, query strings, every JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway::fuzzing::rest(data));
