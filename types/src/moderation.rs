//! Trust and safety: what a report keeps, what moderators decide, and where a user stands.

use crate::{ConversationId, Message, MessageId};

/// Who sees a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Visibility {
    /// Every participant (the normal case).
    #[default]
    Everyone,
    /// Only its sender (shadow): the sender sees it as sent on every device; every other
    /// reader gets only its place ([`Message::hidden`]), so seqs stay dense.
    Sender,
}

impl Visibility {
    /// Stable numeric code (the on-disk byte).
    pub fn code(self) -> u8 {
        match self {
            Visibility::Everyone => 0,
            Visibility::Sender => 1,
        }
    }

    /// The visibility of a stable numeric code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Visibility::Everyone),
            1 => Some(Visibility::Sender),
            _ => None,
        }
    }
}

/// Where a user stands with the moderators. The default is a user in good standing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Standing {
    /// Banned: no session, no request (until unbanned).
    pub banned: bool,
    /// Shadow-banned: their new messages are visible only to themselves.
    pub shadowed: bool,
    /// Muted until this Unix ms (0: not muted): sends are refused until then.
    pub muted_until_ms: i64,
    /// Warnings received.
    pub warnings: u32,
    /// When a moderator last changed it (Unix ms; 0: never).
    pub updated_at_ms: i64,
}

impl Standing {
    /// Whether the user may not send at `now_ms` (banned or muted).
    pub fn muted_at(&self, now_ms: i64) -> bool {
        self.banned || self.muted_until_ms > now_ms
    }

    /// This standing after `action` at `now_ms`.
    pub fn after(&self, action: ModAction, now_ms: i64) -> Standing {
        let mut s = self.clone();
        match action {
            ModAction::Dismiss | ModAction::Release => return s,
            ModAction::Warn => s.warnings = s.warnings.saturating_add(1),
            ModAction::Mute { until_ms } => s.muted_until_ms = until_ms,
            ModAction::Unmute => s.muted_until_ms = 0,
            ModAction::Ban => s.banned = true,
            ModAction::Unban => s.banned = false,
            ModAction::Shadow => s.shadowed = true,
            ModAction::Unshadow => s.shadowed = false,
        }
        s.updated_at_ms = now_ms;
        s
    }
}

/// What a moderator does to a user (or, `Dismiss`, to a report only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModAction {
    /// Close the report; nothing happens to the user.
    Dismiss,
    /// Count a warning against the user (they can read their standing).
    Warn,
    /// Refuse the user's sends until this Unix ms.
    Mute {
        until_ms: i64,
    },
    Unmute,
    /// Close the user's sessions everywhere and refuse new ones and every request.
    Ban,
    Unban,
    /// Make the user's new messages visible only to themselves.
    Shadow,
    Unshadow,
    /// Close a report of a held message by sending the message (nothing happens to the user).
    Release,
}

impl ModAction {
    /// Stable numeric code (the on-disk byte).
    pub fn code(self) -> u8 {
        match self {
            ModAction::Dismiss => 0,
            ModAction::Warn => 1,
            ModAction::Mute { .. } => 2,
            ModAction::Unmute => 3,
            ModAction::Ban => 4,
            ModAction::Unban => 5,
            ModAction::Shadow => 6,
            ModAction::Unshadow => 7,
            ModAction::Release => 8,
        }
    }

    /// The action of a code (`until_ms` is used by `Mute` only).
    pub fn from_code(code: u8, until_ms: i64) -> Option<Self> {
        Some(match code {
            0 => ModAction::Dismiss,
            1 => ModAction::Warn,
            2 => ModAction::Mute { until_ms },
            3 => ModAction::Unmute,
            4 => ModAction::Ban,
            5 => ModAction::Unban,
            6 => ModAction::Shadow,
            7 => ModAction::Unshadow,
            8 => ModAction::Release,
            _ => return None,
        })
    }

    /// Lower-case name, as the admin API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ModAction::Dismiss => "dismiss",
            ModAction::Warn => "warn",
            ModAction::Mute { .. } => "mute",
            ModAction::Unmute => "unmute",
            ModAction::Ban => "ban",
            ModAction::Unban => "unban",
            ModAction::Shadow => "shadow",
            ModAction::Unshadow => "unshadow",
            ModAction::Release => "release",
        }
    }

    /// `Mute`'s end (0 for every other action).
    pub fn until_ms(self) -> i64 {
        match self {
            ModAction::Mute { until_ms } => until_ms,
            _ => 0,
        }
    }
}

