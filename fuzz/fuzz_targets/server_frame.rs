//! A server frame as clients read it (parley-client, the load test): decoding and the
//! borrowing peek the load test uses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{decode_server, peek_server};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::server();
    let _ = decode_server(data, &limits);
    let _ = peek_server(data, &limits);
});
