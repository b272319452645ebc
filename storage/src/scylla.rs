//! The ScyllaDB engine (also runs on Apache Cassandra 4/5): prepared statements, token-aware
//! routing (the driver's default for prepared statements), the schema in `deploy/cql/`.
//!
//! Design, table by table (see `deploy/cql/schema.cql`):
//! - **messages**: `((conversation_id, bucket), message_id DESC)` with 10-day buckets. History
//!   walks buckets backwards from the newest (or `before`) to the conversation's creation
//!   bucket, so it never scans empty buckets forever; resume walks forwards to the bucket of
//!   the conversation's last message. Rows are written with only their non-null columns.
//! - **direct uniqueness**: a lightweight transaction (`INSERT … IF NOT EXISTS`) on
//!   `direct_conversations` claims (buyer, seller, listing); the loser reads the winner's id.
//! - **idempotent sends without an LWT per message**: the key row
//!   (conversation, sender, client_msg_id) → message id is written *before* the message, then
//!   read back. A retry finds the key and returns (or, after a crash between the two writes,
//!   completes) the first message; a racing duplicate that reads back someone else's id yields
//!   to it. Within one node, sends of one key are serialised by a striped lock, so only two
//!   retries of the same key racing on two nodes within a round trip could both store — a
//!   Paxos round on every message would close that window at several times the write cost.
//! - **monotonic state without LWT**: the read watermark and a conversation's last message are
//!   written `USING TIMESTAMP <message id>` (ids are time-ordered), so the newest wins however
//!   writes interleave. Deletes of those rows use a timestamp above every id.
//! - **unread counts**: messages after the reader's watermark, counted per conversation up to
//!   [`UNREAD_CAP`] (sending moves the sender's own watermark, as in every engine).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::{MAX_GROUP_PARTICIPANTS, MAX_PAGE, Storage};
use parley_types::ids::{IdGenerator, timestamp_ms};
use parley_types::*;

/// Width of a message bucket: 10 days, in milliseconds.
pub const BUCKET_MS: i64 = 10 * 24 * 3600 * 1000;
/// Unread counts stop counting here (a badge shows "1000+").
pub const UNREAD_CAP: usize = 1000;
/// A write timestamp above every message id: deletes of rows written `USING TIMESTAMP <id>`.
const DELETE_TIMESTAMP: i64 = 9_000_000_000_000_000_000;
/// Striped locks serialising sends of one idempotency key on this node.
const KEY_LOCKS: usize = 256;

/// The CQL schema, applied by [`Scylla::migrate`].
pub const SCHEMA: &str = include_str!("../../deploy/cql/schema.cql");

/// Connection settings of the ScyllaDB engine.
#[derive(Clone, Debug)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Consistency of reads and writes (e.g. LOCAL_QUORUM); LWTs use LOCAL_SERIAL.
    pub consistency: Consistency,
    /// Node id put into message ids (unique per gateway node).
    pub node_id: u16,
}

/// The CQL map literal of a replication setting: `simple:3` or `dc1:3,dc2:3`.
pub fn replication(spec: &str) -> std::result::Result<String, String> {
    let spec = spec.trim();
    if let Some(rf) = spec.strip_prefix("simple:") {
        let rf: u32 = rf
            .parse()
            .map_err(|_| format!("bad replication factor in {spec:?}"))?;
        return Ok(format!(
            "{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
        ));
    }
    let mut dcs = Vec::new();
    for part in spec.split(',') {
        let (dc, rf) = part
            .split_once(':')
            .ok_or_else(|| format!("replication {spec:?}: expected simple:N or dc:N,dc:N"))?;
        let rf: u32 = rf
            .parse()
            .map_err(|_| format!("bad replication factor in {spec:?}"))?;
        if dc.is_empty()
            || !dc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("bad datacenter name in {spec:?}"));
        }
        dcs.push(format!("'{dc}': {rf}"));
    }
    Ok(format!(
        "{{'class': 'NetworkTopologyStrategy', {}}}",
        dcs.join(", ")
    ))
}

/// Keyspace names: letters, digits, underscores (CQL's unquoted identifiers).
pub fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

fn bucket_of(ms: i64) -> i32 {
    (ms.max(0) / BUCKET_MS) as i32
}

fn id_bucket(id: MessageId) -> i32 {
    bucket_of(timestamp_ms(id))
}

