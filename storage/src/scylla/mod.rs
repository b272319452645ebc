//! The ScyllaDB engine (also runs on Apache Cassandra 4/5): prepared statements
//! ([`statements`]), token-aware routing (the driver's default for prepared statements), rows
//! as derived structs ([`rows`]), the schema in `deploy/cql/`.
//!
//! Design, table by table (see `deploy/cql/schema.cql`):
//! - **messages_by_seq**: `((conversation_id, bucket), seq DESC)` with [`SEQ_BUCKET`] seqs per
//!   partition, so partitions have a fixed size, a message's partition follows from its seq,
//!   and history and resume never walk empty partitions. Each row is written by a lightweight
//!   transaction claiming its seq (see `messages`): seqs are dense across every node.
//! - **conversation_heads**: last seq, id and activity, written `USING TIMESTAMP <seq>` so the
//!   newest wins however writes interleave. Writers start their claim there; unread counts are
//!   `last_seq - watermark seq`, exact and O(1).
//! - **direct uniqueness**: a lightweight transaction (`INSERT … IF NOT EXISTS`) on
//!   `direct_conversations` claims (buyer, seller, listing); the loser reads the winner's id.
//! - **idempotent sends**: the key row (conversation, sender, client_msg_id) → message id is
//!   written before the claim and read back (a racing retry on another node yields to the id
//!   that won); within one node, sends of one key are serialised by a striped lock.
//! - **read_watermarks**: written `USING TIMESTAMP <seq>`, so an older watermark never
//!   overwrites a newer one. Deletes use a timestamp above every seq.

mod conversations;
mod messages;
mod rows;
mod safety;
mod statements;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use parley_types::ids::IdGenerator;
use parley_types::*;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use crate::Storage;
use crate::error::{Result, StorageError};
use statements::Statements;

/// Seqs per partition of `messages_by_seq`: partition `seq / SEQ_BUCKET`.
pub const SEQ_BUCKET: u64 = 10_000;
/// A write timestamp above every seq: deletes of rows written `USING TIMESTAMP <seq>`.
const DELETE_TIMESTAMP: i64 = 9_000_000_000_000_000_000;
/// Striped locks serialising sends of one idempotency key on this node.
const KEY_LOCKS: usize = 256;
/// Striped locks serialising this node's seq claims per conversation (so this node's writers
/// of one conversation do not contend in Paxos with each other), each remembering the last
/// seq it claimed.
const CLAIM_LOCKS: usize = 1024;

/// The last claim made under one claim lock: where the next claim of that conversation starts.
#[derive(Clone, Copy)]
struct ClaimHint {
    conversation: ConversationId,
    seq: u64,
    id: MessageId,
}

impl Default for ClaimHint {
    fn default() -> Self {
        Self {
            conversation: ConversationId(Uuid::nil()),
            seq: 0,
            id: MessageId(0),
        }
    }
}

/// The CQL schema, applied by [`Scylla::migrate`].
pub const SCHEMA: &str = include_str!("../../../deploy/cql/schema.cql");

/// Writes `blocks_by_target` rows for every block (blocks made before that table existed have
/// none; for the others this rewrites what is there). Page by page; blocks are few.
async fn backfill_blocked_by(session: &scylla::client::session::Session, ks: &str) -> Result<()> {
    use scylla::response::{PagingState, PagingStateResponse};
    let select = format!("SELECT blocker, blocked, created_at FROM {ks}.blocks");
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.blocks_by_target (blocked, blocker, created_at) VALUES (?, ?, ?)"
        ))
        .await
        .map_err(unavailable)?;
    let mut paging = PagingState::start();
    loop {
        let (result, next) = session
            .query_single_page(select.as_str(), &[], paging)
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        for row in rows
            .rows::<(String, String, Option<i64>)>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
        {
            let (blocker, blocked, at) = row.map_err(|e| StorageError::Corrupt(e.to_string()))?;
            session
                .execute_unpaged(&insert, (blocked, blocker, at))
                .await
                .map_err(unavailable)?;
        }
        match next {
            PagingStateResponse::HasMorePages { state } => paging = state,
            PagingStateResponse::NoMorePages => return Ok(()),
        }
    }
}

