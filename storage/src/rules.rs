//! Rules every engine applies the same way (the conformance suite checks them), in one place.

use std::collections::HashSet;

use parley_types::rules::{
    MAX_CLIENT_MSG_ID_BYTES, MAX_LISTING_ID_BYTES, MAX_TITLE_CHARS, MAX_USER_ID_BYTES,
};
use parley_types::{
    Conversation, ListCursor, MAX_MODERATION_NOTE_CHARS, ModerationEntry, NewMessage, NewReport,
    Report, ReportFilter, Resolution,
};

use crate::error::{Result, StorageError};

/// The id lengths of `parley_types::rules`, checked again by every engine before it builds a
/// key: a key an engine cannot store (fjall and CQL stop at 64 KiB) is an error, never a panic
/// or a silently cut key. (The character rules are the gateway's, at the edge.)
pub(crate) fn users<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for id in ids {
        if id.is_empty() || id.len() > MAX_USER_ID_BYTES {
            return Err(StorageError::Invalid("a user id must be 1 to 128 bytes"));
        }
    }
    Ok(())
}

/// Checks a listing id's length.
pub(crate) fn listing(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_LISTING_ID_BYTES {
        return Err(StorageError::Invalid("a listing id must be 1 to 256 bytes"));
    }
    Ok(())
}

/// Checks a message's sender, kind and client_msg_id.
pub(crate) fn message(m: &NewMessage) -> Result<()> {
    users([m.sender.as_str()])?;
    if m.kind == parley_types::MessageKind::Hidden {
        return Err(StorageError::Invalid(
            "hidden is not a kind of message to store",
        ));
    }
    if m.client_msg_id.is_empty() || m.client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return Err(StorageError::Invalid(
            "a client_msg_id must be 1 to 64 bytes",
        ));
    }
    Ok(())
}

/// Checks a group's creator, participants and title.
pub(crate) fn group(creator: &str, participants: &[String], title: &str) -> Result<()> {
    users(std::iter::once(creator).chain(participants.iter().map(String::as_str)))?;
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(StorageError::Invalid("a title is at most 200 characters"));
    }
    Ok(())
}

/// Checks a report's users (its reason is a value, not a key).
pub(crate) fn report(r: &NewReport) -> Result<()> {
    users([r.reporter.as_str(), r.reported_user.as_str()])
}

/// Checks a moderation entry's users and note.
pub(crate) fn moderation(e: &ModerationEntry) -> Result<()> {
    users([e.moderator.as_str(), e.target.as_str()])?;
    if e.note.chars().count() > MAX_MODERATION_NOTE_CHARS {
        return Err(StorageError::Invalid("a note is at most 2000 characters"));
    }
    Ok(())
}

/// A report's resolution by `e`, checked against the report: open, against `e.target`.
pub(crate) fn resolve(report: &mut Report, e: &ModerationEntry) -> Result<()> {
    if report.resolution.is_some() {
        return Err(StorageError::Invalid("that report is already resolved"));
    }
    if report.reported_user != e.target {
        return Err(StorageError::Invalid("that report is about another user"));
    }
    report.resolution = Some(Resolution {
        action: e.action,
        moderator: e.moderator.clone(),
        note: e.note.clone(),
        at_ms: e.at_ms,
        audit_id: e.id,
    });
    Ok(())
}

/// Whether a report matches a filter.
pub(crate) fn report_matches(r: &Report, f: &ReportFilter) -> bool {
    (!f.open_only || r.resolution.is_none())
        && f.reported_user
            .as_ref()
            .is_none_or(|u| *u == r.reported_user)
}

/// A group's participants: the creator first, then `participants` without duplicates; at least
/// two and at most [`crate::MAX_GROUP_PARTICIPANTS`].
pub(crate) fn group_members(creator: &str, participants: &[String]) -> Result<Vec<String>> {
    if participants.len() > crate::MAX_GROUP_PARTICIPANTS {
        return Err(StorageError::Invalid("too many participants"));
    }
    users(std::iter::once(creator).chain(participants.iter().map(String::as_str)))?;
    let mut seen = HashSet::new();
    let all: Vec<String> = std::iter::once(creator.to_owned())
        .chain(participants.iter().cloned())
        .filter(|u| seen.insert(u.clone()))
        .collect();
    if all.len() < 2 {
        return Err(StorageError::Invalid("a group needs another participant"));
    }
    if all.len() > crate::MAX_GROUP_PARTICIPANTS {
        return Err(StorageError::Invalid("too many participants"));
    }
    Ok(all)
}

/// A direct conversation's ids: all present, two different users.
pub(crate) fn direct_ids(buyer: &str, seller: &str, listing: &str) -> Result<()> {
    users([buyer, seller])?;
    self::listing(listing)?;
    if buyer == seller {
        return Err(StorageError::Invalid("buyer and seller must differ"));
    }
    Ok(())
}

/// One page of a conversation list: `all` ordered by last activity (most recent first, then
/// by id, so equal times still have one order), the page after `cursor`, and the cursor of the
/// next page (`Some` exactly when more follow).
pub(crate) fn page(
    mut all: Vec<Conversation>,
    cursor: Option<ListCursor>,
    limit: usize,
) -> (Vec<Conversation>, Option<ListCursor>) {
    all.sort_by(|a, b| {
        b.last_activity_ms
            .cmp(&a.last_activity_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    let start = match cursor {
        None => 0,
        Some(c) => {
            all.partition_point(|x| (x.last_activity_ms, x.id) >= (c.last_activity_ms, c.id))
        }
    };
    let mut rest = all.split_off(start.min(all.len()));
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = more.then(|| rest.last()).flatten().map(|c| ListCursor {
        last_activity_ms: c.last_activity_ms,
        id: c.id,
    });
    (rest, next)
}

/// The time-ordered id a report stored by an earlier version (random id) gets: its time, then
/// bits of its old id, so copying it again gives the same id.
pub(crate) fn legacy_report_id(old: uuid::Uuid, created_at_ms: i64) -> uuid::Uuid {
    let mut b = *old.as_bytes();
    b[..6].copy_from_slice(&(created_at_ms.max(0) as u64).to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    uuid::Uuid::from_bytes(b)
}

/// Checks an owner, key and value of `Storage::put_value` (an owner is a user id or a
/// node-internal name: the same lengths).
pub(crate) fn value(owner: &str, key: &str, value: Option<&[u8]>) -> Result<()> {
    if owner.is_empty() || owner.len() > MAX_USER_ID_BYTES {
        return Err(StorageError::Invalid("an owner must be 1 to 128 bytes"));
    }
    if key.is_empty() || key.len() > crate::MAX_VALUE_KEY_BYTES {
        return Err(StorageError::Invalid(
            "a value's key must be 1 to 256 bytes",
        ));
    }
    if value.is_some_and(|v| v.len() > crate::MAX_VALUE_BYTES) {
        return Err(StorageError::Invalid("a value is at most 8 KiB"));
    }
    Ok(())
}

/// Checks an owner and prefix of `Storage::values`.
pub(crate) fn value_prefix(owner: &str, prefix: &str) -> Result<()> {
    if owner.is_empty() || owner.len() > MAX_USER_ID_BYTES {
        return Err(StorageError::Invalid("an owner must be 1 to 128 bytes"));
    }
    if prefix.len() > crate::MAX_VALUE_KEY_BYTES {
        return Err(StorageError::Invalid(
            "a value's key must be 1 to 256 bytes",
        ));
    }
    Ok(())
}