struct Statements {
    conv_insert: PreparedStatement,
    conv_get: PreparedStatement,
    conv_delete: PreparedStatement,
    activity_set: PreparedStatement,
    activity_get: PreparedStatement,
    activity_delete: PreparedStatement,
    direct_claim: PreparedStatement,
    direct_get: PreparedStatement,
    direct_delete: PreparedStatement,
    member_insert: PreparedStatement,
    member_list: PreparedStatement,
    member_delete: PreparedStatement,
    msg_insert: PreparedStatement,
    msg_insert_media: PreparedStatement,
    msg_get: PreparedStatement,
    msg_before: PreparedStatement,
    msg_after: PreparedStatement,
    msg_at_or_before: PreparedStatement,
    msg_ids_after: PreparedStatement,
    msg_delete_bucket: PreparedStatement,
    key_insert: PreparedStatement,
    key_get: PreparedStatement,
    key_delete_all: PreparedStatement,
    read_set: PreparedStatement,
    read_get: PreparedStatement,
    read_delete_all: PreparedStatement,
    block_insert: PreparedStatement,
    block_delete: PreparedStatement,
    block_get: PreparedStatement,
    report_insert: PreparedStatement,
}

const MSG_COLUMNS: &str = "message_id, sender, kind, content, client_msg_id, created_at, \
    media_url, media_mime, media_size, media_name, media_width, media_height";

type MsgRow = (
    i64,
    String,
    i8,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i32>,
    Option<i32>,
);

type ConvRow = (
    Uuid,
    i8,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    i64,
);

