//! Media: uploads typed by their bytes, images re-encoded without their metadata, files kept
//! as they are, a record per upload, the blob store and signed URLs. A leaf: bytes in,
//! records and URLs out. The transport serves uploads and downloads; the chat checks a
//! message's media id here and has its URLs filled for each reader.
//!
//! Keys in the store: `blobs/<sha256 of the bytes>` (content-addressed: the same rendition
//! uploaded twice is stored once), `records/<media id>` (the record, JSON) and
//! `attached/<media id>` (empty: the upload is in a message). The blobs are written before
//! the record, so a record never names a missing blob. Uploads never sent are collected
//! after `unsent_ttl_ms` ([`Media::collect`]).

mod audio;
mod kinds;
mod picture;
pub(crate) mod s3;
mod sign;
pub(crate) mod store;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use parley_proto::ErrorCode;
use parley_types::{ConversationId, MediaRef};
use ring::digest;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

pub(crate) use kinds::DEFAULT_FILE_TYPES;
pub(crate) use picture::ImageRules;
pub(crate) use sign::Refused;
use sign::UrlSigner;
use store::MediaStore;

/// Largest image upload, bytes.
pub(crate) const DEFAULT_MAX_IMAGE_BYTES: usize = 10 << 20;
/// Largest file upload, bytes.
pub(crate) const DEFAULT_MAX_FILE_BYTES: usize = 25 << 20;
/// Images over this many pixels are refused before they are decoded.
pub(crate) const DEFAULT_MAX_IMAGE_PIXELS: u64 = 50_000_000;
/// Images decoded at once on a node (unless configured: `--media-image-workers`).
pub(crate) const DEFAULT_IMAGE_CONCURRENCY: usize = 2;
/// Uploads whose bodies a node holds at once.
pub(crate) const DEFAULT_UPLOAD_CONCURRENCY: usize = 16;
/// A media URL is good for at least this long, s…
pub(crate) const DEFAULT_URL_TTL_S: u64 = 24 * 3600;
/// …and at most this much longer (readers within one bucket share a URL), s.
pub(crate) const DEFAULT_URL_BUCKET_S: u64 = 3600;
/// Longest an upload waits for an image decoder before it is refused as busy.
const IMAGE_QUEUE_WAIT: Duration = Duration::from_secs(30);
/// An upload never sent in a message is collected this long after it was made, s.
pub(crate) const DEFAULT_UNSENT_TTL_S: u64 = 24 * 3600;
/// How often a node looks for uploads to collect, s.
pub(crate) const DEFAULT_COLLECT_EVERY_S: u64 = 3600;
/// Records kept in memory (they never change).
const RECORD_CACHE: usize = 10_000;

/// How uploads are checked, rendered and linked.
#[derive(Debug, Clone)]
pub(crate) struct MediaConfig {
    pub(crate) max_image_bytes: usize,
    pub(crate) max_file_bytes: usize,
    /// MIME types of files accepted (images are always JPEG, PNG, WebP and GIF).
    pub(crate) file_types: Vec<String>,
    pub(crate) images: ImageRules,
    pub(crate) image_concurrency: usize,
    pub(crate) upload_concurrency: usize,
    /// (key id, key) pairs that sign URLs: the first signs, all verify.
    pub(crate) url_keys: Vec<(String, Vec<u8>)>,
    pub(crate) url_ttl_s: u64,
    pub(crate) url_bucket_s: u64,
    /// Prefix of media URLs, e.g. a CDN whose origin is this gateway ("" = relative).
    pub(crate) base_url: String,
    /// Uploads never sent are collected this long after they were made, ms.
    pub(crate) unsent_ttl_ms: i64,
}

