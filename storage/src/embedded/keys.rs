//! Key layouts of the embedded engine's keyspaces. Integers are big-endian so byte order is
//! numeric order; strings are u16-length-prefixed (see `record`).

use crate::record::Writer;
use crate::types::{ConversationId, MessageId};

/// `conv`: conversation id → conversation record.
pub(super) fn conversation(id: ConversationId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// `msg`: conversation id | message id → message record.
pub(super) fn message(conv: ConversationId, id: MessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(conv.as_bytes());
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// Every key of one conversation in `msg`, `idem` and `read` starts with this.
pub(super) fn conversation_prefix(conv: ConversationId) -> Vec<u8> {
    conv.as_bytes().to_vec()
}

/// `idem`: conversation | sender | client_msg_id → message id.
pub(super) fn idempotency(conv: ConversationId, sender: &str, client_msg_id: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes16(conv.as_bytes())
        .key_str(sender)
        .key_str(client_msg_id);
    w.finish()
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
