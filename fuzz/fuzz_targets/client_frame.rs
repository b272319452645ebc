//! A client frame as the gateway reads it: FlatBuffers verification (depth, tables, size,
//! UTF-8) and decoding. What decodes must encode back to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::encode_client;
use parley_proto::codec::server::decode_client;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::client(64 << 10, 1000);
    if let Ok(frame) = decode_client(data, &limits) {
        let again =
            decode_client(&encode_client(&frame), &limits).expect("re-encoded frame decodes");
        assert_eq!(again, frame);
    }
});
