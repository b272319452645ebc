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

/// `block`: blocker | blocked → time.
pub(super) fn block(blocker: &str, blocked: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.key_str(blocker).key_str(blocked);
    w.finish()
}