impl Statements {
    async fn prepare(s: &Session, ks: &str, c: Consistency) -> Result<Self> {
        let p = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            st.set_consistency(c);
            st.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            Ok::<_, StorageError>(st)
        };
        Ok(Self {
            conv_insert: p(format!(
                "INSERT INTO {ks}.conversations (id, kind, buyer, seller, listing, title, creator, participants, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            conv_get: p(format!(
                "SELECT id, kind, buyer, seller, listing, title, creator, participants, created_at FROM {ks}.conversations WHERE id = ?"
            ))
            .await?,
            conv_delete: p(format!("DELETE FROM {ks}.conversations WHERE id = ?")).await?,
            activity_set: p(format!(
                "UPDATE {ks}.conversation_activity USING TIMESTAMP ? SET last_message_id = ?, last_activity = ? WHERE id = ?"
            ))
            .await?,
            activity_get: p(format!(
                "SELECT last_message_id, last_activity FROM {ks}.conversation_activity WHERE id = ?"
            ))
            .await?,
            activity_delete: p(format!(
                "DELETE FROM {ks}.conversation_activity USING TIMESTAMP {DELETE_TIMESTAMP} WHERE id = ?"
            ))
            .await?,
            direct_claim: p(format!(
                "INSERT INTO {ks}.direct_conversations (buyer, seller, listing, conversation_id) VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            direct_get: p(format!(
                "SELECT conversation_id FROM {ks}.direct_conversations WHERE buyer = ? AND seller = ? AND listing = ?"
            ))
            .await?,
            direct_delete: p(format!(
                "DELETE FROM {ks}.direct_conversations WHERE buyer = ? AND seller = ? AND listing = ? IF EXISTS"
            ))
            .await?,
            member_insert: p(format!(
                "INSERT INTO {ks}.user_conversations (user_id, conversation_id) VALUES (?, ?)"
            ))
            .await?,
            member_list: p(format!(
                "SELECT conversation_id FROM {ks}.user_conversations WHERE user_id = ?"
            ))
            .await?,
            member_delete: p(format!(
                "DELETE FROM {ks}.user_conversations WHERE user_id = ? AND conversation_id = ?"
            ))
            .await?,
            msg_insert: p(format!(
                "INSERT INTO {ks}.messages (conversation_id, bucket, message_id, sender, kind, content, client_msg_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            msg_insert_media: p(format!(
                "INSERT INTO {ks}.messages (conversation_id, bucket, message_id, sender, kind, content, client_msg_id, created_at, media_url, media_mime, media_size, media_name, media_width, media_height) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            msg_get: p(format!(
                "SELECT {MSG_COLUMNS} FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? AND message_id = ?"
            ))
            .await?,
            msg_before: p(format!(
                "SELECT {MSG_COLUMNS} FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? AND message_id < ? LIMIT ?"
            ))
            .await?,
            msg_after: p(format!(
                "SELECT {MSG_COLUMNS} FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? AND message_id > ? ORDER BY message_id ASC LIMIT ?"
            ))
            .await?,
            msg_at_or_before: p(format!(
                "SELECT message_id FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? AND message_id <= ? LIMIT 1"
            ))
            .await?,
            msg_ids_after: p(format!(
                "SELECT message_id FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? AND message_id > ? LIMIT ?"
            ))
            .await?,
            msg_delete_bucket: p(format!(
                "DELETE FROM {ks}.messages WHERE conversation_id = ? AND bucket = ?"
            ))
            .await?,
            key_insert: p(format!(
                "INSERT INTO {ks}.message_keys (conversation_id, sender, client_msg_id, message_id, bucket) VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            key_get: p(format!(
                "SELECT message_id, bucket FROM {ks}.message_keys WHERE conversation_id = ? AND sender = ? AND client_msg_id = ?"
            ))
            .await?,
            key_delete_all: p(format!(
                "DELETE FROM {ks}.message_keys WHERE conversation_id = ?"
            ))
            .await?,
            read_set: p(format!(
                "UPDATE {ks}.read_states USING TIMESTAMP ? SET up_to = ?, read_at = ? WHERE conversation_id = ? AND user_id = ?"
            ))
            .await?,
            read_get: p(format!(
                "SELECT up_to, read_at FROM {ks}.read_states WHERE conversation_id = ? AND user_id = ?"
            ))
            .await?,
            read_delete_all: p(format!(
                "DELETE FROM {ks}.read_states USING TIMESTAMP {DELETE_TIMESTAMP} WHERE conversation_id = ?"
            ))
            .await?,
            block_insert: p(format!(
                "INSERT INTO {ks}.blocks (blocker, blocked, created_at) VALUES (?, ?, ?)"
            ))
            .await?,
            block_delete: p(format!(
                "DELETE FROM {ks}.blocks WHERE blocker = ? AND blocked = ?"
            ))
            .await?,
            block_get: p(format!(
                "SELECT blocked FROM {ks}.blocks WHERE blocker = ? AND blocked = ?"
            ))
            .await?,
            report_insert: p(format!(
                "INSERT INTO {ks}.reports (id, reporter, reported_user, conversation_id, message_id, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
        })
    }
}

/// The ScyllaDB / Cassandra engine. Cheap to clone.
#[derive(Clone)]
pub struct Scylla {
    session: Arc<Session>,
    st: Arc<Statements>,
    ids: Arc<Mutex<IdGenerator>>,
    key_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
}

impl Scylla {
    /// Connects to the cluster (the keyspace must exist: see [`Scylla::migrate`]).
    pub async fn connect(config: &ScyllaConfig) -> Result<Self> {
        if !valid_keyspace(&config.keyspace) {
            return Err(StorageError::Invalid("keyspace name"));
        }
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .build()
            .await
            .map_err(unavailable)?;
        let st = Statements::prepare(&session, &config.keyspace, config.consistency).await?;
        Ok(Self {
            session: Arc::new(session),
            st: Arc::new(st),
            ids: Arc::new(Mutex::new(IdGenerator::new(config.node_id))),
            key_locks: Arc::new(
                (0..KEY_LOCKS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
        })
    }

    /// Creates the keyspace and tables if missing (idempotent): `replication` is a CQL map
    /// literal (see [`replication`]).
    pub async fn migrate(nodes: &[String], keyspace: &str, replication: &str) -> Result<()> {
        if !valid_keyspace(keyspace) {
            return Err(StorageError::Invalid("keyspace name"));
        }
        let session = SessionBuilder::new()
            .known_nodes(nodes)
            .build()
            .await
            .map_err(unavailable)?;
        let schema = SCHEMA
            .replace("{keyspace}", keyspace)
            .replace("{replication}", replication);
        for statement in schema.split("\n;") {
            let cql: String = statement
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            if cql.trim().is_empty() {
                continue;
            }
            session.query_unpaged(cql, &[]).await.map_err(unavailable)?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn next_id(&self, now_ms: i64) -> MessageId {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next(now_ms)
    }

    async fn rows<T>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>>
    where
        T: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
    {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        rows.rows::<T>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .collect::<std::result::Result<Vec<T>, _>>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))
    }

    async fn exec(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<()> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn load_static(&self, id: ConversationId) -> Result<Option<Conversation>> {
        let rows: Vec<ConvRow> = self.rows(&self.st.conv_get, (id.0,)).await?;
        let Some((id, kind, buyer, seller, listing, title, creator, participants, created_at)) =
            rows.into_iter().next()
        else {
            return Ok(None);
        };
        let kind = match kind {
            0 => ConversationKind::Direct {
                buyer: buyer.unwrap_or_default(),
                seller: seller.unwrap_or_default(),
                listing: listing.unwrap_or_default(),
            },
            1 => ConversationKind::Group {
                title: title.unwrap_or_default(),
                creator: creator.unwrap_or_default(),
            },
            k => return Err(StorageError::Corrupt(format!("conversation kind {k}"))),
        };
        Ok(Some(Conversation {
            id: ConversationId(id),
            kind,
            participants: participants.unwrap_or_default(),
            created_at_ms: created_at,
            last_activity_ms: created_at,
            last_message_id: None,
            last_seq: 0,
        }))
    }

    async fn load(&self, id: ConversationId) -> Result<Option<Conversation>> {
        let (c, activity) = tokio::try_join!(
            self.load_static(id),
            self.rows::<(Option<i64>, Option<i64>)>(&self.st.activity_get, (id.0,))
        )?;
        Ok(c.map(|mut c| {
            if let Some((last, at)) = activity.into_iter().next() {
                c.last_message_id = last.filter(|v| *v > 0).map(|v| MessageId(v as u64));
                if let Some(at) = at {
                    c.last_activity_ms = c.last_activity_ms.max(at);
                }
            }
            c
        }))
    }

    async fn message(&self, conv: ConversationId, id: MessageId) -> Result<Option<Message>> {
        let rows: Vec<MsgRow> = self
            .rows(&self.st.msg_get, (conv.0, id_bucket(id), id.0 as i64))
            .await?;
        rows.into_iter()
            .next()
            .map(|r| to_message(conv, r))
            .transpose()
    }

    async fn blocked_between(&self, a: &str, b: &str) -> Result<bool> {
        let (x, y) = tokio::try_join!(
            self.rows::<(String,)>(&self.st.block_get, (a, b)),
            self.rows::<(String,)>(&self.st.block_get, (b, a))
        )?;
        Ok(!x.is_empty() || !y.is_empty())
    }

    async fn read_state(&self, conv: ConversationId, user: &str) -> Result<Option<ReadState>> {
        let rows: Vec<(Option<i64>, Option<i64>)> =
            self.rows(&self.st.read_get, (conv.0, user)).await?;
        Ok(rows.into_iter().next().and_then(|(up_to, at)| {
            up_to.map(|u| ReadState {
                up_to: MessageId(u as u64),
                seq: 0,
                read_at_ms: at.unwrap_or(0),
            })
        }))
    }

    async fn write_read_state(
        &self,
        conv: ConversationId,
        user: &str,
        up_to: MessageId,
        at: i64,
    ) -> Result<()> {
        self.exec(
            &self.st.read_set,
            (up_to.0 as i64, up_to.0 as i64, at, conv.0, user),
        )
        .await
    }

    async fn member_ids(&self, user: &str) -> Result<Vec<ConversationId>> {
        let rows: Vec<(Uuid,)> = self.rows(&self.st.member_list, (user,)).await?;
        Ok(rows.into_iter().map(|(id,)| ConversationId(id)).collect())
    }

    async fn member_conversations(&self, user: &str) -> Result<Vec<Conversation>> {
        let ids = self.member_ids(user).await?;
        let loaded = {
            let futs: Vec<_> = ids.into_iter().map(|id| self.load(id)).collect();
            futures_join_all(futs).await
        }?;
        Ok(loaded.into_iter().flatten().collect())
    }

    /// Messages after `after` (exclusive), counted up to `cap`.
    async fn count_after(&self, c: &Conversation, after: MessageId, cap: usize) -> Result<u64> {
        let Some(last) = c.last_message_id else {
            return Ok(0);
        };
        if last <= after {
            return Ok(0);
        }
        let low = if after.0 == 0 {
            bucket_of(c.created_at_ms)
        } else {
            id_bucket(after)
        };
        let mut count = 0usize;
        let mut bucket = id_bucket(last);
        while bucket >= low && count < cap {
            let rows: Vec<(i64,)> = self
                .rows(
                    &self.st.msg_ids_after,
                    (c.id.0, bucket, after.0 as i64, (cap - count) as i32),
                )
                .await?;
            count += rows.len();
            bucket -= 1;
        }
        Ok(count as u64)
    }

    async fn unread(&self, c: &Conversation, user: &str) -> Result<u64> {
        let watermark = self
            .read_state(c.id, user)
            .await?
            .map_or(MessageId(0), |s| s.up_to);
        self.count_after(c, watermark, UNREAD_CAP).await
    }

    /// Memberships first, then the row that makes the conversation exist: a crash in between
    /// leaves only memberships that point nowhere (skipped by readers), never a conversation
    /// some participant cannot see.
    async fn insert_conversation(&self, c: &Conversation) -> Result<()> {
        {
            let futs: Vec<_> = c
                .participants
                .iter()
                .map(|u| self.exec(&self.st.member_insert, (u.clone(), c.id.0)))
                .collect();
            futures_join_all(futs).await
        }?;
        let (kind, buyer, seller, listing, title, creator) = match &c.kind {
            ConversationKind::Direct {
                buyer,
                seller,
                listing,
            } => (
                0i8,
                Some(buyer.clone()),
                Some(seller.clone()),
                Some(listing.clone()),
                None,
                None,
            ),
            ConversationKind::Group { title, creator } => (
                1i8,
                None,
                None,
                None,
                Some(title.clone()),
                Some(creator.clone()),
            ),
        };
        self.exec(
            &self.st.conv_insert,
            (
                c.id.0,
                kind,
                buyer,
                seller,
                listing,
                title,
                creator,
                c.participants.clone(),
                c.created_at_ms,
            ),
        )
        .await
    }

    async fn insert_message(&self, m: &Message) -> Result<()> {
        let common = (
            m.conversation.0,
            id_bucket(m.id),
            m.id.0 as i64,
            m.sender.clone(),
            m.kind.code() as i8,
            m.content.clone(),
            m.client_msg_id.clone(),
            m.created_at_ms,
        );
        match &m.media {
            None => self.exec(&self.st.msg_insert, common).await,
            Some(media) => {
                let (a, b, c, d, e, f, g, h) = common;
                self.exec(
                    &self.st.msg_insert_media,
                    (
                        a,
                        b,
                        c,
                        d,
                        e,
                        f,
                        g,
                        h,
                        media.url.clone(),
                        media.mime_type.clone(),
                        media.size_bytes as i64,
                        media.name.clone(),
                        media.width as i32,
                        media.height as i32,
                    ),
                )
                .await
            }
        }
    }

    /// Waits briefly for a row another writer is about to write (a racing creator).
    async fn eventually<T, F, Fut>(&self, mut probe: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        for i in 0..40u64 {
            if let Some(v) = probe().await? {
                return Ok(Some(v));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5 + i * 5)).await;
        }
        Ok(None)
    }
}

/// Runs futures with at most 32 in flight, in order, failing on the first error.
async fn futures_join_all<T, F>(futures: Vec<F>) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter(futures)
        .buffered(32)
        .try_collect()
        .await
}

fn to_message(conv: ConversationId, r: MsgRow) -> Result<Message> {
    let (
        id,
        sender,
        kind,
        content,
        client_msg_id,
        created_at,
        url,
        mime,
        size,
        name,
        width,
        height,
    ) = r;
    let kind = MessageKind::from_code(kind as u8)
        .ok_or_else(|| StorageError::Corrupt(format!("message kind {kind}")))?;
    Ok(Message {
        id: MessageId(id as u64),
        conversation: conv,
        sender,
        kind,
        content: content.unwrap_or_default(),
        media: url.map(|url| MediaRef {
            url,
            mime_type: mime.unwrap_or_default(),
            size_bytes: size.unwrap_or(0) as u64,
            name: name.unwrap_or_default(),
            width: width.unwrap_or(0) as u32,
            height: height.unwrap_or(0) as u32,
        }),
        client_msg_id: client_msg_id.unwrap_or_default(),
        created_at_ms: created_at,
        seq: 0,
    })
}

fn key_stripe(conv: ConversationId, sender: &str, client_msg_id: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (conv, sender, client_msg_id).hash(&mut h);
    (h.finish() as usize) % KEY_LOCKS
}

#[async_trait]
impl Storage for Scylla {
    async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created> {
        if buyer.is_empty() || seller.is_empty() || listing.is_empty() {
            return Err(StorageError::Invalid(
                "buyer, seller and listing are required",
            ));
        }
        if buyer == seller {
            return Err(StorageError::Invalid("buyer and seller must differ"));
        }
        let existing = |this: &Self| {
            let this = this.clone();
            let (b, s, l) = (buyer.to_owned(), seller.to_owned(), listing.to_owned());
            async move {
                let rows: Vec<(Option<Uuid>,)> = this.rows(&this.st.direct_get, (b, s, l)).await?;
                Ok::<_, StorageError>(rows.into_iter().next().and_then(|(id,)| id))
            }
        };
        if let Some(id) = existing(self).await? {
            let c = self
                .eventually(|| self.load(ConversationId(id)))
                .await?
                .ok_or_else(|| StorageError::Unavailable("conversation row missing".into()))?;
            return Ok(Created {
                conversation: c,
                created: false,
            });
        }
        if self.blocked_between(buyer, seller).await? {
            return Err(StorageError::Blocked);
        }
        let id = ConversationId::random();
        let claim = self
            .session
            .execute_unpaged(&self.st.direct_claim, (buyer, seller, listing, id.0))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let applied = claim
            .rows::<scylla::value::Row>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .next()
            .and_then(|r| r.ok())
            .and_then(|r| r.columns.first().cloned().flatten())
            .and_then(|v| v.as_boolean())
            .unwrap_or(false);
        if !applied {
            // Someone else created it first: theirs is the one.
            let winner = existing(self)
                .await?
                .ok_or_else(|| StorageError::Unavailable("direct claim vanished".into()))?;
            let c = self
                .eventually(|| self.load(ConversationId(winner)))
                .await?
                .ok_or_else(|| StorageError::Unavailable("conversation row missing".into()))?;
            return Ok(Created {
                conversation: c,
                created: false,
            });
        }
        let c = Conversation::new_direct(id, buyer, seller, listing, now_ms);
        self.insert_conversation(&c).await?;
        Ok(Created {
            conversation: c,
            created: true,
        })
    }

