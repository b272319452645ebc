//! Rules every engine applies the same way (the conformance suite checks them), in one place.

use std::collections::HashSet;

use parley_types::{Conversation, ListCursor};

use crate::error::{Result, StorageError};

/// A group's participants: the creator first, then `participants` without duplicates; at least
/// two and at most [`crate::MAX_GROUP_PARTICIPANTS`].
pub(crate) fn group_members(creator: &str, participants: &[String]) -> Result<Vec<String>> {
    if creator.is_empty() || participants.iter().any(String::is_empty) {
        return Err(StorageError::Invalid("participant ids must not be empty"));
    }
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
    if buyer.is_empty() || seller.is_empty() || listing.is_empty() {
        return Err(StorageError::Invalid(
            "buyer, seller and listing are required",
        ));
    }
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
