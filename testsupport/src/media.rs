//! Media files for tests: audio containers that state a known length (no audio payload is
//! needed for that).

/// An Ogg Opus stream of `ms` milliseconds: the OpusHead page, then a last page whose
/// granule position ends it (pre-skip 312 samples).
pub fn ogg_opus(ms: u64) -> Vec<u8> {
    fn page(granule: u64, seq: u32, flags: u8, packet: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0".to_vec();
        p.push(flags);
        p.extend(granule.to_le_bytes());
        p.extend(7u32.to_le_bytes()); // stream serial
        p.extend(seq.to_le_bytes());
        p.extend(0u32.to_le_bytes()); // checksum (not checked here)
        p.push(1);
        p.push(packet.len() as u8);
        p.extend(packet);
        p
    }
    let mut head = b"OpusHead".to_vec();
    head.extend([1, 1]);
    head.extend(312u16.to_le_bytes());
    head.extend(48_000u32.to_le_bytes());
    head.extend([0, 0, 0]);
    let mut out = page(0, 0, 2, &head);
    out.extend(page(0, 1, 0, b"OpusTags\0\0\0\0\0\0\0\0"));
    out.extend(page(312 + ms * 48, 2, 4, &[0xfc, 0xff, 0xfe]));
    out
}

/// An M4A (MP4) of `ms` milliseconds: `ftyp`, then `moov` with a version-0 `mvhd`.
pub fn m4a(ms: u32) -> Vec<u8> {
    let mut out = 20u32.to_be_bytes().to_vec();
    out.extend(b"ftypM4A \0\0\0\0M4A ");
    let mut mvhd = vec![0u8; 100];
    mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
    mvhd[16..20].copy_from_slice(&ms.to_be_bytes());
    let mut mvhd_box = ((mvhd.len() + 8) as u32).to_be_bytes().to_vec();
    mvhd_box.extend(b"mvhd");
    mvhd_box.extend(mvhd);
    out.extend(((mvhd_box.len() + 8) as u32).to_be_bytes());
    out.extend(b"moov");
    out.extend(mvhd_box);
    out
}
