//! Media end to end: uploads typed by their bytes and bounded, photos re-encoded without
//! their metadata, signed URLs served with caching headers and ranges, and messages that may
//! only carry their sender's uploads.

use std::net::SocketAddr;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::{GenericImageView, ImageFormat, Rgb, RgbImage};
use parley_proto::{ClientBody, SendMessage, ServerBody};
use parley_types::{MediaRef, MessageKind};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// One HTTP request with a binary body; status, headers and the raw body. Decoding and
/// re-encoding a photo is real work: a loaded machine may take seconds.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Bytes) {
    request(addr, method, path, token, body.into(), headers, WAIT * 6).await
}

/// Uploads `bytes` as `user` for `conversation`; status and JSON.
async fn upload(
    gw: &Gateway,
    user: &str,
    conversation: &str,
    name: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> (u16, Value) {
    let path = format!("/api/media?conversation={conversation}&name={name}");
    let (status, _, body) = raw(
        gw.addr,
        "POST",
        &path,
        Some(&token(user)),
        bytes,
        &[("content-type", content_type)],
    )
    .await;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

/// GET a media URL (relative: this gateway is the origin).
async fn fetch(
    gw: &Gateway,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Bytes) {
    assert!(url.starts_with("/media/"), "{url}");
    raw(gw.addr, "GET", url, None, Vec::new(), headers).await
}

/// A photo-like JPEG (gradients and noise, so it compresses like one).
fn photo(w: u32, h: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let img = RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed & 15) as u8;
        Rgb([
            ((x * 255 / w) as u8).saturating_add(n),
            ((y * 255 / h) as u8).saturating_add(n),
            120u8.saturating_add(n),
        ])
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(&img)
        .unwrap();
    out
}

/// `jpeg` with an EXIF segment: orientation 6 (turn 90° clockwise to show), a GPS IFD and a
/// description carrying `marker` (what a phone writes into a seller's photo).
fn with_exif(jpeg: &[u8], marker: &str) -> Vec<u8> {
    // TIFF, big-endian: header, IFD0 (3 entries), the GPS IFD (1 entry), then the text.
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    let ifd0_len = 2 + 3 * 12 + 4;
    let gps_at = 8 + ifd0_len;
    let gps_len = 2 + 12 + 4;
    let text_at = gps_at + gps_len;
    let text = format!("{marker}\0");
    let entry = |tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        let mut e = tag.to_be_bytes().to_vec();
        e.extend(kind.to_be_bytes());
        e.extend(count.to_be_bytes());
        e.extend(value);
        e
    };
    tiff.extend(3u16.to_be_bytes());
    tiff.extend(entry(
        0x010e,
        2,
        text.len() as u32,
        (text_at as u32).to_be_bytes(),
    ));
    tiff.extend(entry(0x0112, 3, 1, [0, 6, 0, 0]));
    tiff.extend(entry(0x8825, 4, 1, (gps_at as u32).to_be_bytes()));
    tiff.extend(0u32.to_be_bytes());
    tiff.extend(1u16.to_be_bytes());
    tiff.extend(entry(0x0001, 2, 2, *b"N\0\0\0"));
    tiff.extend(0u32.to_be_bytes());
    tiff.extend(text.as_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend([0xff, 0xe1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

/// A PNG whose header claims `w`×`h` pixels, with one tiny IDAT: a few dozen bytes.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc(&body).to_be_bytes());
        out
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn header<'a>(h: &'a hyper::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn a_photo_is_turned_upright_stripped_resized_and_delivered() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "buyer", "seller", "castle").await;
    let mut seller = Client::connect(&gw, "seller").await;
    // 1000×2400 as stored; EXIF says turn it: upright it is 2400×1000.
    let original = with_exif(&photo(1000, 2400), "SECRET-GPS-48.8584N");
    let sent_bytes = original.len();
    // The client's Content-Type and file name are not believed: the bytes are a JPEG.
    let (status, up) = upload(
        &gw,
        "buyer",
        &conv.to_string(),
        "castle.txt",
        original,
        "text/plain",
    )
    .await;
    assert_eq!(status, 201, "{up}");
    assert_eq!(up["type"], "image");
    assert_eq!(up["mimeType"], "image/jpeg");
    assert_eq!(
        (up["originalWidth"].as_u64(), up["originalHeight"].as_u64()),
        (Some(2400), Some(1000))
    );
    assert_eq!(
        (up["width"].as_u64(), up["height"].as_u64()),
        (Some(2048), Some(853))
    );
    assert_eq!(
        (up["thumbWidth"].as_u64(), up["thumbHeight"].as_u64()),
        (Some(320), Some(133))
    );
    assert!(
        up["placeholder"]
            .as_str()
            .is_some_and(|p| p.len() == 7 && p.starts_with('#'))
    );
    assert!((up["sizeBytes"].as_u64().unwrap() as usize) < sent_bytes);

    // The display rendition is a new JPEG: upright, smaller, and without a byte of the EXIF.
    let (status, h, display) = fetch(&gw, up["url"].as_str().unwrap(), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "image/jpeg");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert!(header(&h, "cache-control").contains("immutable"));
    assert!(!contains(&display, b"Exif") && !contains(&display, b"SECRET-GPS"));
    let shown = image::load_from_memory_with_format(&display, ImageFormat::Jpeg).unwrap();
    assert_eq!(shown.dimensions(), (2048, 853));

    // A message carries the upload by id; the seller gets URLs, sizes and the placeholder.
    let id = up["id"].as_str().unwrap();
    let body = format!(r#"{{"type":"image","content":"the castle","media":{{"id":"{id}"}}}}"#);
    let (status, sent, _) = post(
        &gw,
        "buyer",
        &format!("/api/conversations/{conv}/messages"),
        &body,
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["media"]["id"], id);
    let m = seller.next_message().await;
    assert_eq!(m.kind, MessageKind::Image);
    let media = m.media.expect("media");
    assert_eq!(media.id, id);
    assert_eq!(
        (media.width, media.height, media.thumb_width),
        (2048, 853, 320)
    );
    assert_eq!(media.name, "castle.txt");
    assert!(media.url.starts_with(&format!("/media/{id}/display?")));
    let (status, h, thumb) = fetch(&gw, &media.thumb_url, &[]).await;
    assert_eq!(status, 200);
    assert!(header(&h, "content-disposition").starts_with("inline"));
    let thumb = image::load_from_memory(&thumb).unwrap();
    assert_eq!(thumb.dimensions(), (320, 133));

    // History shows it too, with URLs that work.
    let (status, page, _) = get(
        &gw,
        "seller",
        &format!("/api/conversations/{conv}/messages"),
    )
    .await;
    assert_eq!(status, 200);
    let url = page["messages"][0]["media"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fetch(&gw, &url, &[]).await.0, 200);
}

#[tokio::test]
async fn uploads_are_typed_by_their_bytes_and_bounded() {
    let gw = Gateway::start(&[
        "--media-max-image-bytes",
        "400000",
        "--media-max-file-bytes",
        "200000",
    ]);
    let conv = direct(&gw, "buyer", "seller", "docs").await.to_string();
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();

    // An executable called a photo, and unknown binary bytes: refused.
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0".to_vec();
    let (status, v) = upload(&gw, "buyer", &conv, "photo.png", elf, "image/png").await;
    assert_eq!((status, code(&v).as_str()), (415, "media_unsupported"));
    let (status, v) = upload(
        &gw,
        "buyer",
        &conv,
        "x.bin",
        vec![0, 1, 2, 3, 0xff],
        "application/octet-stream",
    )
    .await;
    assert_eq!((status, code(&v).as_str()), (415, "media_unsupported"));

    // A decompression bomb: a few dozen bytes claiming 100 000 × 100 000 pixels.
    let bomb = png_header_only(100_000, 100_000);
    assert!(bomb.len() < 100);
    let (status, v) = upload(&gw, "buyer", &conv, "bomb.png", bomb, "image/png").await;
    assert_eq!((status, code(&v).as_str()), (413, "media_too_large"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100000×100000")
    );

    // Over the file limit by its bytes (a PDF of 300 kB, the limit is 200 kB)…
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(300_000, b' ');
    let (status, v) = upload(&gw, "buyer", &conv, "big.pdf", pdf, "application/pdf").await;
    assert_eq!((status, code(&v).as_str()), (413, "media_too_large"));

    // …and refused from its Content-Length before a byte of the body is sent.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /api/media?conversation={conv}&name=x HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 1000000000\r\n\r\n",
        token("buyer")
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A small PDF is kept as is and served as a download that cannot run as a page.
    let mut pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n".to_vec();
    pdf.extend_from_slice(b"trailer <<>>\n%%EOF\n");
    let (status, v) = upload(
        &gw,
        "buyer",
        &conv,
        "invoice%20%C3%A9t%C3%A9.pdf",
        pdf.clone(),
        "text/html",
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["type"].as_str(), v["mimeType"].as_str()),
        (Some("file"), Some("application/pdf"))
    );
    assert_eq!(v["name"], "invoice été.pdf");
    let (status, h, body) = fetch(&gw, v["url"].as_str().unwrap(), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &pdf[..]);
    assert_eq!(header(&h, "content-type"), "application/pdf");
    assert!(header(&h, "content-disposition").starts_with("attachment;"));
    assert!(header(&h, "content-security-policy").contains("sandbox"));
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");

    // HTML is refused outright; other text that a browser might sniff as a page is a plain
    // text download.
    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    let (status, v) = upload(&gw, "buyer", &conv, "page.html", html, "text/plain").await;
    assert_eq!(
        (status, code(&v).as_str()),
        (415, "media_unsupported"),
        "{v}"
    );
    let sneaky = b"hello\n<script>alert(document.cookie)</script>\n".to_vec();
    let (status, v) = upload(&gw, "buyer", &conv, "notes.txt", sneaky, "text/html").await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["mimeType"], "text/plain");
    let (_, h, _) = fetch(&gw, v["url"].as_str().unwrap(), &[]).await;
    assert_eq!(header(&h, "content-type"), "text/plain");
    assert!(header(&h, "content-disposition").starts_with("attachment;"));
    assert!(header(&h, "content-security-policy").contains("sandbox"));

    // Someone outside the conversation cannot upload into it.
    let (status, _) = upload(
        &gw,
        "stranger",
        &conv,
        "a.pdf",
        b"%PDF-1.7\n".to_vec(),
        "x/y",
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn media_urls_are_signed_cached_and_ranged() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "buyer", "seller", "signed").await.to_string();
    let text: Vec<u8> = (0..5000).map(|i| b'a' + (i % 26) as u8).collect();
    let (status, v) = upload(&gw, "buyer", &conv, "notes.txt", text.clone(), "text/plain").await;
    assert_eq!(status, 201, "{v}");
    let url = v["url"].as_str().unwrap().to_owned();

    // Tampered, unsigned or for another media: 403.
    let (path, query) = url.split_once('?').unwrap();
    let last = query.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_eq!(fetch(&gw, &flipped, &[]).await.0, 403);
    assert_eq!(fetch(&gw, path, &[]).await.0, 403);
    let other = format!("/media/0190f0f0-0000-7000-8000-000000000001/file?{query}");
    assert_eq!(fetch(&gw, &other, &[]).await.0, 403);
    let later = url.replacen("ex=", "ex=f", 1);
    assert_eq!(fetch(&gw, &later, &[]).await.0, 403);

    // ETag and 304.
    let (status, h, body) = fetch(&gw, &url, &[]).await;
    assert_eq!((status, &body[..]), (200, &text[..]));
    let etag = header(&h, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let (status, _, body) = fetch(&gw, &url, &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0));

    // Ranges: a slice, the tail, and one outside the file.
    let (status, h, body) = fetch(&gw, &url, &[("range", "bytes=10-19")]).await;
    assert_eq!((status, &body[..]), (206, &text[10..20]));
    assert_eq!(header(&h, "content-range"), "bytes 10-19/5000");
    let (status, _, body) = fetch(&gw, &url, &[("range", "bytes=-100")]).await;
    assert_eq!((status, &body[..]), (206, &text[4900..]));
    let (status, h, _) = fetch(&gw, &url, &[("range", "bytes=6000-")]).await;
    assert_eq!((status, header(&h, "content-range")), (416, "bytes */5000"));

    // HEAD: the headers, no body.
    let (status, h, body) = raw(gw.addr, "HEAD", &url, None, Vec::new(), &[]).await;
    assert_eq!(
        (status, header(&h, "content-length"), body.len()),
        (200, "5000", 0)
    );

    // Deleting the conversation makes its media unreachable.
    let (status, _, _) = delete(&gw, "buyer", &format!("/api/conversations/{conv}")).await;
    assert_eq!(status, 204);
    assert_eq!(fetch(&gw, &url, &[]).await.0, 404);
}

#[tokio::test]
async fn a_message_carries_only_its_senders_upload_for_that_conversation() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "buyer", "seller", "mine").await;
    let other = direct(&gw, "buyer", "seller2", "elsewhere").await;
    let (status, v) = upload(
        &gw,
        "buyer",
        &conv.to_string(),
        "p.jpg",
        photo(64, 48),
        "image/jpeg",
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let send = |kind: MessageKind, media: MediaRef, conversation| {
        ClientBody::Send(SendMessage {
            conversation,
            client_msg_id: format!("c-{}", uuid::Uuid::new_v4()),
            kind,
            content: String::new(),
            media: Some(media),
        })
    };
    let by_id = |id: &str| MediaRef {
        id: id.into(),
        ..MediaRef::default()
    };
    let mut seller = Client::connect(&gw, "seller").await;
    let mut buyer = Client::connect(&gw, "buyer").await;
    let code_of = |f: parley_proto::ServerFrame| error_code(&f).expect("an error");
    // Someone else's upload; the right upload in another conversation; an unknown id.
    let f = seller
        .request(send(MessageKind::Image, by_id(&id), conv))
        .await;
    assert_eq!(code_of(f), 1201);
    let f = buyer
        .request(send(MessageKind::Image, by_id(&id), other))
        .await;
    assert_eq!(code_of(f), 1201);
    let unknown = uuid::Uuid::now_v7().to_string();
    let f = buyer
        .request(send(MessageKind::Image, by_id(&unknown), conv))
        .await;
    assert_eq!(code_of(f), 1200);
    // An image sent as a file; an outside URL (a tracking pixel).
    let f = buyer
        .request(send(MessageKind::File, by_id(&id), conv))
        .await;
    assert_eq!(code_of(f), 1300);
    let outside = MediaRef {
        url: "https://tracker.example/pixel.gif".into(),
        ..MediaRef::default()
    };
    let f = buyer.request(send(MessageKind::Image, outside, conv)).await;
    assert_eq!(code_of(f), 1300);
    // REST refuses an outside URL the same way.
    let body = r#"{"type":"image","media":{"url":"https://tracker.example/p.gif"}}"#;
    let (status, _, _) = post(
        &gw,
        "buyer",
        &format!("/api/conversations/{conv}/messages"),
        body,
    )
    .await;
    assert_eq!(status, 400);
    // The right sender, conversation and kind: delivered with its URLs.
    let f = buyer
        .request(send(MessageKind::Image, by_id(&id), conv))
        .await;
    assert!(matches!(f.body, ServerBody::Ack(_)), "{:?}", f.body);
    let m = seller.next_message().await;
    let media = m.media.unwrap();
    assert_eq!((media.width, media.height), (64, 48));
    assert!(!media.url.is_empty() && !media.thumb_url.is_empty());
    // The owner reads their record back; nobody else can.
    assert_eq!(get(&gw, "buyer", &format!("/api/media/{id}")).await.0, 200);
    assert_eq!(get(&gw, "seller", &format!("/api/media/{id}")).await.0, 404);
}

#[tokio::test]
async fn real_photos_are_stored_smaller_than_uploaded() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "buyer", "seller", "photos").await.to_string();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media");
    for (file, w, h) in [
        ("chelsea.png", 451, 300),
        ("coffee.png", 600, 400),
        ("rocket.jpg", 640, 427),
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let (status, up) = upload(&gw, "seller", &conv, file, bytes.clone(), "image/x").await;
        assert_eq!(status, 201, "{file}: {up}");
        assert_eq!(
            (up["width"].as_u64(), up["height"].as_u64()),
            (Some(w), Some(h)),
            "{file}"
        );
        let (status, h, display) = fetch(&gw, up["url"].as_str().unwrap(), &[]).await;
        assert_eq!(
            (status, header(&h, "content-type")),
            (200, "image/jpeg"),
            "{file}"
        );
        assert!(image::load_from_memory(&display).is_ok(), "{file}");
        // Never the original bytes, and (these are photos) fewer of them.
        assert_ne!(&display[..], &bytes[..], "{file}");
        if file.ends_with(".png") {
            assert!(
                display.len() * 2 < bytes.len(),
                "{file}: {} of {}",
                display.len(),
                bytes.len()
            );
        }
    }
}