impl MediaConfig {
    /// The defaults, with URLs signed by `url_keys` ((key id, key) pairs; the first signs).
    pub(crate) fn with_keys(url_keys: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            file_types: DEFAULT_FILE_TYPES.iter().map(|s| s.to_string()).collect(),
            images: ImageRules {
                max_pixels: DEFAULT_MAX_IMAGE_PIXELS,
                display_px: 2048,
                thumb_px: 320,
                display_quality: 82,
                thumb_quality: 70,
            },
            image_concurrency: DEFAULT_IMAGE_CONCURRENCY,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            url_keys,
            url_ttl_s: DEFAULT_URL_TTL_S,
            url_bucket_s: DEFAULT_URL_BUCKET_S,
            base_url: String::new(),
            unsent_ttl_ms: DEFAULT_UNSENT_TTL_S as i64 * 1000,
        }
    }

    /// How long after its upload an upload may still be sent: its time to live less a margin,
    /// so a collector never removes an upload a send is attaching at that moment.
    fn send_window_ms(&self) -> i64 {
        let ttl = self.unsent_ttl_ms.max(1);
        ttl - (ttl / 10).min(5 * 60 * 1000)
    }

    /// The largest upload of any type.
    pub(crate) fn max_upload_bytes(&self) -> usize {
        self.max_image_bytes.max(self.max_file_bytes)
    }
}

/// Image (rendered by the server) or file (kept as is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MediaKind {
    Image,
    File,
}

/// One stored form of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rendition {
    /// `display` or `thumb` (images), `file` (files).
    pub(crate) variant: String,
    /// The blob's key in the store.
    pub(crate) key: String,
    pub(crate) mime_type: String,
    pub(crate) size_bytes: u64,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Hex SHA-256 of the bytes (also the `ETag`).
    pub(crate) sha256: String,
}

/// What the server knows of one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MediaRecord {
    pub(crate) id: Uuid,
    pub(crate) owner: String,
    /// The conversation it was uploaded for (its id).
    pub(crate) conversation: Uuid,
    pub(crate) kind: MediaKind,
    /// The file name the uploader gave (shown, and used for downloads).
    pub(crate) name: String,
    /// Bytes and hex SHA-256 of what was uploaded (for images: not kept).
    pub(crate) upload_bytes: u64,
    pub(crate) upload_sha256: String,
    /// Images: the upload's size, pixels, upright.
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) placeholder: String,
    /// Audio (and MP4): the length its container states, ms (0: unknown).
    #[serde(default)]
    pub(crate) duration_ms: u32,
    pub(crate) renditions: Vec<Rendition>,
    pub(crate) created_ms: i64,
}

impl MediaRecord {
    pub(crate) fn rendition(&self, variant: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.variant == variant)
    }

    /// The rendition a message shows: display (images) or the file itself.
    fn main(&self) -> Option<&Rendition> {
        self.renditions.first()
    }
}

/// Why an upload, a lookup or a download failed.
#[derive(Debug)]
pub(crate) enum MediaError {
    /// The bytes are not an accepted type.
    Unsupported(String),
    /// Over a byte or pixel limit.
    TooLarge(String),
    /// Not a valid upload (undecodable image, bad name, …).
    Invalid(String),
    NotFound,
    /// Not the caller's, or not for that conversation.
    Forbidden(&'static str),
    /// Too many uploads at once on this node: try again shortly.
    Busy,
    /// The store failed.
    Store(std::io::Error),
}

impl MediaError {
    /// The code and message a client gets (a store failure is logged here, not shown).
    pub(crate) fn into_client(self) -> (ErrorCode, String) {
        match self {
            MediaError::Unsupported(why) => (ErrorCode::MediaUnsupported, why),
            MediaError::TooLarge(why) => (ErrorCode::MediaTooLarge, why),
            MediaError::Invalid(why) => (ErrorCode::Invalid, why),
            MediaError::NotFound => (ErrorCode::NotFound, "no such media".into()),
            MediaError::Forbidden(why) => (ErrorCode::Forbidden, why.into()),
            MediaError::Busy => (
                ErrorCode::StorageUnavailable,
                "too many uploads on this node right now; try again shortly".into(),
            ),
            MediaError::Store(e) => {
                tracing::warn!(error = %e, "media store");
                (
                    ErrorCode::StorageUnavailable,
                    "media store unavailable".into(),
                )
            }
        }
    }
}

impl From<std::io::Error> for MediaError {
    fn from(e: std::io::Error) -> Self {
        MediaError::Store(e)
    }
}

/// An upload as the transport hands it over.
pub(crate) struct Upload {
    pub(crate) owner: String,
    pub(crate) conversation: ConversationId,
    pub(crate) name: String,
    pub(crate) bytes: Bytes,
    pub(crate) now_ms: i64,
}

/// What an upload cost (for metrics).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_stored: u64,
    /// Time an image took on the blocking pool (decode, resize, encode).
    pub(crate) processing: Duration,
}