/// What was there when a report was made, kept with it: deleting the messages or the
/// conversation later does not erase the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReportSnapshot {
    /// The conversation's participants (at most [`MAX_SNAPSHOT_PARTICIPANTS`]).
    pub participants: Vec<String>,
    /// How many participants it had.
    pub participant_count: u32,
    /// The reported message and its neighbours, oldest first (at most
    /// [`MAX_SNAPSHOT_MESSAGES`]); without a message, the conversation's newest messages.
    pub messages: Vec<Message>,
}

/// Most participants a report snapshot keeps.
pub const MAX_SNAPSHOT_PARTICIPANTS: usize = 100;
/// Most messages a report snapshot keeps.
pub const MAX_SNAPSHOT_MESSAGES: usize = 21;

/// A report of abuse, kept for moderators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReport {
    pub reporter: String,
    pub reported_user: String,
    pub conversation: Option<ConversationId>,
    pub message: Option<MessageId>,
    pub reason: String,
    pub now_ms: i64,
    pub snapshot: ReportSnapshot,
    /// A message a moderation rule held: not in the conversation until a moderator releases it.
    pub held: Option<HeldMessage>,
}

impl NewReport {
    /// The stored report this becomes with the `id` its engine assigned (open).
    pub fn into_report(self, id: uuid::Uuid) -> Report {
        Report {
            id,
            reporter: self.reporter,
            reported_user: self.reported_user,
            conversation: self.conversation,
            message: self.message,
            reason: self.reason,
            created_at_ms: self.now_ms,
            snapshot: self.snapshot,
            resolution: None,
            held: self.held,
        }
    }
}

/// A message held for review (kept with its report, not in the conversation yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldMessage {
    pub kind: crate::MessageKind,
    pub content: String,
    pub client_msg_id: String,
    pub created_at_ms: i64,
}

/// A stored report, with its resolution once a moderator acted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Time-ordered (UUID v7): newer reports have greater ids.
    pub id: uuid::Uuid,
    pub reporter: String,
    pub reported_user: String,
    pub conversation: Option<ConversationId>,
    pub message: Option<MessageId>,
    pub reason: String,
    pub created_at_ms: i64,
    pub snapshot: ReportSnapshot,
    pub resolution: Option<Resolution>,
    /// The held message, for reports of held messages.
    pub held: Option<HeldMessage>,
}

/// How a report was closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub action: ModAction,
    pub moderator: String,
    pub note: String,
    pub at_ms: i64,
    /// The audit log entry that closed it.
    pub audit_id: uuid::Uuid,
}

/// Which reports to list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReportFilter {
    /// Only the open ones (not yet resolved).
    pub open_only: bool,
    /// Only those against this user.
    pub reported_user: Option<String>,
}

/// One moderator action, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModerationEntry {
    /// Time-ordered (UUID v7).
    pub id: uuid::Uuid,
    pub at_ms: i64,
    pub moderator: String,
    /// The user acted on.
    pub target: String,
    pub action: ModAction,
    /// The report this resolves, if any.
    pub report: Option<uuid::Uuid>,
    pub note: String,
}

/// Longest note a moderator may attach, characters.
pub const MAX_MODERATION_NOTE_CHARS: usize = 2_000;

/// A time-ordered id (UUID v7) for something made at `now_ms`: report and moderation log ids,
/// so they sort by time (ids made within one millisecond in any order).
pub fn time_ordered_id(now_ms: i64) -> uuid::Uuid {
    let ms = now_ms.max(0) as u64;
    let nanos = ((ms % 1000) * 1_000_000) as u32;
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        nanos,
    ))
}

/// The Unix ms a [`time_ordered_id`] was made at (0 for an id of another version).
pub fn id_time_ms(id: &uuid::Uuid) -> i64 {
    id.get_timestamp().map_or(0, |t| {
        let (s, n) = t.to_unix();
        (s as i64) * 1000 + i64::from(n / 1_000_000)
    })
}