#[tokio::test]
async fn a_voice_message_has_its_length_and_can_be_sought() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "buyer", "seller", "voice").await;
    let mut seller = Client::connect(&gw, "seller").await;
    for (name, bytes, ms) in [
        (
            "note.opus",
            parley_testsupport::media::ogg_opus(4_250),
            4_250,
        ),
        ("note.m4a", parley_testsupport::media::m4a(61_500), 61_500),
    ] {
        let (status, up) =
            upload(&gw, "buyer", &conv.to_string(), name, bytes.clone(), "x/y").await;
        assert_eq!(status, 201, "{name}: {up}");
        assert_eq!(
            (up["type"].as_str(), up["durationMs"].as_u64()),
            (Some("file"), Some(ms)),
            "{name}"
        );
        assert!(
            up["mimeType"].as_str().unwrap().starts_with("audio/"),
            "{up}"
        );
        let id = up["id"].as_str().unwrap();
        let body = format!(r#"{{"type":"file","media":{{"id":"{id}"}}}}"#);
        let path = format!("/api/conversations/{conv}/messages");
        assert_eq!(post(&gw, "buyer", &path, &body).await.0, 201);
        let media = seller.next_message().await.media.unwrap();
        assert_eq!(u64::from(media.duration_ms), ms, "{name}");
        // Players seek with ranges.
        let (status, h, part) = fetch(&gw, &media.url, &[("range", "bytes=4-7")]).await;
        assert_eq!((status, &part[..]), (206, &bytes[4..8]), "{name}");
        assert_eq!(
            header(&h, "content-range"),
            format!("bytes 4-7/{}", bytes.len())
        );
    }
}

