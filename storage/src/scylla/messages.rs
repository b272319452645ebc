//! Messages: seqs claimed by lightweight transactions, history by seq, idempotent appends,
//! read watermarks.
//!
//! **Appending.** A writer claims the next seq with `INSERT … IF NOT EXISTS` on the row
//! `(conversation, seq)`. It starts from the conversation's head (last seq and id, written after
//! every claim `USING TIMESTAMP seq`, so it may lag but never runs ahead of the claims) and
//! walks forward on every claim someone else won, learning that row's id. So seq `n + 1` is
//! claimed only after `n` was — seqs are dense — and a claim is linearizable, so a reader that
//! sees `n + 1` can read `n`. The id it writes is above the id of `n` (its node's next id, or
//! just above that one), so ids increase with seq and a message is found by id with a binary
//! search over seqs. After a few lost claims it reads the partition's top at LOCAL_SERIAL and
//! jumps there.
//!
//! **Idempotency.** The key row (conversation, sender, client_msg_id) → message id is written
//! and read back before the claim (a racing retry on another node yields to the id that won),
//! and gets the seq once claimed. A retry that finds a key without a seq looks for its claim
//! among the newest messages; a retry that finds none claims anew. Only a first attempt whose
//! claim is still in flight when its retry (on another node) gives up looking could store the
//! message twice.

use parley_types::*;

use super::rows::{MsgInsert, MsgRow};
use super::{ClaimHint, SEQ_BUCKET, Scylla, claim_stripe, key_stripe, seq_bucket};
use crate::MAX_PAGE;

/// Largest gap between two seqs read in one range by [`Scylla::messages_at`].
const RUN_GAP: u64 = 8;
/// Range reads of [`Scylla::messages_at`] in flight at once.
const READS_IN_FLIGHT: usize = 16;
use crate::error::{Result, StorageError};

/// How far past a (lagging) head a Read looks for the message it names.
const HEAD_LAG_PROBE: u64 = 64;
/// Lost claims before the writer reads the partition's top instead of walking.
const WALK: u32 = 3;
/// How many of the newest messages a retry searches for its earlier claim.
const RETRY_SEARCH: usize = 1000;
/// How long a send's key may stay owned by an attempt that stored nothing before a retry
/// presumes it dead and takes over, ms. An attempt stops trying to claim a seq
/// [`CLAIM_GIVE_UP`] after it got its key, and a claim in flight then ends within Cassandra's
/// CAS timeouts (1–2 s), so the two cannot both store unless clocks differ by seconds.
const KEY_TAKE_OVER_MS: i64 = 10_000;
const CLAIM_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(4);
/// How long a retry waits for the attempt that owns its key to store the message.
const OWNER_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);
/// Times a claim whose outcome is unknown (a timeout, say) is sent again, 20 ms after the
/// first failure, doubling.
const CLAIM_RETRIES: u32 = 4;

/// An idempotency key: (conversation, sender, client_msg_id).
type SendKey = (uuid::Uuid, String, String);

/// What a claim of a seq found.
enum Claim {
    Won,
    /// Someone holds the seq: their message's id, sender and client_msg_id.
    Taken(MessageId, String, String),
}

impl Scylla {
    /// The message at `seq`.
    pub(super) async fn message(&self, conv: ConversationId, seq: u64) -> Result<Option<Message>> {
        let st = &self.st.messages.msg_get;
        let rows: Vec<MsgRow> = self.rows(st, (conv.0, seq_bucket(seq), seq as i64)).await?;
        rows.into_iter()
            .next()
            .map(|r| r.into_message(conv))
            .transpose()
    }

