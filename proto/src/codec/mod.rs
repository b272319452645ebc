//! FlatBuffers frames to and from the plain types of [`crate::frames`]: the only place (besides
//! `parley-schema`) that knows the wire format.
//!
//! Two roles, each behind a feature (as hyper's `cfg_server!` / `cfg_client!`): `server`
//! decodes client frames and encodes server frames ([`server`]); `client` does the opposite
//! ([`client`]). Decoding runs the FlatBuffers verifier with explicit limits before touching a
//! field, so malformed or hostile input becomes a [`DecodeError`], never a panic. Encoding
//! reuses one builder per thread; a fan-out event is encoded once and its `Bytes` shared by
//! every recipient.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;

use std::cell::RefCell;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, VerifierOptions, WIPOffset};
use parley_schema::wire as w;
use parley_types::{ConversationId, MediaRef, MessageId, MessageKind};

/// Participants listed per conversation in list pages and updates (the count is always exact).
pub const MAX_LISTED_PARTICIPANTS: usize = 100;

/// Why a frame could not be decoded. The text is safe to send back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not a valid flatbuffer: {0}")]
    Invalid(String),
    #[error("frame has no body or an unknown body type")]
    UnknownBody,
    #[error("{0}")]
    BadField(&'static str),
}

/// Verifier limits for one direction of frames.
#[derive(Clone, Debug)]
pub struct DecodeLimits {
    opts: VerifierOptions,
}

impl DecodeLimits {
    /// Limits for client frames of at most `max_frame_bytes` carrying at most `max_resume`
    /// resume points (the frame with the most tables).
    pub fn client(max_frame_bytes: usize, max_resume: usize) -> Self {
        Self {
            opts: VerifierOptions {
                max_depth: 8,
                max_tables: max_resume + 16,
                max_apparent_size: max_frame_bytes.saturating_mul(2),
                ignore_missing_null_terminator: false,
            },
        }
    }

    /// Limits for server frames read by clients (tests, load test): pages are bigger.
    pub fn server() -> Self {
        Self {
            opts: VerifierOptions {
                max_depth: 16,
                max_tables: 1_000_000,
                max_apparent_size: 256 << 20,
                ignore_missing_null_terminator: false,
            },
        }
    }

    fn verifier(&self) -> &VerifierOptions {
        &self.opts
    }
}

// ------------------------------------------------------------------------------ both roles

fn conv(u: &w::Uuid) -> ConversationId {
    ConversationId::from_halves(u.hi(), u.lo())
}

fn uuid(c: ConversationId) -> w::Uuid {
    let (hi, lo) = c.halves();
    w::Uuid::new(hi, lo)
}

fn kind_of(k: w::MessageKind) -> Result<MessageKind, DecodeError> {
    MessageKind::from_code(k.0).ok_or(DecodeError::BadField("unknown message kind"))
}

fn media_of(m: Option<w::MediaRef<'_>>) -> Option<MediaRef> {
    m.map(|m| MediaRef {
        url: m.url().unwrap_or_default().to_owned(),
        mime_type: m.mime_type().unwrap_or_default().to_owned(),
        size_bytes: m.size_bytes(),
        name: m.name().unwrap_or_default().to_owned(),
        width: m.width(),
        height: m.height(),
        id: m.media_id().unwrap_or_default().to_owned(),
        thumb_width: m.thumbnail_width(),
        thumb_height: m.thumbnail_height(),
        placeholder: m.placeholder().unwrap_or_default().to_owned(),
        duration_ms: m.duration_ms(),
        thumb_url: m.thumbnail_url().unwrap_or_default().to_owned(),
    })
}

fn opt_id(id: u64) -> Option<MessageId> {
    (id != 0).then_some(MessageId(id))
}

thread_local! {
    static BUILDER: RefCell<FlatBufferBuilder<'static>> =
        RefCell::new(FlatBufferBuilder::with_capacity(1024));
}

type Fbb = FlatBufferBuilder<'static>;

/// Runs `build` on this thread's builder and copies the finished frame out.
fn with_builder(build: impl FnOnce(&mut Fbb)) -> Bytes {
    BUILDER.with(|cell| {
        let mut fbb = cell.borrow_mut();
        fbb.reset();
        build(&mut fbb);
        let out = Bytes::copy_from_slice(fbb.finished_data());
        // Keep the scratch buffer from growing without bound after one huge page.
        if fbb.unfinished_data().len() > 1 << 20 {
            *fbb = FlatBufferBuilder::with_capacity(1024);
        }
        out
    })
}

fn opt_str<'a>(fbb: &mut Fbb, s: &str) -> Option<WIPOffset<&'a str>> {
    (!s.is_empty()).then(|| fbb.create_string(s))
}

fn media<'a>(fbb: &mut Fbb, m: &MediaRef) -> WIPOffset<w::MediaRef<'a>> {
    let url = opt_str(fbb, &m.url);
    let mime_type = opt_str(fbb, &m.mime_type);
    let name = opt_str(fbb, &m.name);
    let media_id = opt_str(fbb, &m.id);
    let thumbnail_url = opt_str(fbb, &m.thumb_url);
    let placeholder = opt_str(fbb, &m.placeholder);
    w::MediaRef::create(
        fbb,
        &w::MediaRefArgs {
            url,
            mime_type,
            size_bytes: m.size_bytes,
            name,
            width: m.width,
            height: m.height,
            media_id,
            thumbnail_url,
            thumbnail_width: m.thumb_width,
            thumbnail_height: m.thumb_height,
            placeholder,
            duration_ms: m.duration_ms,
        },
    )
}

#[cfg(all(test, feature = "client", feature = "server"))]
mod tests;