/// `ALTER TABLE … ADD` unless the column exists (CQL has no `ADD IF NOT EXISTS` on every
/// server this runs on).
async fn add_column(
    session: &scylla::client::session::Session,
    ks: &str,
    table: &str,
    column: &str,
    cql_type: &str,
) -> Result<()> {
    let found = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (ks, table, column),
        )
        .await
        .map_err(unavailable)?
        .into_rows_result()
        .map_err(unavailable)?
        .rows_num();
    if found == 0 {
        session
            .query_unpaged(
                format!("ALTER TABLE {ks}.{table} ADD {column} {cql_type}"),
                &[],
            )
            .await
            .map_err(unavailable)?;
        session
            .await_schema_agreement()
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Copies the reports of earlier versions (table `reports`) into `moderation_reports` and its
/// lists, with time-ordered ids made from their time and old id (the same on every run: a
/// report already copied is left as it is).
async fn copy_reports(
    session: &scylla::client::session::Session,
    nodes: &[String],
    ks: &str,
) -> Result<()> {
    use scylla::response::{PagingState, PagingStateResponse};
    type Row = (
        Uuid,
        Option<String>,
        Option<String>,
        Option<Uuid>,
        Option<i64>,
        Option<String>,
        Option<i64>,
    );
    let engine = Scylla::connect(&ScyllaConfig {
        nodes: nodes.to_vec(),
        keyspace: ks.to_owned(),
        consistency: Consistency::LocalQuorum,
        node_id: 0,
    })
    .await?;
    let select = format!(
        "SELECT id, reporter, reported_user, conversation_id, message_id, reason, created_at FROM {ks}.reports"
    );
    let mut paging = PagingState::start();
    loop {
        let (result, next) = session
            .query_single_page(select.as_str(), &[], paging)
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        for row in rows
            .rows::<Row>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
        {
            let (id, reporter, reported, conv, message, reason, at) =
                row.map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let at = at.unwrap_or(0);
            let report = Report {
                id: crate::rules::legacy_report_id(id, at),
                reporter: reporter.unwrap_or_default(),
                reported_user: reported.unwrap_or_default(),
                conversation: conv.map(ConversationId),
                message: message.map(|m| MessageId(m as u64)),
                reason: reason.unwrap_or_default(),
                created_at_ms: at,
                snapshot: ReportSnapshot::default(),
                resolution: None,
                held: None,
            };
            engine.put_new_report(&report).await?;
        }
        match next {
            PagingStateResponse::HasMorePages { state } => paging = state,
            PagingStateResponse::NoMorePages => return Ok(()),
        }
    }
}

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

/// The partition of `messages_by_seq` holding `seq`.
fn seq_bucket(seq: u64) -> i32 {
    i32::try_from(seq / SEQ_BUCKET).unwrap_or(i32::MAX)
}

/// The ScyllaDB / Cassandra engine. Cheap to clone.
#[derive(Clone)]
pub struct Scylla {
    session: Arc<Session>,
    st: Arc<Statements>,
    ids: Arc<Mutex<IdGenerator>>,
    key_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    claim_locks: Arc<Vec<tokio::sync::Mutex<ClaimHint>>>,
}

impl Scylla {
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
            key_locks: Arc::new((0..KEY_LOCKS).map(|_| Default::default()).collect()),
            claim_locks: Arc::new((0..CLAIM_LOCKS).map(|_| Default::default()).collect()),
        })
    }
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
        for (column, kind) in [
            ("visibility", "tinyint"),
            ("media_id", "text"),
            ("media_thumb_width", "int"),
            ("media_thumb_height", "int"),
            ("media_placeholder", "text"),
            ("media_duration_ms", "int"),
        ] {
            add_column(&session, keyspace, "messages_by_seq", column, kind).await?;
        }
        backfill_blocked_by(&session, keyspace).await?;
        copy_reports(&session, nodes, keyspace).await
    }
    /// This node's next id at `now_ms`, above `floor` (the id of the seq before).
    fn next_id_after(&self, now_ms: i64, floor: MessageId) -> MessageId {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_after(now_ms, floor)
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
    /// Runs a lightweight transaction: whether it applied, and the row it found when not.
    async fn lwt(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Lwt> {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let row = rows
            .rows::<scylla::value::Row>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .next()
            .ok_or_else(|| StorageError::Corrupt("a transaction without an answer".into()))?
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        Ok(Lwt {
            columns: names.into_iter().zip(row.columns).collect(),
        })
    }
    /// Probes until it finds something, for about 4 s (5 ms apart at first, then slower).
    async fn eventually<T, F, Fut>(&self, probe: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        self.eventually_for(std::time::Duration::from_secs(4), probe)
            .await
    }

    /// Probes until it finds something or `budget` (of waiting between probes) is spent.
    async fn eventually_for<T, F, Fut>(
        &self,
        budget: std::time::Duration,
        mut probe: F,
    ) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let mut waited = std::time::Duration::ZERO;
        for i in 0u64.. {
            if let Some(v) = probe().await? {
                return Ok(Some(v));
            }
            let pause = std::time::Duration::from_millis(5 + i * 5);
            if waited + pause > budget {
                return Ok(None);
            }
            waited += pause;
            tokio::time::sleep(pause).await;
        }
        Ok(None)
    }
}

/// A lightweight transaction's answer: `[applied]`, and the existing row when it did not.
struct Lwt {
    columns: Vec<(String, Option<scylla::value::CqlValue>)>,
}

