//! The session core's whole view of the configuration: its limits and timers, with the
//! defaults as named constants (the configuration's flags default to these).

use std::time::Duration;

/// Largest client frame (whole WebSocket message), bytes.
pub(crate) const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest message, in characters.
pub(crate) const DEFAULT_MAX_MESSAGE_CHARS: usize = 4000;
/// Heartbeat interval told to clients, ms.
pub(crate) const DEFAULT_HEARTBEAT_MS: u64 = 25_000;
/// A session silent this long is closed, ms.
pub(crate) const DEFAULT_IDLE_TIMEOUT_MS: u64 = 75_000;
/// A connection that sends no Hello this long is closed, ms.
pub(crate) const DEFAULT_HELLO_TIMEOUT_MS: u64 = 10_000;
/// A typing state ends by itself after this, ms.
pub(crate) const DEFAULT_TYPING_TTL_MS: u64 = 5_000;
/// Frames per second per session.
pub(crate) const DEFAULT_FRAMES_PER_SEC: f64 = 100.0;
/// Burst above that rate.
pub(crate) const DEFAULT_FRAME_BURST: u32 = 200;
/// Malformed frames tolerated before close.
pub(crate) const DEFAULT_MAX_BAD_FRAMES: u32 = 5;
/// Resume points per Hello.
pub(crate) const DEFAULT_MAX_RESUME_POINTS: usize = 1000;
/// After Goaway, how long a session keeps answering (with `shutting_down`) before it closes, ms.
pub(crate) const DEFAULT_SHUTDOWN_DRAIN_MS: u64 = 1000;

/// Limits and timers of one session.
#[derive(Debug, Clone)]
pub(crate) struct SessionLimits {
    /// Told to clients in Welcome; also the top bits of session ids.
    pub(crate) node_id: u16,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_message_chars: usize,
    pub(crate) heartbeat: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) hello_timeout: Duration,
    pub(crate) typing_ttl: Duration,
    pub(crate) frames_per_sec: f64,
    pub(crate) frame_burst: u32,
    pub(crate) max_bad_frames: u32,
    pub(crate) max_resume_points: usize,
    /// After Goaway: frames still arriving are answered with `shutting_down` for this long,
    /// then the session closes (zero: it closes with the Goaway).
    pub(crate) shutdown_drain: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            node_id: 0,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_message_chars: DEFAULT_MAX_MESSAGE_CHARS,
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            hello_timeout: Duration::from_millis(DEFAULT_HELLO_TIMEOUT_MS),
            typing_ttl: Duration::from_millis(DEFAULT_TYPING_TTL_MS),
            frames_per_sec: DEFAULT_FRAMES_PER_SEC,
            frame_burst: DEFAULT_FRAME_BURST,
            max_bad_frames: DEFAULT_MAX_BAD_FRAMES,
            max_resume_points: DEFAULT_MAX_RESUME_POINTS,
            shutdown_drain: Duration::from_millis(DEFAULT_SHUTDOWN_DRAIN_MS),
        }
    }
}
