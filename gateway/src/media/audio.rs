//! The length of an audio upload, read from its container (no decoding): Ogg (Opus, Vorbis)
//! from the last page's granule position, MP4/M4A from the movie header (`mvhd`). Other
//! containers (MP3, AAC in ADTS) have no length field: None.

/// Length in ms, if the container states it.
pub(crate) fn duration_ms(bytes: &[u8]) -> Option<u32> {
    let ms = match bytes.get(..4)? {
        b"OggS" => ogg(bytes)?,
        _ if bytes.get(4..8) == Some(b"ftyp") => mp4(bytes)?,
        _ => return None,
    };
    u32::try_from(ms).ok()
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn u32be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64be(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Ogg: the first page's packet says the codec and its rate; the last page's granule
/// position is the stream's end in samples (Opus: at 48 kHz, after `pre_skip`).
fn ogg(b: &[u8]) -> Option<u64> {
    let segments = usize::from(*b.get(26)?);
    let packet = b.get(27 + segments..)?;
    let (rate, skip) = if packet.starts_with(b"OpusHead") {
        (48_000, u64::from(u16le(packet, 10)?))
    } else if packet.starts_with(b"\x01vorbis") {
        (u64::from(u32le(packet, 12)?), 0)
    } else {
        return None;
    };
    // The last page: the last "OggS" capture pattern with stream structure version 0.
    let last = (0..b.len().saturating_sub(27))
        .rev()
        .find(|&i| &b[i..i + 4] == b"OggS" && b[i + 4] == 0)?;
    let granule = u64le(b, last + 6)?;
    if rate == 0 || granule == u64::MAX {
        return None;
    }
    Some(granule.saturating_sub(skip) * 1000 / rate)
}

/// MP4: `moov` → `mvhd` gives a timescale and a duration in it.
fn mp4(b: &[u8]) -> Option<u64> {
    let moov = child(b, b"moov")?;
    let mvhd = child(moov, b"mvhd")?;
    let (timescale, duration) = match mvhd.first()? {
        0 => (u64::from(u32be(mvhd, 12)?), u64::from(u32be(mvhd, 16)?)),
        1 => (u64::from(u32be(mvhd, 20)?), u64be(mvhd, 24)?),
        _ => return None,
    };
    match timescale {
        0 => None,
        t => Some(duration.saturating_mul(1000) / t),
    }
}

/// The body of the first box named `name` among the boxes in `b`.
fn child<'a>(mut b: &'a [u8], name: &[u8; 4]) -> Option<&'a [u8]> {
    while b.len() >= 8 {
        let size = u64::from(u32be(b, 0)?);
        let (header, size) = match size {
            0 => (8, b.len() as u64),
            1 => (16, u64be(b, 8)?),
            n => (8, n),
        };
        let size = usize::try_from(size).ok()?;
        if size < header || size > b.len() {
            return None;
        }
        if &b[4..8] == name {
            return Some(&b[header..size]);
        }
        b = &b[size..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_testsupport::media::{m4a, ogg_opus};

    #[test]
    fn lengths_come_from_the_container() {
        assert_eq!(duration_ms(&ogg_opus(4_250)), Some(4_250));
        assert_eq!(duration_ms(&m4a(61_500)), Some(61_500));
    }

    #[test]
    fn broken_or_unknown_containers_have_no_length() {
        let ogg = ogg_opus(1000);
        for cut in [5, 27, 40, ogg.len() - 30] {
            let _ = duration_ms(&ogg[..cut]); // never panics
        }
        let mut m4a = m4a(1000);
        m4a[21] = 0xff; // the moov box's size now runs past the end
        assert_eq!(duration_ms(&m4a), None);
        assert_eq!(duration_ms(b"ID3\x04\0\0\0\0\0\0"), None);
        assert_eq!(duration_ms(b""), None);
    }
}
