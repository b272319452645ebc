//! The prepared statements, grouped by what they touch, prepared at connect.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};

use super::DELETE_TIMESTAMP;
use super::rows::MSG_COLUMNS;
use super::unavailable;
use crate::error::{Result, StorageError};

/// Prepares statements with the engine's consistency (LWTs: LOCAL_SERIAL).
struct Preparer<'a> {
    s: &'a Session,
    c: Consistency,
}

impl Preparer<'_> {
    async fn prepare(&self, cql: String) -> Result<PreparedStatement> {
        let mut st = self.s.prepare(cql).await.map_err(unavailable)?;
        st.set_consistency(self.c);
        st.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        Ok::<_, StorageError>(st)
    }

    /// A read at LOCAL_SERIAL: it sees every committed lightweight transaction (and finishes
    /// any in flight), which a plain read need not.
    async fn prepare_serial(&self, cql: String) -> Result<PreparedStatement> {
        let mut st = self.prepare(cql).await?;
        st.set_consistency(Consistency::LocalSerial);
        Ok(st)
    }
}

pub(super) struct Statements {
    pub(super) conversations: Conversations,
    pub(super) messages: Messages,
    pub(super) safety: Safety,
}

pub(super) struct Conversations {
    pub(super) conv_insert: PreparedStatement,
    pub(super) conv_get: PreparedStatement,
    pub(super) conv_delete: PreparedStatement,
    /// Every conversation once, in token order (rebuilding a search index).
    pub(super) conv_scan_first: PreparedStatement,
    pub(super) conv_scan: PreparedStatement,
    pub(super) head_set: PreparedStatement,
    pub(super) head_get: PreparedStatement,
    pub(super) head_delete: PreparedStatement,
    pub(super) direct_claim: PreparedStatement,
    pub(super) direct_get: PreparedStatement,
    pub(super) direct_delete: PreparedStatement,
    pub(super) member_insert: PreparedStatement,
    pub(super) member_list: PreparedStatement,
    pub(super) member_delete: PreparedStatement,
}

pub(super) struct Messages {
    pub(super) msg_claim: PreparedStatement,
    pub(super) msg_claim_media: PreparedStatement,
    pub(super) msg_get: PreparedStatement,
    pub(super) msg_before: PreparedStatement,
    pub(super) msg_after: PreparedStatement,
    pub(super) msg_top: PreparedStatement,
    pub(super) msg_delete_bucket: PreparedStatement,
    pub(super) key_claim: PreparedStatement,
    pub(super) key_take_over: PreparedStatement,
    pub(super) key_get: PreparedStatement,
    pub(super) key_set_seq: PreparedStatement,
    pub(super) key_delete: PreparedStatement,
    pub(super) key_delete_all: PreparedStatement,
    pub(super) mark_set: PreparedStatement,
    pub(super) mark_get: PreparedStatement,
    pub(super) mark_delete_all: PreparedStatement,
}

pub(super) struct Safety {
    pub(super) block_insert: PreparedStatement,
    pub(super) block_delete: PreparedStatement,
    pub(super) block_get: PreparedStatement,
    pub(super) block_list: PreparedStatement,
    pub(super) block_list_users: PreparedStatement,
    pub(super) blocked_by_insert: PreparedStatement,
    pub(super) blocked_by_delete: PreparedStatement,
    pub(super) blocked_by_list: PreparedStatement,
    pub(super) report_put: PreparedStatement,
    pub(super) report_get: PreparedStatement,
    pub(super) report_cas: PreparedStatement,
    pub(super) list_insert: PreparedStatement,
    pub(super) list_delete: PreparedStatement,
    pub(super) list_page: PreparedStatement,
    pub(super) bucket_insert: PreparedStatement,
    pub(super) buckets: PreparedStatement,
    pub(super) standing_get: PreparedStatement,
    pub(super) standing_insert: PreparedStatement,
    pub(super) standing_cas: PreparedStatement,
    pub(super) value_put: PreparedStatement,
    pub(super) value_delete: PreparedStatement,
    pub(super) value_from: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(s: &Session, ks: &str, c: Consistency) -> Result<Self> {
        let p = Preparer { s, c };
        let (conversations, messages, safety) = tokio::try_join!(
            Self::conversations(&p, ks),
            Self::messages(&p, ks),
            Self::safety(&p, ks)
        )?;
        Ok(Self {
            conversations,
            messages,
            safety,
        })
    }

