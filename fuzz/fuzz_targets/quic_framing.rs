//! The QUIC stream framing (u32 length prefixes), fed in pieces as a stream delivers them.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use parley_proto::framing::{Parsed, parse_frame};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match parse_frame(&mut buf, 64 << 10) {
                Parsed::Frame(f) => assert!(f.len() <= 64 << 10),
                Parsed::NeedMore => break,
                Parsed::TooLarge(_) => return,
            }
        }
    }
});