pub(crate) struct Media {
    store: Arc<dyn MediaStore>,
    signer: UrlSigner,
    config: MediaConfig,
    decoders: Arc<Semaphore>,
    images: workers::ImageWorkers,
    uploads: Arc<Semaphore>,
    records: DashMap<Uuid, Arc<MediaRecord>>,
    /// Uploads known to be in a message (their `attached/` marker is stored).
    attached: DashMap<Uuid, ()>,
}

/// What one collection removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Collected {
    pub(crate) uploads: usize,
    pub(crate) blobs: usize,
}

impl Media {
    /// Fails only if the image worker threads cannot be started.
    pub(crate) fn new(store: Arc<dyn MediaStore>, config: MediaConfig) -> std::io::Result<Self> {
        Ok(Self {
            store,
            signer: UrlSigner::new(
                &config.url_keys,
                config.url_ttl_s,
                config.url_bucket_s,
                &config.base_url,
            ),
            decoders: Arc::new(Semaphore::new(config.image_concurrency.max(1))),
            images: workers::ImageWorkers::start(config.image_concurrency.max(1))?,
            uploads: Arc::new(Semaphore::new(config.upload_concurrency.max(1))),
            config,
            records: DashMap::new(),
            attached: DashMap::new(),
        })
    }

    /// Media in a directory (the embedded engine).
    pub(crate) fn on_disk(dir: std::path::PathBuf, config: MediaConfig) -> std::io::Result<Self> {
        Self::new(Arc::new(store::FsStore::open(dir)?), config)
    }

