//! The web chat page: `web/dist` (the web client's committed build, fixed file names) embedded
//! in the binary and served at `/`, `/index.html`, `/assets/app.js` and `/assets/app.css`
//! (`--web-page`). Nothing is read from disk at run time, so the page always matches the
//! binary that serves its API.
//!
//! The names carry no content hash, so every response is `Cache-Control: no-cache` with a
//! strong `ETag` (the bytes' SHA-256): a browser revalidates each time and gets `304` until
//! the binary changes. The page's CSP lets it load only its own scripts and styles, talk to
//! its own origin (and WebSockets), and show images from anywhere (media URLs may be on a
//! CDN). `frame-ancestors *` on purpose: a marketplace embeds the chat in its own pages.

use std::sync::LazyLock;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::response::Body;

/// The Content-Security-Policy of the HTML page.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob: http: https:; connect-src 'self' ws: wss:; object-src 'none'; \
    base-uri 'none'; frame-ancestors *";

/// One embedded file.
pub(crate) struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    /// `"<SHA-256 hex>"`, computed once.
    etag: HeaderValue,
    /// The HTML page (it gets the CSP).
    html: bool,
}

impl Asset {
    fn new(bytes: &'static [u8], content_type: &'static str, html: bool) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            bytes,
            content_type,
            // Hex digits in quotes: always a valid header value.
            etag: HeaderValue::from_str(&format!("\"{hex}\""))
                .unwrap_or(HeaderValue::from_static("\"\"")),
            html,
        }
    }
}

macro_rules! dist {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist/", $file))
    };
}

static INDEX: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(dist!("index.html"), "text/html; charset=utf-8", true));
static APP_JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        dist!("assets/app.js"),
        "text/javascript; charset=utf-8",
        false,
    )
});
static APP_CSS: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(dist!("assets/app.css"), "text/css; charset=utf-8", false));

/// The embedded file at `path`, if there is one.
pub(crate) fn asset(path: &str) -> Option<&'static Asset> {
    match path {
        "/" | "/index.html" => Some(&INDEX),
        "/assets/app.js" => Some(&APP_JS),
        "/assets/app.css" => Some(&APP_CSS),
        _ => None,
    }
}

/// `asset` as the answer to a GET (or, `head`, a HEAD) with `request` headers: `304` when
/// `If-None-Match` names its ETag.
pub(crate) fn serve(asset: &Asset, request: &HeaderMap, head: bool) -> Response<Body> {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches_etag(v, &asset.etag));
    let body = if fresh || head {
        Body::default()
    } else {
        Body::new(Bytes::from_static(asset.bytes))
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    if fresh {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.bytes.len()));
    resp
}

/// `If-None-Match`: `*`, or a list of tags compared weakly (RFC 9110 13.1.2: `W/"x"` matches
/// `"x"`).
fn matches_etag(if_none_match: &str, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    if_none_match.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_compared_weakly_and_takes_lists() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(matches_etag("\"abc\"", &etag));
        assert!(matches_etag("W/\"abc\"", &etag));
        assert!(matches_etag("\"x\", \"abc\"", &etag));
        assert!(matches_etag("*", &etag));
        assert!(!matches_etag("\"abcd\"", &etag));
        assert!(!matches_etag("abc", &etag));
    }

    #[test]
    fn each_file_has_its_type_and_a_strong_etag() {
        for (path, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/index.html", "text/html; charset=utf-8"),
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/app.css", "text/css; charset=utf-8"),
        ] {
            let a = asset(path).expect(path);
            assert_eq!(a.content_type, ty);
            let tag = a.etag.to_str().expect("ascii");
            assert!(
                tag.len() == 66 && tag.starts_with('"') && tag.ends_with('"'),
                "{tag}"
            );
        }
        assert!(asset("/assets/other.js").is_none());
        assert!(asset("/index.htm").is_none());
    }
}