    async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation> {
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
        if all.len() > MAX_GROUP_PARTICIPANTS {
            return Err(StorageError::Invalid("too many participants"));
        }
        let kind = ConversationKind::Group {
            title: title.to_owned(),
            creator: creator.to_owned(),
        };
        let c = Conversation::new(ConversationId::random(), kind, all, now_ms);
        self.insert_conversation(&c).await?;
        Ok(c)
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        self.load(id).await
    }

    async fn delete_conversation(&self, id: ConversationId, by: &str) -> Result<Conversation> {
        let c = self.load(id).await?.ok_or(StorageError::NotFound)?;
        if !c.may_delete(by) {
            return Err(StorageError::Forbidden(
                "only its owners may delete a conversation",
            ));
        }
        // The row that makes it exist goes first; the rest is cleanup.
        self.exec(&self.st.conv_delete, (id.0,)).await?;
        if let ConversationKind::Direct {
            buyer,
            seller,
            listing,
        } = &c.kind
        {
            self.exec(&self.st.direct_delete, (buyer, seller, listing))
                .await?;
        }
        {
            let futs: Vec<_> = c
                .participants
                .iter()
                .map(|u| self.exec(&self.st.member_delete, (u.clone(), id.0)))
                .collect();
            futures_join_all(futs).await
        }?;
        let last = c
            .last_message_id
            .map_or(bucket_of(c.created_at_ms), id_bucket);
        let first = bucket_of(c.created_at_ms);
        {
            let futs: Vec<_> = (first..=last)
                .map(|b| self.exec(&self.st.msg_delete_bucket, (id.0, b)))
                .collect();
            futures_join_all(futs).await
        }?;
        tokio::try_join!(
            self.exec(&self.st.key_delete_all, (id.0,)),
            self.exec(&self.st.read_delete_all, (id.0,)),
            self.exec(&self.st.activity_delete, (id.0,)),
        )?;
        Ok(c)
    }