impl Lwt {
    fn column(&self, name: &str) -> Option<&scylla::value::CqlValue> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_ref())
    }
    fn applied(&self) -> bool {
        self.column("[applied]").and_then(|v| v.as_boolean()) == Some(true)
    }
    fn bigint(&self, name: &str) -> Option<i64> {
        self.column(name).and_then(|v| v.as_bigint())
    }
    fn text(&self, name: &str) -> String {
        self.column(name)
            .and_then(|v| v.as_text())
            .cloned()
            .unwrap_or_default()
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

fn key_stripe(conv: ConversationId, sender: &str, client_msg_id: &str) -> usize {
    stripe(&(conv, sender, client_msg_id), KEY_LOCKS)
}

fn claim_stripe(conv: ConversationId) -> usize {
    stripe(&conv, CLAIM_LOCKS)
}

fn stripe(key: &impl std::hash::Hash, n: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    (h.hash_one(key) as usize) % n
}

// The trait's methods are the inherent ones of the same name in `conversations`, `messages`
// and `safety` (`Scylla::name` resolves to the inherent method).
#[async_trait]
impl Storage for Scylla {
    async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created> {
        Scylla::create_direct(self, buyer, seller, listing, now_ms).await
    }
    async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation> {
        crate::rules::group(creator, participants, title)?;
        Scylla::create_group(self, creator, participants, title, now_ms).await
    }
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        self.load(id).await
    }
    async fn delete_conversation(&self, id: ConversationId, by: &str) -> Result<Conversation> {
        crate::rules::users([by])?;
        Scylla::delete_conversation(self, id, by).await
    }
    async fn append(&self, m: NewMessage) -> Result<Appended> {
        crate::rules::message(&m)?;
        Scylla::append(self, m).await
    }
    async fn history(
        &self,
        c: ConversationId,
        before: Option<Position>,
        limit: usize,
    ) -> Result<HistoryPage> {
        Scylla::history(self, c, before, limit).await
    }
    async fn messages_after(
        &self,
        c: ConversationId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Message>> {
        Scylla::messages_after(self, c, after, limit).await
    }
    async fn conversations_after(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        self.scan(after, limit).await
    }
    async fn messages_at(&self, at: Vec<(ConversationId, u64)>) -> Result<Vec<Option<Message>>> {
        Scylla::messages_at(self, at).await
    }
    async fn mark_read(
        &self,
        c: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome> {
        crate::rules::users([user])?;
        Scylla::mark_read(self, c, user, up_to, now_ms).await
    }
    async fn read_state(&self, c: ConversationId, user: &str) -> Result<Option<ReadState>> {
        crate::rules::users([user])?;
        Scylla::read_state(self, c, user).await
    }
    async fn list_conversations(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage> {
        crate::rules::users([user])?;
        Scylla::list_conversations(self, user, cursor, limit).await
    }
    async fn unread_counts(&self, user: &str) -> Result<Vec<(ConversationId, u64)>> {
        crate::rules::users([user])?;
        Scylla::unread_counts(self, user).await
    }
    async fn blocks(&self, user: &str) -> Result<Vec<(String, i64)>> {
        crate::rules::users([user])?;
        Scylla::blocks(self, user).await
    }
    async fn put_value(&self, owner: &str, key: &str, value: Option<Vec<u8>>) -> Result<()> {
        crate::rules::value(owner, key, value.as_deref())?;
        Scylla::put_value(self, owner, key, value).await
    }
    async fn values(
        &self,
        owner: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        crate::rules::value_prefix(owner, prefix)?;
        Scylla::values(self, owner, prefix, limit).await
    }
    async fn block_relations(&self, user: &str) -> Result<Vec<String>> {
        crate::rules::users([user])?;
        Scylla::block_relations(self, user).await
    }
    async fn contacts(&self, user: &str, max_participants: usize) -> Result<Vec<String>> {
        crate::rules::users([user])?;
        Scylla::contacts(self, user, max_participants).await
    }
    async fn set_block(&self, user: &str, target: &str, blocked: bool, now_ms: i64) -> Result<()> {
        crate::rules::users([user, target])?;
        Scylla::set_block(self, user, target, blocked, now_ms).await
    }
    async fn is_blocked_between(&self, a: &str, b: &str) -> Result<bool> {
        crate::rules::users([a, b])?;
        self.blocked_between(a, b).await
    }
    async fn report(&self, report: NewReport) -> Result<Uuid> {
        crate::rules::report(&report)?;
        Scylla::report(self, report).await
    }
    async fn report_by_id(&self, id: Uuid) -> Result<Option<Report>> {
        Scylla::report_by_id(self, id).await
    }
    async fn reports(
        &self,
        filter: &ReportFilter,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Report>> {
        if let Some(u) = &filter.reported_user {
            crate::rules::users([u.as_str()])?;
        }
        Scylla::reports(self, filter, before, limit).await
    }
    async fn moderate(&self, entry: ModerationEntry) -> Result<Standing> {
        crate::rules::moderation(&entry)?;
        Scylla::moderate(self, entry).await
    }
    async fn standing(&self, user: &str) -> Result<Standing> {
        crate::rules::users([user])?;
        Scylla::standing(self, user).await
    }
    async fn moderation_log(
        &self,
        target: Option<&str>,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<ModerationEntry>> {
        if let Some(t) = target {
            crate::rules::users([t])?;
        }
        Scylla::moderation_log(self, target, before, limit).await
    }
    async fn health(&self) -> Result<()> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