    /// The seq of the newest message with id ≤ `id` among `1..=last` (0: none): a binary search
    /// over seqs (ids increase with seq).
    pub(super) async fn seq_at_or_before(
        &self,
        conv: ConversationId,
        last: u64,
        id: MessageId,
    ) -> Result<u64> {
        let (mut lo, mut hi) = (0u64, last);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let m = self.message(conv, mid).await?.ok_or_else(|| {
                StorageError::Unavailable(format!("message seq {mid} not readable"))
            })?;
            if m.id <= id {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// The seq of the message of `c` whose id is `id`, if there is one. The head may lag the
    /// claims, so past it the next seqs are looked at one by one (ids increase with seq).
    async fn exact_seq(&self, c: &Conversation, id: MessageId) -> Result<Option<u64>> {
        if c.last_message_id.is_none_or(|last| last < id) {
            for seq in c.last_seq + 1..=c.last_seq + HEAD_LAG_PROBE {
                match self.message(c.id, seq).await? {
                    Some(m) if m.id == id => return Ok(Some(seq)),
                    Some(m) if m.id < id => continue,
                    _ => return Ok(None),
                }
            }
            return Ok(None);
        }
        let seq = self.seq_at_or_before(c.id, c.last_seq, id).await?;
        Ok(match seq {
            0 => None,
            seq if seq == c.last_seq => (c.last_message_id == Some(id)).then_some(seq),
            seq => self
                .message(c.id, seq)
                .await?
                .and_then(|m| (m.id == id).then_some(seq)),
        })
    }

    /// The seq `p` stands for in `c`.
    async fn position_seq(&self, c: &Conversation, p: Position) -> Result<u64> {
        if p.seq > 0 || p.id.0 == 0 {
            return Ok(p.seq);
        }
        if c.last_message_id.is_some_and(|last| last <= p.id) {
            return Ok(c.last_seq);
        }
        self.seq_at_or_before(c.id, c.last_seq, p.id).await
    }

    pub(super) async fn read_state(
        &self,
        conv: ConversationId,
        user: &str,
    ) -> Result<Option<ReadState>> {
        let rows: Vec<(Option<i64>, Option<i64>, Option<i64>)> = self
            .rows(&self.st.messages.mark_get, (conv.0, user))
            .await?;
        Ok(rows.into_iter().next().and_then(|(up_to, seq, at)| {
            up_to.map(|u| ReadState {
                up_to: MessageId(u as u64),
                seq: seq.unwrap_or(0) as u64,
                read_at_ms: at.unwrap_or(0),
            })
        }))
    }

    pub(super) async fn write_read_state(
        &self,
        conv: ConversationId,
        user: &str,
        state: &ReadState,
    ) -> Result<()> {
        let seq = state.seq as i64;
        let values = (
            seq,
            state.up_to.0 as i64,
            seq,
            state.read_at_ms,
            conv.0,
            user,
        );
        self.exec(&self.st.messages.mark_set, values).await
    }

    pub(super) async fn unread(&self, c: &Conversation, user: &str) -> Result<u64> {
        let read = self.read_state(c.id, user).await?.map_or(0, |s| s.seq);
        Ok(c.last_seq.saturating_sub(read))
    }

    /// Claims `seq` for `m` (a lightweight transaction).
    async fn claim(&self, m: &Message) -> Result<Claim> {
        let row = MsgInsert::new(m, seq_bucket(m.seq));
        let st = &self.st.messages;
        let answer = match &m.media {
            None => self.lwt(&st.msg_claim, row).await?,
            Some(media) => self.lwt(&st.msg_claim_media, row.with_media(media)).await?,
        };
        if answer.applied() {
            return Ok(Claim::Won);
        }
        Ok(Claim::Taken(
            MessageId(answer.bigint("message_id").unwrap_or(0) as u64),
            answer.text("sender"),
            answer.text("client_msg_id"),
        ))
    }

    /// The newest claimed seq and its id at LOCAL_SERIAL, looking from `from`'s partition on.
    async fn top(&self, conv: ConversationId, from: u64) -> Result<Option<(u64, MessageId)>> {
        let mut bucket = seq_bucket(from);
        let mut best = None;
        loop {
            let rows: Vec<(i64, i64)> = self
                .rows(&self.st.messages.msg_top, (conv.0, bucket))
                .await?;
            match rows.into_iter().next() {
                Some((seq, id)) => {
                    best = Some((seq as u64, MessageId(id as u64)));
                    // Full partition: the next one may hold more.
                    if seq as u64 % SEQ_BUCKET != SEQ_BUCKET - 1 {
                        return Ok(best);
                    }
                    bucket += 1;
                }
                None => return Ok(best),
            }
        }
    }

    /// A claim, sent again (same seq, same id) while its outcome is unknown: a timeout or an
    /// unavailable replica. An answer naming this very id means an earlier try won.
    async fn claim_settled(&self, m: &Message, started: std::time::Instant) -> Result<Claim> {
        let mut failures = 0;
        loop {
            match self.claim(m).await {
                Ok(Claim::Taken(id, ..)) if id == m.id => return Ok(Claim::Won),
                Ok(claim) => return Ok(claim),
                Err(e) if failures == CLAIM_RETRIES || started.elapsed() > CLAIM_GIVE_UP => {
                    return Err(e);
                }
                Err(_) => {
                    failures += 1;
                    let backoff = std::time::Duration::from_millis(10 << failures);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Claims the next free seq of `c` for `m`, setting its seq and id to what won. Claims of
    /// one conversation on this node take turns (a striped lock that remembers the last seq
    /// claimed), so they contend in Paxos only with other nodes. `Ok(Some(message))` when a seq
    /// went to this very send's earlier attempt (a racing retry): that message.
    async fn claim_next(&self, c: &Conversation, m: &mut Message) -> Result<Option<Message>> {
        let started = std::time::Instant::now();
        let mut hint = self.claim_locks[claim_stripe(c.id)].lock().await;
        let mut after = c.last_seq;
        let mut floor = c.last_message_id.unwrap_or_default();
        if hint.conversation == c.id && hint.seq > after {
            (after, floor) = (hint.seq, floor.max(hint.id));
        }
        let mut lost = 0u32;
        loop {
            if started.elapsed() > CLAIM_GIVE_UP {
                // A retry may take the key over soon: claiming now could store it twice.
                return Err(StorageError::Unavailable("no seq claimed in time".into()));
            }
            m.seq = after + 1;
            m.id = self.next_id_after(m.created_at_ms, floor);
            match self.claim_settled(m, started).await? {
                Claim::Won => {
                    *hint = ClaimHint {
                        conversation: c.id,
                        seq: m.seq,
                        id: m.id,
                    };
                    return Ok(None);
                }
                Claim::Taken(id, sender, key) if sender == m.sender && key == m.client_msg_id => {
                    // Our own earlier attempt (a retry racing it) holds this seq.
                    let theirs = self.message(c.id, m.seq).await?;
                    return Ok(theirs.or(Some(Message { id, ..m.clone() })));
                }
                Claim::Taken(id, _, _) => {
                    after += 1;
                    floor = floor.max(id);
                    lost += 1;
                    if lost.is_multiple_of(WALK)
                        && let Some((seq, id)) = self.top(c.id, after).await?
                        && seq > after
                    {
                        (after, floor) = (seq, floor.max(id));
                    }
                }
            }
        }
    }

    /// The message a retry's earlier attempt stored, among the newest: by its sender and key.
    async fn find_claim(&self, c: &Conversation, key: &SendKey) -> Result<Option<Message>> {
        // From the true top: the claim may be newer than `c` (which may lag, too).
        let top = self
            .top(c.id, c.last_seq)
            .await?
            .map_or(c.last_seq, |(seq, _)| seq);
        let mut before = top.max(c.last_seq) + 1;
        let mut searched = 0;
        while before > 1 && searched < RETRY_SEARCH {
            let page = self.page_before(c.id, before, MAX_PAGE).await?;
            let Some(last) = page.last() else { break };
            before = last.seq;
            searched += page.len();
            if let Some(m) = page
                .into_iter()
                .find(|m| m.sender == key.1 && m.client_msg_id == key.2)
            {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// After a claim: the key learns its seq, the head and the sender's own watermark move.
    async fn after_claim(&self, m: &Message) -> Result<()> {
        let conv = m.conversation.0;
        let seq = m.seq as i64;
        let key = (seq, conv, m.sender.as_str(), m.client_msg_id.as_str());
        let head = (seq, seq, m.id.0 as i64, m.created_at_ms, conv);
        let own = ReadState {
            up_to: m.id,
            seq: m.seq,
            read_at_ms: m.created_at_ms,
        };
        tokio::try_join!(
            self.exec(&self.st.messages.key_set_seq, key),
            self.exec(&self.st.conversations.head_set, head),
            self.write_read_state(m.conversation, &m.sender, &own),
        )?;
        Ok(())
    }

    pub(super) async fn append(&self, m: NewMessage) -> Result<Appended> {
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
        let now_ms = m.now_ms;
        let floor = c.last_message_id.unwrap_or_default();
        let mut message = m.into_message(self.next_id_after(now_ms, floor), 0, now_ms);
        // The attempt's token: a fresh id, never a message's (ids are unique).
        let token = message.id;
        if let Some(theirs) = self.own_key(&c, &key, token, now_ms).await? {
            return Ok(Appended {
                message: theirs,
                duplicate: true,
            });
        }
        if let ConversationKind::Direct { buyer, seller, .. } = &c.kind
            && self.blocked_between(buyer, seller).await?
        {
            // Let a later attempt (once unblocked) have the key.
            self.exec(&self.st.messages.key_delete, key).await?;
            return Err(StorageError::Blocked);
        }
        if let Some(theirs) = self.claim_next(&c, &mut message).await? {
            return Ok(Appended {
                message: theirs,
                duplicate: true,
            });
        }
        self.after_claim(&message).await?;
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    /// Makes this attempt (`token`) the owner of `key`: `Ok(None)`. When another attempt owns
    /// it: the message it stored, waiting a little for it to get there. An owner that has
    /// stored nothing for [`KEY_TAKE_OVER_MS`] is presumed dead and replaced.
    async fn own_key(
        &self,
        c: &Conversation,
        key: &SendKey,
        token: MessageId,
        now_ms: i64,
    ) -> Result<Option<Message>> {
        let st = &self.st.messages;
        let values = (
            key.0,
            key.1.as_str(),
            key.2.as_str(),
            token.0 as i64,
            now_ms,
        );
        let answer = self.lwt(&st.key_claim, values).await?;
        if answer.applied() {
            return Ok(None);
        }
        let seq = answer.bigint("seq");
        if let Some(m) = self.earlier_attempt(c, key, seq).await? {
            return Ok(Some(m));
        }
        // Its owner has not stored it (yet): wait for it, reading the key again each time.
        // (Briefly: the client retries, and an owner that died is replaced after a while.)
        let found = self
            .eventually_for(OWNER_WAIT, || async {
                let rows: Vec<(Option<i64>, Option<i64>)> =
                    self.rows(&st.key_get, key.clone()).await?;
                let seq = rows.into_iter().next().and_then(|(_, seq)| seq);
                match seq {
                    Some(_) => self.earlier_attempt(c, key, seq).await,
                    None => Ok(None),
                }
            })
            .await?;
        if let Some(m) = found {
            return Ok(Some(m));
        }
        let owner = answer.bigint("message_id").unwrap_or(0);
        let since = answer.bigint("created_at").unwrap_or(0);
        if now_ms.saturating_sub(since) < KEY_TAKE_OVER_MS {
            return Err(StorageError::Unavailable(
                "an earlier attempt of this message is still in flight; retry".into(),
            ));
        }
        let take = (
            token.0 as i64,
            now_ms,
            key.0,
            key.1.as_str(),
            key.2.as_str(),
            owner,
        );
        if self.lwt(&st.key_take_over, take).await?.applied() {
            return Ok(None);
        }
        Err(StorageError::Unavailable(
            "another attempt of this message took it over; retry".into(),
        ))
    }

    /// The message an earlier attempt with `key` (its seq, once known) stored, if it got that
    /// far.
    async fn earlier_attempt(
        &self,
        c: &Conversation,
        key: &SendKey,
        seq: Option<i64>,
    ) -> Result<Option<Message>> {
        let found = match seq {
            Some(seq) if seq > 0 => self.message(c.id, seq as u64).await?,
            _ => self.find_claim(c, key).await?,
        };
        if let Some(m) = &found
            && seq.is_none_or(|s| s <= 0)
        {
            // It stopped between its claim and recording the seq: finish that.
            self.after_claim(m).await?;
        }
        Ok(found)
    }

    /// Up to `limit` messages with seq < `before`, newest first.
    async fn page_before(
        &self,
        conv: ConversationId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let mut out = Vec::with_capacity(limit);
        if before <= 1 {
            return Ok(out);
        }
        let mut bucket = seq_bucket(before - 1);
        while bucket >= 0 && out.len() < limit {
            let want = (limit - out.len()) as i32;
            let st = &self.st.messages.msg_before;
            let rows: Vec<MsgRow> = self.rows(st, (conv.0, bucket, before as i64, want)).await?;
            for r in rows {
                out.push(r.into_message(conv)?);
            }
            bucket -= 1;
        }
        Ok(out)
    }

    pub(super) async fn history(
        &self,
        conversation: ConversationId,
        before: Option<Position>,
        limit: usize,
    ) -> Result<HistoryPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let Some(c) = self.load(conversation).await? else {
            return Ok(HistoryPage::default());
        };
        // Strictly older than `before`.
        let before = match before {
            None => c.last_seq + 1,
            Some(p) if p.seq > 0 => p.seq,
            Some(p) => {
                let older = MessageId(p.id.0.saturating_sub(1));
                self.seq_at_or_before(c.id, c.last_seq, older).await? + 1
            }
        };
        let mut messages = self.page_before(conversation, before, limit + 1).await?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        let next_before = if more {
            messages.last().map(Position::of)
        } else {
            None
        };
        Ok(HistoryPage {
            messages,
            next_before,
        })
    }

    pub(super) async fn messages_after(
        &self,
        conversation: ConversationId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let Some(c) = self.load(conversation).await? else {
            return Ok(Vec::new());
        };
        let mut from = self.position_seq(&c, after).await?;
        let mut out = Vec::new();
        if from >= i64::MAX as u64 {
            return Ok(out);
        }
        let st = &self.st.messages.msg_after;
        // Partition by partition, past the head too (it may lag the claims).
        while out.len() < limit {
            let want = limit - out.len();
            let bucket = seq_bucket(from + 1);
            let rows: Vec<MsgRow> = self
                .rows(st, (conversation.0, bucket, from as i64, want as i32))
                .await?;
            let n = rows.len();
            for r in rows {
                let m = r.into_message(conversation)?;
                from = m.seq;
                out.push(m);
            }
            // Go on only when this partition ended full (its last seq ends a partition).
            if n == 0 || (n < want && (from + 1) % SEQ_BUCKET != 0) {
                break;
            }
        }
        Ok(out)
    }

    /// What a feed page or an indexer's batch names, read as a few range reads: each
    /// conversation's seqs in runs (a gap of at most [`RUN_GAP`] inside one), the runs read
    /// [`READS_IN_FLIGHT`] at a time. One read per message, one after another, was the
    /// cluster indexer's bottleneck.
    pub(super) async fn messages_at(
        &self,
        at: Vec<(ConversationId, u64)>,
    ) -> Result<Vec<Option<Message>>> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut sorted: Vec<(ConversationId, u64)> =
            at.iter().copied().filter(|&(_, seq)| seq > 0).collect();
        sorted.sort_unstable();
        sorted.dedup();
        // (conversation, first seq, last seq) of each run.
        let mut runs: Vec<(ConversationId, u64, u64)> = Vec::new();
        for (c, seq) in sorted {
            match runs.last_mut() {
                Some((rc, _, last)) if *rc == c && seq - *last <= RUN_GAP => *last = seq,
                _ => runs.push((c, seq, seq)),
            }
        }
        let pages: Vec<Vec<Message>> = futures_util::stream::iter(runs)
            .map(|(c, first, last)| async move {
                let after = Position {
                    seq: first - 1,
                    id: MessageId::default(),
                };
                let span = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
                self.messages_after(c, after, span).await
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let by_place: std::collections::HashMap<(ConversationId, u64), Message> = pages
            .into_iter()
            .flatten()
            .map(|m| ((m.conversation, m.seq), m))
            .collect();
        Ok(at
            .iter()
            .map(|place| by_place.get(place).cloned())
            .collect())
    }

    pub(super) async fn mark_read(
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
            .unwrap_or_default();
        // The id must name a message of this conversation: an id from elsewhere (or between
        // two messages) is refused, it does not read "up to about there".
        let seq = self
            .exact_seq(&c, up_to)
            .await?
            .ok_or(StorageError::Invalid(
                "no such message in this conversation",
            ))?;
        if seq <= current.seq {
            return Ok(ReadOutcome {
                state: current,
                advanced: false,
            });
        }
        let id = up_to;
        let state = ReadState {
            up_to: id,
            seq,
            read_at_ms: now_ms,
        };
        self.write_read_state(conversation, user, &state).await?;
        Ok(ReadOutcome {
            state,
            advanced: true,
        })
    }
}
