//! `GET|HEAD /media/:id/:variant?ex=&kid=&hm=`: the origin of media URLs (a CDN in front of
//! it caches them). No token: the URL's signature is the permission. Served immutable with
//! an `ETag` (the bytes' SHA-256), `304` for a matching `If-None-Match`, and one `Range`.
//! Every response carries `nosniff` and a sandboxing CSP, and files are attachments, so an
//! uploaded document can never run as a page of this origin.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use parley_types::ConversationId;

use super::response::{Body, error};
use crate::clock::Now;
use crate::media::{MediaKind, Refused};
use crate::node::Node;

pub(crate) async fn serve(node: &Node, req: Request<Incoming>) -> Response<Body> {
    let now = Now::get();
    let path = req.uri().path();
    let not_found = || error(StatusCode::NOT_FOUND, "not_found", "no such media");
    let Some((id, variant)) = path
        .strip_prefix("/media/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return not_found();
    };
    if !matches!(variant, "display" | "thumb" | "file") {
        return not_found();
    }
    let media = &node.chat.media;
    let expiry = match media.verify(id, variant, req.uri().query(), now.wall_ms) {
        Ok(ex) => ex,
        Err(refused) => {
            let why = match refused {
                Refused::Expired => "this media URL has expired; fetch the message again",
                Refused::Malformed => "this media URL is not signed",
                Refused::UnknownKey | Refused::BadSignature => "this media URL is not valid",
            };
            return error(StatusCode::FORBIDDEN, "forbidden", why);
        }
    };
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        return not_found();
    };
    let record = match media.record(uuid).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::warn!(error = ?e, "media record");
            return unavailable();
        }
    };
    // Deleting a conversation makes its media unreachable here (a CDN may still hold a copy
    // until the URL's expiry).
    match node
        .chat
        .conversations
        .get(ConversationId(record.conversation))
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == parley_proto::ErrorCode::NotFound => return not_found(),
        Err(_) => return unavailable(),
    }
    let Some(rendition) = record.rendition(variant) else {
        return not_found();
    };
    let etag = format!("\"{}\"", rendition.sha256);
    let max_age = expiry.saturating_sub((now.wall_ms.max(0) / 1000) as u64);
    let mut resp = Response::new(Body::default());
    let h = resp.headers_mut();
    let set = |h: &mut hyper::HeaderMap, name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(h, header::ETAG, &etag);
    set(
        h,
        header::CACHE_CONTROL,
        &format!("public, max-age={max_age}, immutable"),
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; img-src 'self' data:; sandbox",
    );
    set(h, header::ACCEPT_RANGES, "bytes");
    set(h, header::CONTENT_TYPE, &rendition.mime_type);
    set(
        h,
        header::CONTENT_DISPOSITION,
        &disposition(record.kind, &record.name, variant),
    );
    let matches_etag = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches_etag {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }
    let len = rendition.size_bytes;
    let range = match req.headers().get(header::RANGE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => match parse_range(v, len) {
            Ok(r) => r,
            Err(()) => {
                let mut resp = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    "the range is outside the media",
                );
                set(
                    resp.headers_mut(),
                    header::CONTENT_RANGE,
                    &format!("bytes */{len}"),
                );
                return resp;
            }
        },
        Some(Err(_)) => None,
    };
    let (start, end) = range.unwrap_or((0, len));
    if let Some((s, e)) = range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        set(
            resp.headers_mut(),
            header::CONTENT_RANGE,
            &format!("bytes {s}-{}/{len}", e - 1),
        );
    }
    set(
        resp.headers_mut(),
        header::CONTENT_LENGTH,
        &(end - start).to_string(),
    );
    if req.method() == Method::HEAD {
        return resp;
    }
    match media.read(rendition, start..end).await {
        Ok(bytes) if bytes.len() as u64 == end - start => {
            node.metrics.media_read(bytes.len() as u64);
            *resp.body_mut() = Body::new(bytes);
            resp
        }
        Ok(_) => {
            tracing::warn!(key = %rendition.key, "media blob shorter than its record");
            unavailable()
        }
        Err(e) => {
            tracing::warn!(error = ?e, "media blob");
            unavailable()
        }
    }
}

fn unavailable() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "media store unavailable",
    )
}

/// Images inline (under their own name), everything else an attachment.
fn disposition(kind: MediaKind, name: &str, variant: &str) -> String {
    let name = match name.is_empty() {
        true => match variant {
            "file" => "file".to_owned(),
            v => format!("{v}.img"),
        },
        false => name.to_owned(),
    };
    let ascii: String = name
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
            true => c,
            false => '_',
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| match b.is_ascii_alphanumeric() || b".-_".contains(&b) {
            true => (b as char).to_string(),
            false => format!("%{b:02X}"),
        })
        .collect();
    let how = match kind {
        MediaKind::Image => "inline",
        MediaKind::File => "attachment",
    };
    format!("{how}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// One `bytes=` range of a `len`-byte body as `[start, end)`; Ok(None) for forms served
/// whole (several ranges); Err for an unsatisfiable or malformed one.
fn parse_range(v: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let spec = v.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len)
        }
        (false, _) => {
            let s: u64 = a.parse().map_err(|_| ())?;
            let e = match b.is_empty() {
                true => len,
                false => b.parse::<u64>().map_err(|_| ())?.saturating_add(1).min(len),
            };
            (s, e)
        }
        (true, true) => return Err(()),
    };
    match range.0 < range.1 {
        true => Ok(Some(range)),
        false => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ok(Some((0, 100))));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(Some((900, 1000))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 1000))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Ok(Some((990, 1000))));
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), Ok(None));
        for bad in [
            "bytes=1000-",
            "bytes=5-2",
            "bytes=-0",
            "bytes=-",
            "items=0-1",
            "bytes=x-1",
        ] {
            assert_eq!(parse_range(bad, 1000), Err(()), "{bad}");
        }
    }

    #[test]
    fn download_names_cannot_break_the_header() {
        let d = disposition(MediaKind::File, "a\"; evil=1.html", "file");
        assert!(
            d.starts_with("attachment; filename=\"a__ evil_1.html\""),
            "{d}"
        );
        let d = disposition(MediaKind::Image, "château.jpg", "display");
        assert!(d.contains("filename*=UTF-8''ch%C3%A2teau.jpg"), "{d}");
    }
}
