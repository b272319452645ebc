//! Images: the pixel budget is checked from the header before anything is decoded
//! (decompression bombs), then the image is decoded under allocation limits, turned upright
//! by its EXIF orientation and re-encoded at two sizes. Re-encoding writes no metadata, so
//! EXIF (GPS, camera serials), XMP and ICC profiles never leave the server; the original
//! bytes are never stored. Blocking: run it on the blocking pool.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// How images are checked and rendered.
#[derive(Debug, Clone)]
pub(crate) struct ImageRules {
    /// Width × height above which an image is refused before it is decoded.
    pub(crate) max_pixels: u64,
    /// Longest side of the display rendition.
    pub(crate) display_px: u32,
    /// Longest side of the thumbnail.
    pub(crate) thumb_px: u32,
    /// JPEG quality of the display rendition and the thumbnail.
    pub(crate) display_quality: u8,
    pub(crate) thumb_quality: u8,
}

/// One encoded rendition.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) mime: &'static str,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

/// The display rendition, the thumbnail and a colour to show while they load.
#[derive(Debug)]
pub(crate) struct Processed {
    pub(crate) display: Encoded,
    pub(crate) thumb: Encoded,
    /// `#rrggbb`: the image's mean colour.
    pub(crate) placeholder: String,
    /// The size of the upload (upright), pixels.
    pub(crate) original: (u32, u32),
}

/// Why an image is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ImageError {
    /// Over the pixel budget (the message says by how much).
    TooLarge(String),
    /// Not decodable as the format its bytes claim.
    Undecodable(String),
}

pub(crate) fn process(
    bytes: &[u8],
    format: ImageFormat,
    rules: &ImageRules,
) -> Result<Processed, ImageError> {
    let undecodable = |e: image::ImageError| ImageError::Undecodable(e.to_string());
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(undecodable)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > rules.max_pixels || w == 0 || h == 0 {
        return Err(ImageError::TooLarge(format!(
            "the image is {w}×{h} pixels; at most {} pixels are accepted",
            rules.max_pixels
        )));
    }
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(undecodable)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    // The header's size was checked; these limits hold the decoder to it (a GIF's frames or a
    // lying header cannot make it allocate more).
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(pixels * 8 + (16 << 20));
    decoder.set_limits(limits).map_err(undecodable)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    img.apply_orientation(orientation);
    let original = (img.width(), img.height());
    // Checked on the display rendition: at most 2048² pixels copied, not the whole upload.
    let display = fit(img, rules.display_px);
    let alpha = display.color().has_alpha() && has_transparency(&display);
    let thumb = display.thumbnail(rules.thumb_px, rules.thumb_px);
    let placeholder = mean_colour(&thumb);
    Ok(Processed {
        display: encode(&display, alpha, rules.display_quality)?,
        thumb: encode(&thumb, alpha, rules.thumb_quality)?,
        placeholder,
        original,
    })
}

/// `img` scaled down so its longest side is at most `px` (never up).
fn fit(img: DynamicImage, px: u32) -> DynamicImage {
    match img.width().max(img.height()) > px {
        true => img.resize(px, px, FilterType::Triangle),
        false => img,
    }
}

fn has_transparency(img: &DynamicImage) -> bool {
    img.to_rgba8().pixels().any(|p| p.0[3] < 255)
}

/// JPEG, or PNG where the image has transparent pixels (JPEG has no alpha).
fn encode(img: &DynamicImage, alpha: bool, quality: u8) -> Result<Encoded, ImageError> {
    let failed = |e: image::ImageError| ImageError::Undecodable(format!("re-encoding: {e}"));
    let mut bytes = Vec::new();
    let mime = match alpha {
        true => {
            img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
                .map_err(failed)?;
            "image/png"
        }
        false => {
            let rgb = img.to_rgb8();
            JpegEncoder::new_with_quality(&mut bytes, quality)
                .encode_image(&rgb)
                .map_err(failed)?;
            "image/jpeg"
        }
    };
    Ok(Encoded {
        bytes,
        mime,
        width: img.width(),
        height: img.height(),
    })
}

fn mean_colour(img: &DynamicImage) -> String {
    let rgb = img.to_rgb8();
    let n = u64::from(rgb.width()) * u64::from(rgb.height());
    let mut sum = [0u64; 3];
    for p in rgb.pixels() {
        for (s, c) in sum.iter_mut().zip(p.0) {
            *s += u64::from(c);
        }
    }
    let [r, g, b] = sum.map(|s| s.checked_div(n).unwrap_or(0));
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn rules() -> ImageRules {
        ImageRules {
            max_pixels: 50_000_000,
            display_px: 2048,
            thumb_px: 320,
            display_quality: 82,
            thumb_quality: 70,
        }
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 200]));
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encode");
        out
    }

    #[test]
    fn a_large_photo_gets_a_display_size_and_a_thumbnail() {
        let p = process(&jpeg(3000, 2000), ImageFormat::Jpeg, &rules()).expect("process");
        assert_eq!((p.display.width, p.display.height), (2048, 1365));
        assert_eq!((p.thumb.width, p.thumb.height), (320, 213));
        assert_eq!(p.display.mime, "image/jpeg");
        assert_eq!(p.original, (3000, 2000));
        assert!(p.placeholder.starts_with('#') && p.placeholder.len() == 7);
    }

    #[test]
    fn a_small_image_is_not_scaled_up_and_transparency_stays() {
        let img = RgbaImage::from_fn(40, 30, |x, _| {
            Rgba([255, 0, 0, if x < 20 { 0 } else { 255 }])
        });
        let mut png = Vec::new();
        DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .expect("png");
        let p = process(&png, ImageFormat::Png, &rules()).expect("process");
        assert_eq!((p.display.width, p.display.height), (40, 30));
        assert_eq!(p.display.mime, "image/png");
    }

    #[test]
    fn garbage_after_a_valid_magic_number_is_undecodable() {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend_from_slice(&[7; 64]);
        assert!(matches!(
            process(&bytes, ImageFormat::Png, &rules()),
            Err(ImageError::Undecodable(_))
        ));
    }
}