    async fn conversations(p: &Preparer<'_>, ks: &str) -> Result<Conversations> {
        Ok(Conversations {
            conv_insert: p.prepare(format!(
                "INSERT INTO {ks}.conversations (id, kind, buyer, seller, listing, title, creator, participants, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            conv_get: p.prepare(format!(
                "SELECT id, kind, buyer, seller, listing, title, creator, participants, created_at FROM {ks}.conversations WHERE id = ?"
            ))
            .await?,
            conv_delete: p.prepare(format!("DELETE FROM {ks}.conversations WHERE id = ?")).await?,
            conv_scan_first: p
                .prepare(format!("SELECT id FROM {ks}.conversations LIMIT ?"))
                .await?,
            conv_scan: p
                .prepare(format!(
                    "SELECT id FROM {ks}.conversations WHERE token(id) > token(?) LIMIT ?"
                ))
                .await?,
            head_set: p.prepare(format!(
                "UPDATE {ks}.conversation_heads USING TIMESTAMP ? SET last_seq = ?, last_message_id = ?, last_activity = ? WHERE id = ?"
            ))
            .await?,
            head_get: p.prepare(format!(
                "SELECT last_seq, last_message_id, last_activity FROM {ks}.conversation_heads WHERE id = ?"
            ))
            .await?,
            head_delete: p.prepare(format!(
                "DELETE FROM {ks}.conversation_heads USING TIMESTAMP {DELETE_TIMESTAMP} WHERE id = ?"
            ))
            .await?,
            direct_claim: p.prepare(format!(
                "INSERT INTO {ks}.direct_conversations (buyer, seller, listing, conversation_id) VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            direct_get: p.prepare(format!(
                "SELECT conversation_id FROM {ks}.direct_conversations WHERE buyer = ? AND seller = ? AND listing = ?"
            ))
            .await?,
            direct_delete: p.prepare(format!(
                "DELETE FROM {ks}.direct_conversations WHERE buyer = ? AND seller = ? AND listing = ? IF EXISTS"
            ))
            .await?,
            member_insert: p.prepare(format!(
                "INSERT INTO {ks}.user_conversations (user_id, conversation_id) VALUES (?, ?)"
            ))
            .await?,
            member_list: p.prepare(format!(
                "SELECT conversation_id FROM {ks}.user_conversations WHERE user_id = ?"
            ))
            .await?,
            member_delete: p.prepare(format!(
                "DELETE FROM {ks}.user_conversations WHERE user_id = ? AND conversation_id = ?"
            ))
            .await?,
        })
    }

    async fn messages(p: &Preparer<'_>, ks: &str) -> Result<Messages> {
        const CLAIM: &str = "conversation_id, bucket, seq, message_id, sender, kind, content, client_msg_id, created_at, visibility";
        const MEDIA: &str = "media_url, media_mime, media_size, media_name, media_width, media_height, \
             media_id, media_thumb_width, media_thumb_height, media_placeholder, media_duration_ms";
        Ok(Messages {
            msg_claim: p.prepare(format!(
                "INSERT INTO {ks}.messages_by_seq ({CLAIM}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            msg_claim_media: p.prepare(format!(
                "INSERT INTO {ks}.messages_by_seq ({CLAIM}, {MEDIA}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            msg_get: p.prepare(format!(
                "SELECT {MSG_COLUMNS} FROM {ks}.messages_by_seq WHERE conversation_id = ? AND bucket = ? AND seq = ?"
            ))
            .await?,
            msg_before: p.prepare(format!(
                "SELECT {MSG_COLUMNS} FROM {ks}.messages_by_seq WHERE conversation_id = ? AND bucket = ? AND seq < ? LIMIT ?"
            ))
            .await?,
            msg_after: p.prepare(format!(
                "SELECT {MSG_COLUMNS} FROM {ks}.messages_by_seq WHERE conversation_id = ? AND bucket = ? AND seq > ? ORDER BY seq ASC LIMIT ?"
            ))
            .await?,
            msg_top: p.prepare_serial(format!(
                "SELECT seq, message_id FROM {ks}.messages_by_seq WHERE conversation_id = ? AND bucket = ? LIMIT 1"
            ))
            .await?,
            msg_delete_bucket: p.prepare(format!(
                "DELETE FROM {ks}.messages_by_seq WHERE conversation_id = ? AND bucket = ?"
            ))
            .await?,
            key_claim: p.prepare(format!(
                "INSERT INTO {ks}.message_keys (conversation_id, sender, client_msg_id, message_id, created_at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            key_take_over: p.prepare(format!(
                "UPDATE {ks}.message_keys SET message_id = ?, created_at = ? WHERE conversation_id = ? AND sender = ? AND client_msg_id = ? IF message_id = ?"
            ))
            .await?,
            key_get: p.prepare(format!(
                "SELECT message_id, seq FROM {ks}.message_keys WHERE conversation_id = ? AND sender = ? AND client_msg_id = ?"
            ))
            .await?,
            key_delete: p.prepare(format!(
                "DELETE FROM {ks}.message_keys WHERE conversation_id = ? AND sender = ? AND client_msg_id = ?"
            ))
            .await?,
            key_set_seq: p.prepare(format!(
                "UPDATE {ks}.message_keys SET seq = ? WHERE conversation_id = ? AND sender = ? AND client_msg_id = ?"
            ))
            .await?,
            key_delete_all: p.prepare(format!(
                "DELETE FROM {ks}.message_keys WHERE conversation_id = ?"
            ))
            .await?,
            mark_set: p.prepare(format!(
                "UPDATE {ks}.read_watermarks USING TIMESTAMP ? SET up_to = ?, up_to_seq = ?, read_at = ? WHERE conversation_id = ? AND user_id = ?"
            ))
            .await?,
            mark_get: p.prepare(format!(
                "SELECT up_to, up_to_seq, read_at FROM {ks}.read_watermarks WHERE conversation_id = ? AND user_id = ?"
            ))
            .await?,
            mark_delete_all: p.prepare(format!(
                "DELETE FROM {ks}.read_watermarks USING TIMESTAMP {DELETE_TIMESTAMP} WHERE conversation_id = ?"
            ))
            .await?,
        })
    }

