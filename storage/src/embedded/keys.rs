//! Key layouts of the embedded engine's keyspaces. Integers are big-endian so byte order is
//! numeric order; strings are u16-length-prefixed (see `record`).

use crate::record::Writer;
use parley_types::ConversationId;

/// `conv`: conversation id → conversation record (static: kind, participants, creation);
/// `meta`: conversation id → last seq, last message id, last activity.
pub(super) fn conversation(id: ConversationId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// `msg`: conversation id | seq → message record. Keyed by seq, so a conversation's messages
/// are one range in seq order; ids increase with seq (one writer assigns both), so a message
/// is found by id with a binary search over seqs.
pub(super) fn message(conv: ConversationId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(conv.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Every key of one conversation in `msg`, `idem` and `read` starts with this.
pub(super) fn conversation_prefix(conv: ConversationId) -> Vec<u8> {
    conv.as_bytes().to_vec()
}

/// `idem`: conversation | FNV-1a-64(sender, client_msg_id) → the message's seq.
///
/// A hash keeps the key at 24 bytes (the full ids would be ~80): this index is written once
/// per message. A hit is confirmed against the stored message's sender and client_msg_id, so
/// a collision (2^-64 per pair of keys in one conversation) can only miss a duplicate, never
/// merge two different messages.
pub(super) fn idempotency(conv: ConversationId, sender: &str, client_msg_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(conv.as_bytes());
    k.extend_from_slice(
        &fnv1a(&[sender.as_bytes(), b"\0", client_msg_id.as_bytes()]).to_be_bytes(),
    );
    k
}

/// FNV-1a, 64 bits: stable across versions and platforms (it names keys on disk).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// `read`: conversation | user → read state.
pub(super) fn read_state(conv: ConversationId, user: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes16(conv.as_bytes()).key_str(user);
    w.finish()
}

/// `direct`: buyer | seller | listing → conversation id.
pub(super) fn direct(buyer: &str, seller: &str, listing: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.key_str(buyer).key_str(seller).key_str(listing);
    w.finish()
}

/// `member`: user | conversation → empty. Prefix-scanned by [`member_prefix`].
pub(super) fn member(user: &str, conv: ConversationId) -> Vec<u8> {
    let mut w = Writer::default();
    w.key_str(user).bytes16(conv.as_bytes());
    w.finish()
}

pub(super) fn member_prefix(user: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.key_str(user);
    w.finish()
}

/// `block`: blocker | blocked → time. Prefix-scanned by [`member_prefix`] of the blocker.
pub(super) fn block(blocker: &str, blocked: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.key_str(blocker).key_str(blocked);
    w.finish()
}

/// `blocked_by`: blocked | blocker → time, the same blocks the other way round (who blocked
/// a user).
pub(super) fn blocked_by(blocked: &str, blocker: &str) -> Vec<u8> {
    block(blocked, blocker)
}

/// `activity`: user | last activity, descending | conversation id, descending → empty: the
/// user's conversations in list order (most recent first, then by id, as `rules::page`), so a
/// page is one range read however many conversations the user has. Written with the
/// conversation's `meta` in one batch.
pub(super) fn activity(user: &str, last_activity_ms: i64, conv: ConversationId) -> Vec<u8> {
    let mut k = activity_prefix(user);
    k.extend_from_slice(&descending_i64(last_activity_ms));
    k.extend(conv.as_bytes().iter().map(|b| !b));
    k
}

pub(super) fn activity_prefix(user: &str) -> Vec<u8> {
    member_prefix(user)
}

/// The conversation id at the end of an `activity` key.
pub(super) fn activity_conversation(key: &[u8]) -> Option<ConversationId> {
    let tail = key.len().checked_sub(16).map(|at| &key[at..])?;
    let mut id = [0u8; 16];
    for (to, from) in id.iter_mut().zip(tail) {
        *to = !from;
    }
    Some(ConversationId::from_bytes(id))
}

/// Big-endian bytes whose order is the reverse of the numbers' order.
fn descending_i64(v: i64) -> [u8; 8] {
    (!((v as u64) ^ (1 << 63))).to_be_bytes()
}

/// `unread`: user | conversation → empty, present exactly when the user has unread messages
/// there: the unread counts read these conversations only.
pub(super) fn unread(user: &str, conv: ConversationId) -> Vec<u8> {
    member(user, conv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_keys_sort_newest_first_then_by_id_descending() {
        let (a, b) = (ConversationId::random(), ConversationId::random());
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut keys = [
            activity("u", -5, lo),
            activity("u", 0, lo),
            activity("u", 7, lo),
            activity("u", 7, hi),
            activity("u", i64::MAX, lo),
            activity("u", i64::MIN, hi),
        ];
        keys.sort();
        let order: Vec<_> = keys
            .iter()
            .map(|k| activity_conversation(k).unwrap())
            .collect();
        assert_eq!(order, vec![lo, hi, lo, lo, lo, hi]);
        assert_eq!(keys[1], activity("u", 7, hi), "same time: higher id first");
        assert_eq!(keys[5], activity("u", i64::MIN, hi));
        assert!(keys.iter().all(|k| k.starts_with(&activity_prefix("u"))));
    }
}

/// A list of report ids in `report_queue`.
#[derive(Clone, Copy)]
pub(super) enum Queue<'a> {
    /// Every report.
    All,
    /// Reports not resolved yet (removed from it on resolution).
    Open,
    /// Reports against one user.
    Against(&'a str),
}

/// `report_queue`: queue | report id → empty. Ids are time-ordered, so a queue reads newest
/// first backwards.
pub(super) fn report_queue(q: Queue<'_>, id: &uuid::Uuid) -> Vec<u8> {
    let mut k = report_queue_prefix(q);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn report_queue_prefix(q: Queue<'_>) -> Vec<u8> {
    match q {
        Queue::All => vec![0],
        Queue::Open => vec![1],
        Queue::Against(user) => {
            let mut w = Writer(vec![2]);
            w.key_str(user);
            w.finish()
        }
    }
}

/// `moderation_by_target`: target | entry id → empty (the entries are in `moderation`,
/// by id).
pub(super) fn moderation_by_target(target: &str, id: &uuid::Uuid) -> Vec<u8> {
    let mut k = member_prefix(target);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `standing`: user → their standing.
pub(super) fn standing(user: &str) -> Vec<u8> {
    member_prefix(user)
}

/// The id at the end of a `report_queue` or `moderation_by_target` key.
pub(super) fn trailing_id(key: &[u8]) -> Option<uuid::Uuid> {
    let tail = key.len().checked_sub(16).map(|at| &key[at..])?;
    Some(uuid::Uuid::from_bytes(tail.try_into().ok()?))
}

/// `changes`: cursor → tag | conversation | seq (see `record::encode_change`): the change feed.
pub(super) fn change(cursor: u64) -> [u8; 8] {
    cursor.to_be_bytes()
}

/// `values`: owner | key (its bytes, unprefixed, so a key prefix is a range) → value.
pub(super) fn value(owner: &str, key: &str) -> Vec<u8> {
    let mut k = member_prefix(owner);
    k.extend_from_slice(key.as_bytes());
    k
}
