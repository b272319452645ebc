//! What an upload is, from its bytes (magic numbers, `infer`), never from its name or the
//! client's `Content-Type`.

use image::ImageFormat;

/// The file types accepted by default (`--media-file-types` replaces the list).
pub(crate) const DEFAULT_FILE_TYPES: &[&str] = &[
    "application/pdf",
    "text/plain",
    "application/zip",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "audio/ogg",
    "audio/opus",
    "audio/mpeg",
    "audio/m4a",
    "audio/aac",
    "video/mp4",
];

/// What sniffing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// An image the server decodes and re-encodes.
    Image(ImageFormat),
    /// A file kept as is, with its MIME type and a file-name extension for it.
    File {
        mime: &'static str,
        ext: &'static str,
    },
}

/// The type of `bytes`, or why it is refused.
pub(crate) fn sniff(bytes: &[u8], file_types: &[String]) -> Result<Sniffed, String> {
    let found = infer::get(bytes);
    let (mime, ext) = match found {
        Some(t) => (t.mime_type(), t.extension()),
        None if is_plain_text(bytes) => ("text/plain", "txt"),
        None => return Err("the upload's type is not recognised from its content".into()),
    };
    let image = match mime {
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        "image/webp" => Some(ImageFormat::WebP),
        "image/gif" => Some(ImageFormat::Gif),
        _ => None,
    };
    if let Some(format) = image {
        return Ok(Sniffed::Image(format));
    }
    if file_types.iter().any(|t| t == mime) {
        return Ok(Sniffed::File { mime, ext });
    }
    Err(format!("{mime} uploads are not accepted"))
}

/// UTF-8 with no control characters but tab, newline, carriage return and form feed (what
/// `infer` cannot tell: text has no magic number).
fn is_plain_text(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && std::str::from_utf8(bytes).is_ok_and(|s| {
            s.chars()
                .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        DEFAULT_FILE_TYPES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn types_come_from_the_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(
            sniff(png, &defaults()),
            Ok(Sniffed::Image(ImageFormat::Png))
        );
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
        assert_eq!(
            sniff(jpeg, &defaults()),
            Ok(Sniffed::Image(ImageFormat::Jpeg))
        );
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
        assert_eq!(
            sniff(pdf, &defaults()),
            Ok(Sniffed::File {
                mime: "application/pdf",
                ext: "pdf"
            })
        );
        assert!(matches!(
            sniff("prix: 20 € — d'accord?\n".as_bytes(), &defaults()),
            Ok(Sniffed::File {
                mime: "text/plain",
                ..
            })
        ));
    }

    #[test]
    fn executables_and_unknown_bytes_are_refused() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
        assert!(sniff(elf, &defaults()).is_err());
        let exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
        assert!(sniff(exe, &defaults()).is_err());
        assert!(sniff(b"\0\x01\x02binary", &defaults()).is_err());
        assert!(sniff(b"", &defaults()).is_err());
        // A type left out of the configured list is refused.
        let pdf = b"%PDF-1.7\n";
        assert!(sniff(pdf, &["text/plain".to_string()]).is_err());
    }
}