/// A cluster shares one bucket: an upload made on node 1 is sent from node 2, and both nodes
/// serve it, from the same objects in the S3 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_any_upload_from_any_node() {
    let redis = RedisServer::start();
    let s3 = S3Server::start();
    let ks = keyspace();
    let args = s3.gateway_args();
    let mut extra: Vec<&str> = args.iter().map(String::as_str).collect();
    extra.extend(["--shards", "1"]);
    let n1 = cluster_node(&redis, &ks, 1, &extra);
    let n2 = cluster_node(&redis, &ks, 2, &extra);
    let conv = direct(&n1, "buyer", "seller", "cluster").await;
    let (status, up) = upload(
        &n1,
        "buyer",
        &conv.to_string(),
        "p.jpg",
        photo(640, 480),
        "image/jpeg",
    )
    .await;
    assert_eq!(status, 201, "{up}");
    let id = up["id"].as_str().unwrap().to_owned();
    let objects = s3.objects();
    assert!(objects.contains(&format!("records/{id}")), "{objects:?}");
    assert_eq!(
        objects.iter().filter(|o| o.starts_with("blobs/")).count(),
        2,
        "display and thumbnail: {objects:?}"
    );

    // Sent from node 2 (which never saw the upload), delivered on node 1.
    let mut seller = Client::connect(&n1, "seller").await;
    let mut buyer = Client::connect(&n2, "buyer").await;
    let f = buyer
        .request(ClientBody::Send(SendMessage {
            conversation: conv,
            client_msg_id: "cluster-photo".into(),
            kind: MessageKind::Image,
            content: String::new(),
            media: Some(MediaRef {
                id: id.clone(),
                ..MediaRef::default()
            }),
        }))
        .await;
    assert!(matches!(f.body, ServerBody::Ack(_)), "{:?}", f.body);
    let media = seller.next_message().await.media.unwrap();
    assert_eq!((media.width, media.height), (640, 480));
    let (s1, h1, b1) = fetch(&n1, &media.url, &[]).await;
    let (s2, h2, b2) = fetch(&n2, &media.url, &[]).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1, b2);
    assert_eq!(header(&h1, "etag"), header(&h2, "etag"));
    assert_eq!(image::guess_format(&b1).unwrap(), ImageFormat::Jpeg);
    let (status, _, thumb) = fetch(&n2, &media.thumb_url, &[("range", "bytes=0-99")]).await;
    assert_eq!((status, thumb.len()), (206, 100));
}