    async fn append(&self, m: NewMessage) -> Result<Appended> {
        let c = self
            .load(m.conversation)
            .await?
            .ok_or(StorageError::NotFound)?;
        if !c.has_participant(&m.sender) {
            return Err(StorageError::Forbidden("not a participant"));
        }
        let _key = self.key_locks[key_stripe(m.conversation, &m.sender, &m.client_msg_id)]
            .lock()
            .await;
        let key = (m.conversation.0, m.sender.clone(), m.client_msg_id.clone());
        let found: Vec<(Option<i64>, Option<i32>)> =
            self.rows(&self.st.key_get, key.clone()).await?;
        if let Some((Some(id), _)) = found.into_iter().next() {
            let id = MessageId(id as u64);
            if let Some(message) = self.message(m.conversation, id).await? {
                return Ok(Appended {
                    message,
                    duplicate: true,
                });
            }
            // The first attempt stopped between its key and its message: finish it, same id.
            let message = m.into_message(id, 0, timestamp_ms(id));
            self.insert_message(&message).await?;
            return Ok(Appended {
                message,
                duplicate: false,
            });
        }
        if let ConversationKind::Direct { buyer, seller, .. } = &c.kind
            && self.blocked_between(buyer, seller).await?
        {
            return Err(StorageError::Blocked);
        }
        let id = self.next_id(m.now_ms);
        self.exec(
            &self.st.key_insert,
            (
                key.0,
                key.1.clone(),
                key.2.clone(),
                id.0 as i64,
                id_bucket(id),
            ),
        )
        .await?;
        // Read the key back: a racing writer of the same key on another node may have won.
        let back: Vec<(Option<i64>, Option<i32>)> = self.rows(&self.st.key_get, key).await?;
        if let Some((Some(other), _)) = back.into_iter().next()
            && other as u64 != id.0
        {
            let other = MessageId(other as u64);
            let message = self
                .eventually(|| self.message(m.conversation, other))
                .await?
                .ok_or_else(|| {
                    StorageError::Unavailable("racing duplicate not stored yet".into())
                })?;
            return Ok(Appended {
                message,
                duplicate: true,
            });
        }
        let now_ms = m.now_ms;
        let message = m.into_message(id, 0, now_ms);
        self.insert_message(&message).await?;
        tokio::try_join!(
            self.exec(
                &self.st.activity_set,
                (id.0 as i64, id.0 as i64, now_ms, message.conversation.0)
            ),
            self.write_read_state(message.conversation, &message.sender, id, now_ms),
        )?;
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let Some(c) = self.load(conversation).await? else {
            return Ok(HistoryPage::default());
        };
        let Some(last) = c.last_message_id else {
            return Ok(HistoryPage::default());
        };
        let start = before.unwrap_or(MessageId(u64::MAX));
        let low = bucket_of(c.created_at_ms);
        let mut bucket = id_bucket(start.min(MessageId(last.0.saturating_add(1))));
        let mut messages = Vec::with_capacity(limit + 1);
        // One extra row tells whether an older page exists.
        while bucket >= low && messages.len() <= limit {
            let want = (limit + 1 - messages.len()) as i32;
            let rows: Vec<MsgRow> = self
                .rows(
                    &self.st.msg_before,
                    (
                        conversation.0,
                        bucket,
                        start.0.min(i64::MAX as u64) as i64,
                        want,
                    ),
                )
                .await?;
            for r in rows {
                messages.push(to_message(conversation, r)?);
            }
            bucket -= 1;
        }
        let more = messages.len() > limit;
        messages.truncate(limit);
        let next_before = if more {
            messages.last().map(|m| m.id)
        } else {
            None
        };
        Ok(HistoryPage {
            messages,
            next_before,
        })
    }