    pub(crate) fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// A place for one upload's body, or Busy when the node holds as many as it allows (taken
    /// before the body is read, so bodies in memory are bounded).
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, MediaError> {
        self.uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| MediaError::Busy)
    }

    /// Checks, renders and stores an upload.
    pub(crate) async fn upload(&self, up: Upload) -> Result<(Arc<MediaRecord>, Cost), MediaError> {
        let name = clean_name(&up.name)?;
        let sniffed =
            kinds::sniff(&up.bytes, &self.config.file_types).map_err(MediaError::Unsupported)?;
        let limit = match sniffed {
            kinds::Sniffed::Image(_) => self.config.max_image_bytes,
            kinds::Sniffed::File { .. } => self.config.max_file_bytes,
        };
        if up.bytes.len() > limit {
            return Err(MediaError::TooLarge(format!(
                "the upload is {} bytes; at most {limit} are accepted for its type",
                up.bytes.len()
            )));
        }
        let upload_sha256 = sha256(&up.bytes);
        let mut record = MediaRecord {
            id: Uuid::now_v7(),
            owner: up.owner,
            conversation: up.conversation.0,
            kind: MediaKind::File,
            name,
            upload_bytes: up.bytes.len() as u64,
            upload_sha256,
            width: 0,
            height: 0,
            placeholder: String::new(),
            duration_ms: 0,
            renditions: Vec::new(),
            created_ms: up.now_ms,
        };
        let mut cost = Cost {
            bytes_in: up.bytes.len() as u64,
            ..Cost::default()
        };
        let mut blobs = Vec::new();
        match sniffed {
            kinds::Sniffed::Image(format) => {
                let _permit = tokio::time::timeout(IMAGE_QUEUE_WAIT, self.decoders.acquire())
                    .await
                    .map_err(|_| MediaError::Busy)?
                    .map_err(|_| MediaError::Busy)?;
                let rules = self.config.images.clone();
                let bytes = up.bytes.clone();
                let (processed, took) = self
                    .images
                    .run(move || {
                        let start = std::time::Instant::now();
                        let out = picture::process(&bytes, format, &rules);
                        (out, start.elapsed())
                    })
                    .await
                    .ok_or_else(|| {
                        MediaError::Invalid("the image cannot be decoded (decoder failed)".into())
                    })?;
                cost.processing = took;
                let p = processed.map_err(|e| match e {
                    picture::ImageError::TooLarge(why) => MediaError::TooLarge(why),
                    picture::ImageError::Undecodable(why) => {
                        MediaError::Invalid(format!("the image cannot be decoded: {why}"))
                    }
                })?;
                record.kind = MediaKind::Image;
                (record.width, record.height) = p.original;
                record.placeholder = p.placeholder;
                for (variant, e) in [("display", p.display), ("thumb", p.thumb)] {
                    let r = rendition(variant, e.mime, e.width, e.height, &e.bytes);
                    blobs.push((r.key.clone(), Bytes::from(e.bytes)));
                    record.renditions.push(r);
                }
            }
            kinds::Sniffed::File { mime, .. } => {
                if mime.starts_with("audio/") || mime.starts_with("video/") {
                    record.duration_ms = audio::duration_ms(&up.bytes).unwrap_or(0);
                }
                let mut r = rendition("file", mime, 0, 0, &up.bytes);
                r.sha256 = record.upload_sha256.clone();
                blobs.push((r.key.clone(), up.bytes));
                record.renditions.push(r);
            }
        }
        for (key, bytes) in blobs {
            cost.bytes_stored += bytes.len() as u64;
            self.store.put(&key, bytes).await?;
        }
        let json = serde_json::to_vec(&record)
            .map_err(|e| MediaError::Store(std::io::Error::other(e.to_string())))?;
        self.store.put(&record_key(record.id), json.into()).await?;
        let record = Arc::new(record);
        self.remember(record.clone());
        Ok((record, cost))
    }

    /// The record of `id`, if there is one.
    pub(crate) async fn record(&self, id: Uuid) -> Result<Option<Arc<MediaRecord>>, MediaError> {
        if let Some(r) = self.records.get(&id) {
            return Ok(Some(r.clone()));
        }
        let Some(json) = self.store.read(&record_key(id), 0..u64::MAX).await? else {
            return Ok(None);
        };
        let record: MediaRecord = serde_json::from_slice(&json).map_err(|e| {
            MediaError::Store(std::io::Error::other(format!("media record {id}: {e}")))
        })?;
        let record = Arc::new(record);
        self.remember(record.clone());
        Ok(Some(record))
    }

    /// Whether `id` is in a message already (its marker is stored).
    async fn is_attached(&self, id: Uuid) -> bool {
        if self.attached.contains_key(&id) {
            return true;
        }
        matches!(self.store.read(&attached_key(id), 0..0).await, Ok(Some(_)))
    }

    /// Marks upload `id` as sent in a message, so it is never collected. Called once its
    /// message is checked, before the message is stored.
    pub(crate) async fn attach(&self, id: &str) -> Result<(), MediaError> {
        let id: Uuid = id.parse().map_err(|_| MediaError::NotFound)?;
        if self.attached.contains_key(&id) {
            return Ok(());
        }
        self.store.put(&attached_key(id), Bytes::new()).await?;
        if self.attached.len() >= RECORD_CACHE {
            self.attached.clear();
        }
        self.attached.insert(id, ());
        Ok(())
    }

    /// Removes the uploads made before `now_ms` less the time to live that no message
    /// carries, then the blobs no remaining upload names and nobody wrote within the time to
    /// live (a blob is rewritten by every upload that produces it, so one being uploaded
    /// again right now is kept). Every node of a cluster may run it: removals are idempotent.
    pub(crate) async fn collect(&self, now_ms: i64) -> Result<Collected, MediaError> {
        let ttl = self.config.unsent_ttl_ms.max(1);
        let attached: std::collections::HashSet<String> = self
            .store
            .list("attached/")
            .await?
            .into_iter()
            .filter_map(|l| l.key.strip_prefix("attached/").map(str::to_owned))
            .collect();
        let mut live = std::collections::HashSet::new();
        let mut out = Collected::default();
        for listed in self.store.list("records/").await? {
            let Some(id) = listed
                .key
                .strip_prefix("records/")
                .and_then(|i| i.parse::<Uuid>().ok())
            else {
                continue;
            };
            let Some(record) = self.record(id).await? else {
                continue;
            };
            let sent = attached.contains(&id.to_string()) || self.attached.contains_key(&id);
            if sent || record.created_ms + ttl > now_ms {
                live.extend(record.renditions.iter().map(|r| r.key.clone()));
                continue;
            }
            self.store.delete(&listed.key).await?;
            self.records.remove(&id);
            out.uploads += 1;
        }
        for blob in self.store.list("blobs/").await? {
            if !live.contains(&blob.key) && blob.modified_ms + ttl <= now_ms {
                self.store.delete(&blob.key).await?;
                out.blobs += 1;
            }
        }
        Ok(out)
    }

    /// Runs [`Media::collect`] every `every` until the task is dropped; `now` is the wall
    /// clock in Unix ms.
    pub(crate) async fn collect_forever(self: Arc<Self>, every: Duration, now: fn() -> i64) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.collect(now()).await {
                Ok(c) if c == Collected::default() => {}
                Ok(c) => tracing::info!(
                    uploads = c.uploads,
                    blobs = c.blobs,
                    "collected uploads never sent"
                ),
                Err(e) => tracing::warn!(error = ?e, "collecting uploads never sent"),
            }
        }
    }

    fn remember(&self, record: Arc<MediaRecord>) {
        if self.records.len() >= RECORD_CACHE {
            self.records.clear();
        }
        self.records.insert(record.id, record);
    }

    /// The media a message by `sender` in `conversation` carries, from its id: only the
    /// uploader may send it, only in the conversation it was uploaded for.
    pub(crate) async fn for_message(
        &self,
        id: &str,
        sender: &str,
        conversation: ConversationId,
        now_ms: i64,
    ) -> Result<(MediaKind, MediaRef), MediaError> {
        let id: Uuid = id.parse().map_err(|_| MediaError::NotFound)?;
        let record = self.record(id).await?.ok_or(MediaError::NotFound)?;
        if record.owner != sender {
            return Err(MediaError::Forbidden(
                "that media was uploaded by someone else",
            ));
        }
        if record.conversation != conversation.0 {
            return Err(MediaError::Forbidden(
                "that media was uploaded for another conversation",
            ));
        }
        if now_ms > record.created_ms + self.config.send_window_ms() && !self.is_attached(id).await
        {
            return Err(MediaError::Invalid(
                "that upload was never sent and has expired: upload it again".into(),
            ));
        }
        let main = record.main().ok_or(MediaError::NotFound)?;
        let thumb = record.rendition("thumb");
        let media = MediaRef {
            mime_type: main.mime_type.clone(),
            size_bytes: main.size_bytes,
            name: record.name.clone(),
            width: main.width,
            height: main.height,
            id: record.id.to_string(),
            thumb_width: thumb.map_or(0, |t| t.width),
            thumb_height: thumb.map_or(0, |t| t.height),
            placeholder: record.placeholder.clone(),
            duration_ms: record.duration_ms,
            ..MediaRef::default()
        };
        Ok((record.kind, media))
    }

    /// Fills an upload's signed URLs for a reader at `now_ms` (outside URLs stay).
    pub(crate) fn present(&self, m: &mut MediaRef, now_ms: i64) {
        if m.id.is_empty() {
            return;
        }
        let now_s = (now_ms.max(0) / 1000) as u64;
        let main = match m.mime_type.starts_with("image/") && m.thumb_width > 0 {
            true => "display",
            false => "file",
        };
        m.url = self.signer.url(&m.id, main, now_s);
        if m.thumb_width > 0 {
            m.thumb_url = self.signer.url(&m.id, "thumb", now_s);
        }
    }

    /// [`Media::present`] for a message's media, if it has any.
    pub(crate) fn show(&self, m: &mut parley_types::Message, now_ms: i64) {
        if let Some(media) = &mut m.media {
            self.present(media, now_ms);
        }
    }

    /// The URL of a record's `variant` (upload responses).
    pub(crate) fn url(&self, id: Uuid, variant: &str, now_ms: i64) -> String {
        self.signer
            .url(&id.to_string(), variant, (now_ms.max(0) / 1000) as u64)
    }

    /// Checks a download URL's signature; Ok gives its expiry (Unix s).
    pub(crate) fn verify(
        &self,
        id: &str,
        variant: &str,
        query: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, Refused> {
        self.signer
            .verify(id, variant, query, (now_ms.max(0) / 1000) as u64)
    }

    /// Bytes `range` of a rendition.
    pub(crate) async fn read(
        &self,
        rendition: &Rendition,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, MediaError> {
        self.store
            .read(&rendition.key, range)
            .await?
            .ok_or(MediaError::NotFound)
    }
}

fn record_key(id: Uuid) -> String {
    format!("records/{id}")
}

fn attached_key(id: Uuid) -> String {
    format!("attached/{id}")
}

fn sha256(bytes: &[u8]) -> String {
    sign::to_hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn rendition(variant: &str, mime: &str, width: u32, height: u32, bytes: &[u8]) -> Rendition {
    let sha = sha256(bytes);
    Rendition {
        variant: variant.into(),
        key: format!("blobs/{}/{sha}", &sha[..2]),
        mime_type: mime.into(),
        size_bytes: bytes.len() as u64,
        width,
        height,
        sha256: sha,
    }
}

/// The uploader's file name, shown to readers and offered on download: at most 255 bytes, no
/// path, no control or bidi-override characters.
fn clean_name(name: &str) -> Result<String, MediaError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.len() > 255 {
        return Err(MediaError::Invalid("name is longer than 255 bytes".into()));
    }
    if base
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(MediaError::Invalid(
            "name has control or direction-override characters".into(),
        ));
    }
    Ok(base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    async fn upload(media: &Media, conv: ConversationId, text: &str, now_ms: i64) -> Uuid {
        let up = Upload {
            owner: "buyer".into(),
            conversation: conv,
            name: "note.txt".into(),
            bytes: Bytes::from(text.to_owned()),
            now_ms,
        };
        media.upload(up).await.unwrap().0.id
    }

    /// Uploads never sent go after their time to live, with the blobs only they named; sent
    /// ones stay, and so does a blob another upload still names.
    #[tokio::test]
    async fn uploads_never_sent_are_collected_after_their_time_to_live() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MediaConfig::with_keys(vec![("0".into(), vec![7; 32])]);
        config.unsent_ttl_ms = 60_000;
        let media = Media::on_disk(dir.path().to_owned(), config).unwrap();
        let conv = ConversationId(Uuid::now_v7());
        let t0 = wall_ms();
        let unsent = upload(&media, conv, "never sent", t0).await;
        let sent = upload(&media, conv, "sent in a message", t0).await;
        // The same bytes as the sent one: one blob, named by two records.
        let twin = upload(&media, conv, "sent in a message", t0).await;
        let blobs = |d: &std::path::Path| {
            let mut n = 0;
            for e in walkdir(d.join("blobs")) {
                n += usize::from(e.is_file());
            }
            n
        };
        assert_eq!(blobs(dir.path()), 2);
        media
            .for_message(&sent.to_string(), "buyer", conv, t0 + 1000)
            .await
            .unwrap();
        media.attach(&sent.to_string()).await.unwrap();

        // Within the time to live nothing goes.
        let c = media.collect(t0 + 59_000).await.unwrap();
        assert_eq!(c, Collected::default());
        // Past it (and past the blobs' write time), the unsent ones go.
        let later = wall_ms() + 61_000;
        let c = media.collect(later).await.unwrap();
        assert_eq!(
            c,
            Collected {
                uploads: 2,
                blobs: 1
            }
        );
        assert!(media.record(unsent).await.unwrap().is_none());
        assert!(media.record(twin).await.unwrap().is_none());
        let kept = media
            .record(sent)
            .await
            .unwrap()
            .expect("the sent upload stays");
        let main = kept.main().unwrap();
        assert_eq!(
            &media.read(main, 0..u64::MAX).await.unwrap()[..],
            b"sent in a message"
        );
        assert_eq!(blobs(dir.path()), 1);
        // Nothing is left to collect; an expired upload can no longer be sent.
        assert_eq!(media.collect(later).await.unwrap(), Collected::default());
        let late = upload(&media, conv, "late", t0).await;
        let refused = media
            .for_message(&late.to_string(), "buyer", conv, t0 + 59_000)
            .await;
        assert!(
            matches!(refused, Err(MediaError::Invalid(_))),
            "{refused:?}"
        );
        // …unless it was sent before (it is kept for good).
        let again = media
            .for_message(&sent.to_string(), "buyer", conv, t0 + 10_000_000)
            .await;
        assert!(again.is_ok());
    }

    fn walkdir(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                out.push(p);
            }
        }
        out
    }
}