/// With the S3 server gone, an upload and a download fail with a clear 503 within the
/// store's deadline, and work again once it is back; nothing is half stored.
#[tokio::test]
async fn a_dead_store_is_a_clear_error_and_recovers() {
    let s3 = S3Server::start();
    let mut args = s3.gateway_args();
    args.extend(["--media-s3-timeout-ms".into(), "2000".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start(&args);
    let conv = direct(&gw, "buyer", "seller", "outage").await.to_string();
    let (status, v) = upload(
        &gw,
        "buyer",
        &conv,
        "a.txt",
        b"hello".to_vec(),
        "text/plain",
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let url = v["url"].as_str().unwrap().to_owned();

    s3.stop();
    let (status, v) = upload(
        &gw,
        "buyer",
        &conv,
        "b.txt",
        b"again".to_vec(),
        "text/plain",
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "storage_unavailable", "{v}");
    let (status, _, _) = fetch(&gw, &url, &[]).await;
    assert_eq!(status, 503);

    s3.restart();
    let (status, _, body) = fetch(&gw, &url, &[]).await;
    assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    let (status, v) = upload(
        &gw,
        "buyer",
        &conv,
        "b.txt",
        b"again".to_vec(),
        "text/plain",
    )
    .await;
    assert_eq!(status, 201, "{v}");
}

/// A CDN in front of the origin (nginx with proxy_cache): URLs carry its base, the first
/// fetch goes through to the gateway, the second is served from the cache without touching
/// the gateway, and a tampered URL is refused, never cached.
#[tokio::test]
async fn a_caching_proxy_serves_repeat_fetches_from_its_cache() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let gw = Gateway::start(&["--media-base-url", &base]);
    let cdn = CachingProxy::start(port, gw.addr);
    let conv = direct(&gw, "buyer", "seller", "cdn").await.to_string();
    let text: Vec<u8> = (0..20_000).map(|i| b'a' + (i % 26) as u8).collect();
    let (status, v) = upload(&gw, "buyer", &conv, "notes.txt", text.clone(), "text/plain").await;
    assert_eq!(status, 201, "{v}");
    let url = v["url"].as_str().unwrap();
    let path = url.strip_prefix(&base).unwrap_or_else(|| panic!("{url}"));
    let reads = |m: &str| metric_value(m, "parley_media_origin_reads_total");
    let at = cdn.addr();
    let via_cdn = |headers: &'static [(&'static str, &'static str)], path: String| async move {
        request(at, "GET", &path, None, Bytes::new(), headers, WAIT).await
    };

    let before = reads(&metrics(gw.addr).await);
    let (status, h, body) = via_cdn(&[], path.to_owned()).await;
    assert_eq!((status, header(&h, "x-cache-status")), (200, "MISS"));
    assert_eq!(body, text);
    let after_miss = reads(&metrics(gw.addr).await);
    assert_eq!(after_miss, before + 1.0);

    let (status, h, body) = via_cdn(&[], path.to_owned()).await;
    assert_eq!((status, header(&h, "x-cache-status")), (200, "HIT"));
    assert_eq!(body, text);
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    // A range is cut from the cached copy.
    let (status, h, body) = via_cdn(&[("range", "bytes=100-199")], path.to_owned()).await;
    assert_eq!((status, header(&h, "x-cache-status")), (206, "HIT"));
    assert_eq!(&body[..], &text[100..200]);
    assert_eq!(reads(&metrics(gw.addr).await), after_miss);

    let tampered = path.replacen("hm=", "hm=0", 1);
    for _ in 0..2 {
        let (status, h, _) = via_cdn(&[], tampered.clone()).await;
        assert_eq!(status, 403);
        assert_ne!(header(&h, "x-cache-status"), "HIT");
    }
}

/// An upload never sent is removed once its time to live is over (its URL then 404s, and it
/// can no longer be sent); one sent in a message stays.
#[tokio::test]
async fn uploads_never_sent_are_collected() {
    let gw = Gateway::start(&[
        "--media-unsent-ttl-s",
        "10",
        "--media-collect-every-ms",
        "250",
    ]);
    let conv = direct(&gw, "buyer", "seller", "collect").await;
    let c = conv.to_string();
    let (_, unsent) = upload(
        &gw,
        "buyer",
        &c,
        "a.txt",
        b"never sent".to_vec(),
        "text/plain",
    )
    .await;
    let (_, sent) = upload(&gw, "buyer", &c, "b.txt", b"sent".to_vec(), "text/plain").await;
    let mut buyer = Client::connect(&gw, "buyer").await;
    let send = |id: &Value, client_msg_id: &str| {
        ClientBody::Send(SendMessage {
            conversation: conv,
            client_msg_id: client_msg_id.into(),
            kind: MessageKind::File,
            content: String::new(),
            media: Some(MediaRef {
                id: id["id"].as_str().unwrap().into(),
                ..MediaRef::default()
            }),
        })
    };
    let f = buyer.request(send(&sent, "kept")).await;
    assert!(matches!(f.body, ServerBody::Ack(_)), "{:?}", f.body);

    let gone = unsent["url"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT * 6;
    while fetch(&gw, gone, &[]).await.0 != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unsent upload was never collected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, _, body) = fetch(&gw, sent["url"].as_str().unwrap(), &[]).await;
    assert_eq!((status, &body[..]), (200, &b"sent"[..]));
    let f = buyer.request(send(&unsent, "too-late")).await;
    assert!(error_code(&f).is_some(), "{:?}", f.body);
}