    async fn messages_after(
        &self,
        conversation: ConversationId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let Some(c) = self.load(conversation).await? else {
            return Ok(Vec::new());
        };
        let Some(last) = c.last_message_id else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if after >= last || after.0 > i64::MAX as u64 {
            return Ok(out);
        }
        let mut bucket = if after.0 == 0 {
            bucket_of(c.created_at_ms)
        } else {
            id_bucket(after).max(bucket_of(c.created_at_ms))
        };
        let high = id_bucket(last);
        while bucket <= high && out.len() < limit {
            let want = (limit - out.len()) as i32;
            let rows: Vec<MsgRow> = self
                .rows(
                    &self.st.msg_after,
                    (conversation.0, bucket, after.0 as i64, want),
                )
                .await?;
            for r in rows {
                out.push(to_message(conversation, r)?);
            }
            bucket += 1;
        }
        Ok(out)
    }

    async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome> {
        let c = self
            .load(conversation)
            .await?
            .ok_or(StorageError::NotFound)?;
        if !c.has_participant(user) {
            return Err(StorageError::Forbidden("not a participant"));
        }
        let current = self
            .read_state(conversation, user)
            .await?
            .unwrap_or(ReadState {
                up_to: MessageId(0),
                seq: 0,
                read_at_ms: 0,
            });
        // The newest message at or before `up_to`.
        let target = match c.last_message_id {
            None => None,
            Some(last) if last <= up_to => Some(last),
            Some(_) => {
                let low = bucket_of(c.created_at_ms);
                let mut bucket = id_bucket(up_to);
                let mut found = None;
                while bucket >= low && found.is_none() {
                    let rows: Vec<(i64,)> = self
                        .rows(
                            &self.st.msg_at_or_before,
                            (conversation.0, bucket, up_to.0.min(i64::MAX as u64) as i64),
                        )
                        .await?;
                    found = rows.into_iter().next().map(|(id,)| MessageId(id as u64));
                    bucket -= 1;
                }
                found
            }
        };
        match target {
            Some(id) if id > current.up_to => {
                self.write_read_state(conversation, user, id, now_ms)
                    .await?;
                Ok(ReadOutcome {
                    state: ReadState {
                        up_to: id,
                        seq: 0,
                        read_at_ms: now_ms,
                    },
                    advanced: true,
                })
            }
            _ => Ok(ReadOutcome {
                state: current,
                advanced: false,
            }),
        }
    }

