//! The QUIC stream framing: every frame is a `u32` little-endian length followed by that many
//! bytes of one FlatBuffers frame. (WebSocket needs none: one binary message is one frame.)
//! Both ends use these two functions, so the rules live in one place.

use bytes::{Buf, Bytes, BytesMut};

/// ALPN protocol id of Parley over QUIC.
pub const QUIC_ALPN: &[u8] = b"parley/1";

/// Appends `frame` with its length prefix.
pub fn put_frame(buf: &mut Vec<u8>, frame: &[u8]) {
    buf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    buf.extend_from_slice(frame);
}

/// What [`parse_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// One whole frame (removed from the buffer).
    Frame(Bytes),
    /// Not enough bytes yet.
    NeedMore,
    /// The length prefix announces more than the limit: refused from the prefix alone,
    /// before anything is read or allocated for it.
    TooLarge(usize),
}

/// Takes one frame of at most `max` bytes off the front of `buf`.
pub fn parse_frame(buf: &mut BytesMut, max: usize) -> Parsed {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Parsed::NeedMore;
    };
    let len = u32::from_le_bytes(*prefix) as usize;
    if len > max {
        return Parsed::TooLarge(len);
    }
    if buf.len() < 4 + len {
        return Parsed::NeedMore;
    }
    buf.advance(4);
    Parsed::Frame(buf.split_to(len).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join_at_any_byte() {
        let mut wire = Vec::new();
        put_frame(&mut wire, b"hello");
        put_frame(&mut wire, b"");
        put_frame(&mut wire, &[7u8; 300]);
        // Fed one byte at a time, the same three frames come out.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &wire {
            buf.extend_from_slice(&[*b]);
            while let Parsed::Frame(f) = parse_frame(&mut buf, 1024) {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Bytes::from_static(b"hello"),
                Bytes::new(),
                Bytes::from(vec![7u8; 300])
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_its_body() {
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert_eq!(
            parse_frame(&mut buf, 65536),
            Parsed::TooLarge(u32::MAX as usize)
        );
        let mut buf = BytesMut::from(&[1u8, 0, 0][..]);
        assert_eq!(parse_frame(&mut buf, 65536), Parsed::NeedMore);
        // Exactly the limit is fine.
        let mut wire = Vec::new();
        put_frame(&mut wire, &[0u8; 16]);
        let mut buf = BytesMut::from(&wire[..]);
        assert!(matches!(parse_frame(&mut buf, 16), Parsed::Frame(f) if f.len() == 16));
    }
}