    async fn safety(p: &Preparer<'_>, ks: &str) -> Result<Safety> {
        Ok(Safety {
            value_put: p.prepare(format!(
                "INSERT INTO {ks}.user_values (owner, key, value) VALUES (?, ?, ?)"
            ))
            .await?,
            value_delete: p.prepare(format!(
                "DELETE FROM {ks}.user_values WHERE owner = ? AND key = ?"
            ))
            .await?,
            value_from: p.prepare(format!(
                "SELECT key, value FROM {ks}.user_values WHERE owner = ? AND key >= ? LIMIT ?"
            ))
            .await?,
            block_insert: p.prepare(format!(
                "INSERT INTO {ks}.blocks (blocker, blocked, created_at) VALUES (?, ?, ?)"
            ))
            .await?,
            block_delete: p.prepare(format!(
                "DELETE FROM {ks}.blocks WHERE blocker = ? AND blocked = ?"
            ))
            .await?,
            block_get: p.prepare(format!(
                "SELECT blocked FROM {ks}.blocks WHERE blocker = ? AND blocked = ?"
            ))
            .await?,
            block_list: p.prepare(format!(
                "SELECT blocked, created_at FROM {ks}.blocks WHERE blocker = ?"
            ))
            .await?,
            block_list_users: p.prepare(format!(
                "SELECT blocked FROM {ks}.blocks WHERE blocker = ?"
            ))
            .await?,
            blocked_by_insert: p.prepare(format!(
                "INSERT INTO {ks}.blocks_by_target (blocked, blocker, created_at) VALUES (?, ?, ?)"
            ))
            .await?,
            blocked_by_delete: p.prepare(format!(
                "DELETE FROM {ks}.blocks_by_target WHERE blocked = ? AND blocker = ?"
            ))
            .await?,
            blocked_by_list: p.prepare(format!(
                "SELECT blocker FROM {ks}.blocks_by_target WHERE blocked = ?"
            ))
            .await?,
            report_put: p.prepare(format!(
                "INSERT INTO {ks}.moderation_reports (id, record) VALUES (?, ?) IF NOT EXISTS"
            ))
            .await?,
            report_get: p.prepare_serial(format!(
                "SELECT record FROM {ks}.moderation_reports WHERE id = ?"
            ))
            .await?,
            report_cas: p.prepare(format!(
                "UPDATE {ks}.moderation_reports SET record = ? WHERE id = ? IF record = ?"
            ))
            .await?,
            list_insert: p.prepare(format!(
                "INSERT INTO {ks}.moderation_lists (list, bucket, id, record) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            list_delete: p.prepare(format!(
                "DELETE FROM {ks}.moderation_lists WHERE list = ? AND bucket = ? AND id = ?"
            ))
            .await?,
            list_page: p.prepare(format!(
                "SELECT id, record FROM {ks}.moderation_lists WHERE list = ? AND bucket = ? AND id < ? LIMIT ?"
            ))
            .await?,
            bucket_insert: p.prepare(format!(
                "INSERT INTO {ks}.moderation_buckets (list, bucket) VALUES (?, ?)"
            ))
            .await?,
            buckets: p.prepare(format!(
                "SELECT bucket FROM {ks}.moderation_buckets WHERE list = ? AND bucket <= ?"
            ))
            .await?,
            standing_get: p.prepare_serial(format!(
                "SELECT record FROM {ks}.user_standing WHERE user_id = ?"
            ))
            .await?,
            standing_insert: p.prepare(format!(
                "INSERT INTO {ks}.user_standing (user_id, record) VALUES (?, ?) IF NOT EXISTS"
            ))
            .await?,
            standing_cas: p.prepare(format!(
                "UPDATE {ks}.user_standing SET record = ? WHERE user_id = ? IF record = ?"
            ))
            .await?,
        })
    }
}