    async fn list_conversations(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut all = self.member_conversations(user).await?;
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
        let rest = all.get(start..).unwrap_or_default();
        let page: Vec<&Conversation> = rest.iter().take(limit).collect();
        let items = {
            let futs: Vec<_> = page
                .iter()
                .map(|c| async move {
                    let last_message = match c.last_message_id {
                        Some(id) => self.message(c.id, id).await?,
                        None => None,
                    };
                    Ok(ConversationSummary {
                        unread: self.unread(c, user).await?,
                        conversation: (*c).clone(),
                        last_message,
                    })
                })
                .collect();
            futures_join_all(futs).await
        }?;
        let next_cursor = if rest.len() > limit {
            items.last().map(|s| ListCursor {
                last_activity_ms: s.conversation.last_activity_ms,
                id: s.conversation.id,
            })
        } else {
            None
        };
        Ok(ConversationPage { items, next_cursor })
    }

    async fn unread_counts(&self, user: &str) -> Result<Vec<(ConversationId, u64)>> {
        let all = self.member_conversations(user).await?;
        let counts = {
            let futs: Vec<_> = all
                .iter()
                .map(|c| async move { Ok((c.id, self.unread(c, user).await?)) })
                .collect();
            futures_join_all(futs).await
        }?;
        Ok(counts.into_iter().filter(|(_, n)| *n > 0).collect())
    }

    async fn contacts(&self, user: &str) -> Result<Vec<String>> {
        let set: BTreeSet<String> = self
            .member_conversations(user)
            .await?
            .into_iter()
            .flat_map(|c| c.participants)
            .filter(|p| p != user)
            .collect();
        Ok(set.into_iter().collect())
    }

    async fn set_block(&self, user: &str, target: &str, blocked: bool, now_ms: i64) -> Result<()> {
        if blocked {
            self.exec(&self.st.block_insert, (user, target, now_ms))
                .await
        } else {
            self.exec(&self.st.block_delete, (user, target)).await
        }
    }

    async fn is_blocked_between(&self, a: &str, b: &str) -> Result<bool> {
        self.blocked_between(a, b).await
    }

    async fn report(&self, report: NewReport) -> Result<Uuid> {
        let id = Uuid::new_v4();
        self.exec(
            &self.st.report_insert,
            (
                id,
                report.reporter,
                report.reported_user,
                report.conversation.map(|c| c.0),
                report.message.map(|m| m.0 as i64),
                report.reason,
                report.now_ms,
            ),
        )
        .await?;
        Ok(id)
    }

    async fn health(&self) -> Result<()> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
