//! The conformance suite: every [`Storage`] engine must pass every case here.
//!
//! An engine's tests invoke [`conformance_tests!`](crate::conformance_tests) with a factory
//! that returns `(guard, engine)` for a fresh, empty store (the guard keeps a temp dir or a
//! keyspace alive for the test). Each case becomes its own `#[tokio::test]`.

use std::collections::HashSet;
use std::sync::Arc;

use parley_types::{
    Conversation, ConversationId, MediaRef, Message, MessageId, MessageKind, ModAction,
    ModerationEntry, NewMessage, NewReport, Position, ReportFilter, ReportSnapshot, Standing,
    Visibility, time_ordered_id,
};

use crate::{MAX_GROUP_PARTICIPANTS, MAX_PAGE, Storage, StorageError};

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            direct_is_unique_per_triple,
            direct_is_unique_under_concurrent_creation,
            direct_rejects_self_and_empty_ids,
            group_dedupes_participants_and_enforces_limit,
            appends_get_dense_seqs_and_increasing_ids,
            concurrent_appends_are_all_stored_once,
            concurrent_senders_and_retries_get_dense_seqs,
            append_is_idempotent_per_sender,
            concurrent_retries_store_one_message,
            append_checks_participant_and_conversation,
            history_pages_newest_first_without_gaps,
            messages_after_resumes_in_order,
            positions_by_seq_and_by_id_agree,
            watermark_never_moves_backwards,
            own_messages_are_never_unread,
            conversation_list_orders_by_activity_and_pages,
            unread_counts_per_conversation,
            unread_counts_are_exact_past_a_thousand,
            delete_removes_everything_and_frees_the_triple,
            blocks_stop_new_conversations_and_messages,
            reports_are_stored,
            reports_keep_their_snapshot_and_list_newest_first,
            moderation_resolves_a_report_once_and_changes_standing,
            shadowed_messages_keep_their_visibility,
            contacts_are_users_sharing_a_conversation,
            blocks_are_listed_and_known_both_ways,
            a_group_cannot_include_someone_blocked_either_way,
            uploaded_media_round_trips,
            values_round_trip_by_owner_and_prefix,
            every_conversation_is_scanned_once,
            messages_at_reads_what_a_page_names,
        );
    };
    (@cases $factory:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_guard, store) = ($factory)().await;
                $crate::conformance::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

const T0: i64 = 1_800_000_000_000;

pub(crate) fn text(
    conv: ConversationId,
    sender: &str,
    client_msg_id: &str,
    now_ms: i64,
) -> NewMessage {
    NewMessage {
        conversation: conv,
        sender: sender.into(),
        kind: MessageKind::Text,
        content: format!("{sender}:{client_msg_id}"),
        media: None,
        client_msg_id: client_msg_id.into(),
        now_ms,
        visibility: Visibility::Everyone,
    }
}

async fn direct<S: Storage>(s: &S, buyer: &str, seller: &str, listing: &str) -> Conversation {
    s.create_direct(buyer, seller, listing, T0)
        .await
        .expect("create_direct")
        .conversation
}

pub async fn direct_is_unique_per_triple<S: Storage>(s: Arc<S>) {
    s.health().await.expect("a fresh store is healthy");
    let a = s
        .create_direct("buyer", "seller", "l1", T0)
        .await
        .expect("create");
    assert!(a.created);
    assert_eq!(a.conversation.participants, vec!["buyer", "seller"]);
    let again = s
        .create_direct("buyer", "seller", "l1", T0 + 5)
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.conversation.id, a.conversation.id);
    let other_listing = direct(&*s, "buyer", "seller", "l2").await;
    assert_ne!(other_listing.id, a.conversation.id);
    let reversed_roles = direct(&*s, "seller", "buyer", "l1").await;
    assert_ne!(reversed_roles.id, a.conversation.id);
    let loaded = s.conversation(a.conversation.id).await.expect("load");
    assert_eq!(loaded, Some(a.conversation));
}

pub async fn direct_is_unique_under_concurrent_creation<S: Storage>(s: Arc<S>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create_direct("b", "s", "race", T0 + i).await })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let r = t.await.expect("join").expect("create");
        ids.insert(r.conversation.id);
        created += usize::from(r.created);
    }
    assert_eq!(ids.len(), 1, "one conversation for one triple");
    assert_eq!(created, 1, "exactly one creator");
}

pub async fn direct_rejects_self_and_empty_ids<S: Storage>(s: Arc<S>) {
    assert!(matches!(
        s.create_direct("same", "same", "l", T0).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.create_direct("", "s", "l", T0).await,
        Err(StorageError::Invalid(_))
    ));
}

pub async fn group_dedupes_participants_and_enforces_limit<S: Storage>(s: Arc<S>) {
    let members = vec!["m1".to_string(), "m2".into(), "m1".into(), "owner".into()];
    let g = s
        .create_group("owner", &members, "Team", T0)
        .await
        .expect("group");
    assert_eq!(g.participants, vec!["owner", "m1", "m2"]);
    assert_eq!(g.title(), "Team");
    assert_eq!(s.conversation(g.id).await.expect("load"), Some(g));

    let full: Vec<String> = (1..MAX_GROUP_PARTICIPANTS)
        .map(|i| format!("u{i}"))
        .collect();
    let big = s
        .create_group("owner", &full, "big", T0)
        .await
        .expect("max");
    assert_eq!(big.participants.len(), MAX_GROUP_PARTICIPANTS);
    let too_many: Vec<String> = (0..MAX_GROUP_PARTICIPANTS)
        .map(|i| format!("u{i}"))
        .collect();
    assert!(matches!(
        s.create_group("owner", &too_many, "too big", T0).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.create_group("owner", &[], "alone", T0).await,
        Err(StorageError::Invalid(_))
    ));
}

pub async fn appends_get_dense_seqs_and_increasing_ids<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    assert_eq!(c.last_seq, 0);
    let mut last = MessageId(0);
    for i in 0..50u64 {
        let sender = if i % 2 == 0 { "b" } else { "s" };
        // Same millisecond for many messages, and a clock that steps back once.
        let now = T0 + (i as i64 / 10) - i64::from(i == 25);
        let a = s
            .append(text(c.id, sender, &i.to_string(), now))
            .await
            .expect("append");
        assert!(!a.duplicate);
        assert!(a.message.id > last, "ids increase");
        assert_eq!(a.message.seq, i + 1, "seqs are 1, 2, 3, …");
        assert_eq!(a.message.created_at_ms, now);
        last = a.message.id;
    }
    let c = s.conversation(c.id).await.expect("load").expect("exists");
    assert_eq!(c.last_message_id, Some(last));
    assert_eq!(c.last_seq, 50);
    assert!(c.last_activity_ms >= T0 + 4);
}

pub async fn concurrent_appends_are_all_stored_once<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append(text(c.id, "b", &format!("m{i}"), T0)).await })
        })
        .collect();
    let mut acked = HashSet::new();
    for t in tasks {
        acked.insert(t.await.expect("join").expect("append").message.id);
    }
    assert_eq!(acked.len(), 100, "distinct ids");
    let page = s.history(c.id, None, 100).await.expect("history");
    let ids: Vec<_> = page.messages.iter().map(|m| m.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(
        ids.iter().copied().collect::<HashSet<_>>(),
        acked,
        "every acked message, once"
    );
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=100).rev().collect::<Vec<_>>(),
        "dense seqs, id order"
    );
    let c = s.conversation(c.id).await.expect("load").expect("c");
    assert_eq!(
        c.last_message_id,
        ids.first().copied(),
        "the newest is the last message"
    );
    assert_eq!(c.last_seq, 100);
}

/// Every message of `conv`, oldest first, walking history pages.
async fn all_messages<S: Storage + ?Sized>(s: &S, conv: ConversationId) -> Vec<Message> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = s.history(conv, before, MAX_PAGE).await.expect("history");
        out.extend(page.messages);
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    out.reverse();
    out
}

/// Seqs are 1..=n with ids increasing along them, and `messages_after` from nothing agrees
/// (public for engine tests with several instances, e.g. nodes of a cluster).
pub async fn assert_dense<S: Storage + ?Sized>(
    s: &S,
    conv: ConversationId,
    n: u64,
) -> Vec<Message> {
    let all = all_messages(s, conv).await;
    let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "dense, no gap, no repeat"
    );
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase with seq"
    );
    let mut after = Vec::new();
    let mut from = Position::default();
    loop {
        let page = s.messages_after(conv, from, 64).await.expect("after");
        let Some(last) = page.last() else { break };
        from = Position::of(last);
        after.extend(page);
    }
    assert_eq!(after, all, "resume reads what history reads");
    let c = s.conversation(conv).await.expect("load").expect("exists");
    assert_eq!(c.last_seq, n);
    assert_eq!(c.last_message_id, all.last().map(|m| m.id));
    all
}

pub async fn concurrent_senders_and_retries_get_dense_seqs<S: Storage>(s: Arc<S>) {
    let senders: Vec<String> = (0..4).map(|i| format!("u{i}")).collect();
    let g = s
        .create_group("u0", &senders, "race", T0)
        .await
        .expect("group");
    // 4 senders × 25 keys, each key sent twice at once (a retry racing its original).
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (s, sender) = (s.clone(), senders[i % 4].clone());
            let key = format!("k{}", i / 8);
            tokio::spawn(async move {
                s.append(text(g.id, &sender, &key, T0 + (i as i64 % 7)))
                    .await
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.expect("join").expect("append").message);
    }
    let all = assert_dense(&*s, g.id, 100).await;
    for m in &acked {
        assert_eq!(all[m.seq as usize - 1], *m, "acked as stored");
    }
}

pub async fn append_is_idempotent_per_sender<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let first = s.append(text(c.id, "b", "same", T0)).await.expect("first");
    let mut retry = text(c.id, "b", "same", T0 + 1_000);
    retry.content = "changed on retry".into();
    let second = s.append(retry).await.expect("retry");
    assert!(second.duplicate);
    assert_eq!(
        second.message, first.message,
        "the first message, unchanged"
    );
    // Another sender's key is another message.
    let other = s.append(text(c.id, "s", "same", T0)).await.expect("other");
    assert!(!other.duplicate);
    let page = s.history(c.id, None, 10).await.expect("history");
    assert_eq!(page.messages.len(), 2);
}

pub async fn concurrent_retries_store_one_message<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.append(text(c.id, "b", "retry-storm", T0)).await })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for t in tasks {
        let a = t.await.expect("join").expect("append");
        ids.insert(a.message.id);
        fresh += usize::from(!a.duplicate);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(
        s.history(c.id, None, 10).await.expect("h").messages.len(),
        1
    );
}

pub async fn append_checks_participant_and_conversation<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    assert!(matches!(
        s.append(text(c.id, "mallory", "x", T0)).await,
        Err(StorageError::Forbidden(_))
    ));
    assert!(matches!(
        s.append(text(ConversationId::random(), "b", "x", T0)).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.mark_read(c.id, "mallory", MessageId(u64::MAX), T0).await,
        Err(StorageError::Forbidden(_))
    ));
    assert!(matches!(
        s.mark_read(ConversationId::random(), "b", MessageId(1), T0)
            .await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        s.conversation(ConversationId::random())
            .await
            .expect("load"),
        None
    );
}

pub async fn history_pages_newest_first_without_gaps<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let other = direct(&*s, "b", "s", "other").await;
    let mut sent = Vec::new();
    for i in 0..120 {
        sent.push(
            s.append(text(c.id, "b", &i.to_string(), T0 + i))
                .await
                .expect("append")
                .message
                .id,
        );
        // Interleave another conversation: its messages must never show up here.
        s.append(text(other.id, "s", &i.to_string(), T0 + i))
            .await
            .expect("append other");
    }
    let mut seen = Vec::new();
    let mut before = None;
    let mut sizes = Vec::new();
    loop {
        let page = s.history(c.id, before, 50).await.expect("page");
        sizes.push(page.messages.len());
        assert!(page.messages.iter().all(|m| m.conversation == c.id));
        assert!(page.messages.windows(2).all(|w| w[0].id > w[1].id));
        seen.extend(page.messages.iter().map(|m| m.id));
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    sent.reverse();
    assert_eq!(seen, sent, "every message once, newest first");
    let clamped = s.history(c.id, None, 10_000).await.expect("clamped");
    assert_eq!(clamped.messages.len(), MAX_PAGE);
    let empty = direct(&*s, "b", "s", "empty").await;
    let page = s.history(empty.id, None, 50).await.expect("empty");
    assert!(page.messages.is_empty() && page.next_before.is_none());
    // Exactly one full page: no next cursor.
    let exact = direct(&*s, "b", "s", "exact").await;
    for i in 0..50 {
        s.append(text(exact.id, "b", &i.to_string(), T0))
            .await
            .expect("a");
    }
    assert_eq!(
        s.history(exact.id, None, 50).await.expect("h").next_before,
        None
    );
}

pub async fn messages_after_resumes_in_order<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let mut sent = Vec::new();
    for i in 0..30 {
        let a = s.append(text(c.id, "s", &i.to_string(), T0 + i)).await;
        sent.push(a.expect("append").message);
    }
    let ids = |ms: &[Message]| ms.iter().map(|m| m.id).collect::<Vec<_>>();
    let at = |i: usize| Position::of(&sent[i]);
    let after = s.messages_after(c.id, at(9), 100).await.expect("after");
    assert_eq!(ids(&after), ids(&sent[10..]));
    let limited = s.messages_after(c.id, at(9), 5).await.expect("limited");
    assert_eq!(ids(&limited), ids(&sent[10..15]));
    let all = s.messages_after(c.id, Position::default(), 100).await;
    assert_eq!(all.expect("all"), sent);
    let none = s.messages_after(c.id, at(29), 100).await.expect("none");
    assert!(none.is_empty());
    let far = Position {
        seq: u64::MAX,
        id: MessageId(u64::MAX),
    };
    assert!(
        s.messages_after(c.id, far, 100)
            .await
            .expect("far")
            .is_empty()
    );
    let by_seq_only = Position {
        seq: 20,
        id: MessageId(0),
    };
    let after = s.messages_after(c.id, by_seq_only, 100).await.expect("seq");
    assert_eq!(ids(&after), ids(&sent[20..]));
    let unknown = s.messages_after(ConversationId::random(), at(3), 10).await;
    assert!(unknown.expect("unknown conversation").is_empty());
}

/// A caller that knows only an id (seq 0) gets what a caller with the seq gets, for history
/// and resume, including ids between two messages and beyond the last.
pub async fn positions_by_seq_and_by_id_agree<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let mut sent = Vec::new();
    for i in 0..40 {
        let sender = if i % 3 == 0 { "b" } else { "s" };
        let a = s
            .append(text(c.id, sender, &i.to_string(), T0 + i / 4))
            .await;
        sent.push(a.expect("append").message);
    }
    let by_id = |id| Position {
        seq: 0,
        id: MessageId(id),
    };
    for i in [0usize, 1, 17, 38, 39] {
        let m = &sent[i];
        let after_seq = s
            .messages_after(c.id, Position::of(m), 100)
            .await
            .expect("a");
        let after_id = s.messages_after(c.id, by_id(m.id.0), 100).await.expect("a");
        assert_eq!(after_id, after_seq, "resume after #{i}");
        assert_eq!(
            after_seq.first().map(|m| m.seq),
            (i < 39).then_some(m.seq + 1)
        );
        let before_seq = s.history(c.id, Some(Position::of(m)), 10).await.expect("h");
        let before_id = s.history(c.id, Some(by_id(m.id.0)), 10).await.expect("h");
        assert_eq!(before_id, before_seq, "history before #{i}");
        assert_eq!(
            before_seq.messages.first().map(|m| m.seq),
            m.seq.checked_sub(1).filter(|s| *s > 0)
        );
    }
    // An id between two messages stands for the older one.
    let mut between = 0;
    for w in sent.windows(2) {
        if w[1].id.0 - w[0].id.0 < 2 {
            continue;
        }
        between += 1;
        let past = s.messages_after(c.id, by_id(w[0].id.0 + 1), 100).await;
        let from_next: Vec<u64> = past.expect("a").iter().map(|m| m.seq).collect();
        assert_eq!(from_next, (w[1].seq..=40).collect::<Vec<_>>());
        let page = s
            .history(c.id, Some(by_id(w[1].id.0 - 1)), 1)
            .await
            .expect("h");
        assert_eq!(page.messages.first().map(|m| m.seq), Some(w[0].seq));
    }
    assert!(
        between > 0,
        "some ids have room between them (different milliseconds)"
    );
    let before_first = s.messages_after(c.id, by_id(sent[0].id.0 - 1), 100).await;
    assert_eq!(before_first.expect("all"), sent);
    let beyond = s.history(c.id, Some(by_id(u64::MAX)), 5).await.expect("h");
    assert_eq!(beyond.messages.first(), sent.last());
}

pub async fn watermark_never_moves_backwards<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let invalid = |r: crate::Result<crate::ReadOutcome>| matches!(r, Err(StorageError::Invalid(_)));
    assert!(
        invalid(s.mark_read(c.id, "b", MessageId(u64::MAX), T0).await),
        "nothing to read yet: no message has that id"
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            s.append(text(c.id, "s", &i.to_string(), T0))
                .await
                .expect("append")
                .message
                .id,
        );
    }
    assert_eq!(s.read_state(c.id, "b").await.expect("state"), None);
    let r = s.mark_read(c.id, "b", ids[1], T0 + 1).await.expect("read");
    assert!(r.advanced);
    assert_eq!(
        s.read_state(c.id, "b").await.expect("state"),
        Some(r.state.clone()),
        "read_state is what mark_read left"
    );
    assert_eq!((r.state.up_to, r.state.read_at_ms), (ids[1], T0 + 1));
    assert_eq!(r.state.seq, 2);
    let back = s.mark_read(c.id, "b", ids[0], T0 + 2).await.expect("back");
    assert!(!back.advanced);
    assert_eq!(back.state, r.state, "unchanged");
    let same = s.mark_read(c.id, "b", ids[1], T0 + 3).await.expect("same");
    assert!(!same.advanced);
    // The id must name a message of this conversation: not one between two messages, not one
    // beyond the newest, not one of another conversation.
    if ids[2].0 - 1 > ids[1].0 {
        assert!(invalid(
            s.mark_read(c.id, "b", MessageId(ids[2].0 - 1), T0 + 4)
                .await
        ));
    }
    assert!(invalid(
        s.mark_read(c.id, "b", MessageId(u64::MAX), T0 + 5).await
    ));
    let other = direct(&*s, "b", "s", "other listing").await;
    let foreign = s
        .append(text(other.id, "s", "elsewhere", T0))
        .await
        .expect("append")
        .message
        .id;
    assert!(foreign > ids[2], "the foreign id is newer than all of c's");
    assert!(invalid(s.mark_read(c.id, "b", foreign, T0 + 6).await));
    assert_eq!(
        s.mark_read(c.id, "b", ids[1], T0 + 7)
            .await
            .expect("read")
            .state,
        r.state,
        "the refused reads left the watermark where it was"
    );
    let newest = s.mark_read(c.id, "b", ids[2], T0 + 8).await.expect("all");
    assert!(newest.advanced);
    assert_eq!(newest.state.up_to, ids[2]);
    assert_eq!(
        s.read_state(c.id, "b").await.expect("state"),
        Some(newest.state.clone())
    );
    // The sender's own messages moved the sender's watermark (its last message is read).
    assert_eq!(
        s.read_state(c.id, "s")
            .await
            .expect("state")
            .map(|r| r.up_to),
        Some(ids[2])
    );
    assert_eq!(
        s.unread_counts("b").await.expect("unread"),
        vec![(other.id, 1)]
    );
}

pub async fn own_messages_are_never_unread<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    for i in 0..3 {
        s.append(text(c.id, "s", &format!("s{i}"), T0))
            .await
            .expect("s");
    }
    assert_eq!(s.unread_counts("b").await.expect("b"), vec![(c.id, 3)]);
    // Replying reads the conversation up to the reply.
    s.append(text(c.id, "b", "reply", T0)).await.expect("reply");
    assert_eq!(s.unread_counts("b").await.expect("b"), vec![]);
    assert_eq!(s.unread_counts("s").await.expect("s"), vec![(c.id, 1)]);
}

pub async fn conversation_list_orders_by_activity_and_pages<S: Storage>(s: Arc<S>) {
    let mut convs = Vec::new();
    for i in 0..7 {
        convs.push(direct(&*s, "me", &format!("seller{i}"), "l").await);
    }
    let unrelated = direct(&*s, "x", "y", "l").await;
    // Activity order: conv 3 newest, then 5, then the rest by creation (same time: by id).
    s.append(text(convs[5].id, "seller5", "a", T0 + 10))
        .await
        .expect("a");
    s.append(text(convs[3].id, "seller3", "b", T0 + 20))
        .await
        .expect("b");
    s.append(text(convs[3].id, "seller3", "c", T0 + 21))
        .await
        .expect("c");

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_conversations("me", cursor, 3).await.expect("page");
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|i| i.conversation.id));
        if seen.len() == 1 {
            let top = &page.items[0];
            assert_eq!(top.conversation.id, convs[3].id);
            assert_eq!(top.unread, 2);
            let last = top.last_message.as_ref().expect("last message");
            assert_eq!(last.content, "seller3:c");
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen[0], convs[3].id);
    assert_eq!(seen[1], convs[5].id);
    assert!(!seen.contains(&unrelated.id));
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7, "no repeats");
    let first = s.list_conversations("me", None, 100).await.expect("all");
    assert!(first.next_cursor.is_none());
    assert!(
        first.items[2..]
            .iter()
            .all(|i| i.last_message.is_none() && i.unread == 0)
    );
    assert!(
        s.list_conversations("nobody", None, 10)
            .await
            .expect("empty")
            .items
            .is_empty()
    );
}

pub async fn unread_counts_per_conversation<S: Storage>(s: Arc<S>) {
    let a = direct(&*s, "me", "s1", "l").await;
    let b = direct(&*s, "me", "s2", "l").await;
    let g = s
        .create_group("s1", &["me".into(), "s2".into()], "g", T0)
        .await
        .expect("group");
    for i in 0..4 {
        s.append(text(a.id, "s1", &i.to_string(), T0))
            .await
            .expect("a");
    }
    s.append(text(g.id, "s2", "g1", T0)).await.expect("g");
    let mut unread = s.unread_counts("me").await.expect("unread");
    unread.sort();
    let mut want = vec![(a.id, 4), (g.id, 1)];
    want.sort();
    assert_eq!(unread, want);
    assert!(!unread.iter().any(|(c, _)| *c == b.id));
}

pub async fn unread_counts_are_exact_past_a_thousand<S: Storage>(s: Arc<S>) {
    use futures_util::StreamExt;
    let c = direct(&*s, "me", "s", "l").await;
    let appends = futures_util::stream::iter(0..1_100)
        .map(|i| {
            let s = s.clone();
            async move { s.append(text(c.id, "s", &i.to_string(), T0)).await }
        })
        .buffer_unordered(16);
    let results: Vec<_> = appends.collect().await;
    let mut newest = MessageId(0);
    for r in results {
        newest = newest.max(r.expect("append").message.id);
    }
    assert_eq!(s.unread_counts("me").await.expect("u"), vec![(c.id, 1_100)]);
    let page = s.list_conversations("me", None, 10).await.expect("list");
    assert_eq!(page.items[0].unread, 1_100);
    let middle = s
        .history(
            c.id,
            Some(Position {
                seq: 301,
                id: MessageId(0),
            }),
            1,
        )
        .await;
    let m = middle.expect("h").messages[0].clone();
    assert_eq!(m.seq, 300);
    s.mark_read(c.id, "me", m.id, T0).await.expect("read");
    assert_eq!(s.unread_counts("me").await.expect("u"), vec![(c.id, 800)]);
    s.mark_read(c.id, "me", newest, T0).await.expect("read");
    assert_eq!(s.unread_counts("me").await.expect("u"), vec![]);
}

/// Paging `conversations_after` from the last one returned reaches every conversation once,
/// a deleted one never.
pub async fn every_conversation_is_scanned_once<S: Storage>(s: Arc<S>) {
    assert!(
        s.conversations_after(None, 10)
            .await
            .expect("scan")
            .is_empty()
    );
    let mut made = std::collections::BTreeSet::new();
    for i in 0..7 {
        made.insert(direct(&*s, "b", "s", &format!("l{i}")).await.id);
    }
    let gone = direct(&*s, "b", "s", "gone").await;
    s.delete_conversation(gone.id, "b").await.expect("delete");
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = s.conversations_after(after, 3).await.expect("scan");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        assert!(page.iter().all(|c| c.participants == ["b", "s"]));
        seen.extend(page.iter().map(|c| c.id));
    }
    assert_eq!(seen.len(), made.len(), "each once: {seen:?}");
    assert_eq!(
        seen.into_iter().collect::<std::collections::BTreeSet<_>>(),
        made
    );
}

/// `messages_at`: each place answered in the order asked — runs of seqs, scattered seqs, two
/// conversations mixed, a place asked twice, seqs past the end, a conversation that never was.
/// (A deleted conversation's messages may still be read until the engine purged them: the
/// embedded engine does that in the background; readers check the conversation.)
pub async fn messages_at_reads_what_a_page_names<S: Storage>(s: Arc<S>) {
    let a = direct(&*s, "b", "s", "a").await;
    let b = direct(&*s, "b", "s", "b").await;
    let never = ConversationId(uuid::Uuid::from_u128(7));
    for i in 0..60 {
        s.append(text(a.id, "b", &format!("a{i}"), T0 + i))
            .await
            .expect("append");
    }
    for i in 0..3 {
        s.append(text(b.id, "s", &format!("b{i}"), T0 + i))
            .await
            .expect("append");
    }
    let at = vec![
        (a.id, 3),
        (b.id, 2),
        (a.id, 4),
        (a.id, 5),
        (a.id, 60),
        (a.id, 1),
        (a.id, 61),
        (never, 1),
        (a.id, 3),
        (b.id, 999),
        (a.id, 40),
    ];
    let found = s.messages_at(at.clone()).await.expect("at");
    assert_eq!(found.len(), at.len());
    let got: Vec<Option<(ConversationId, u64, String)>> = found
        .into_iter()
        .map(|m| m.map(|m| (m.conversation, m.seq, m.client_msg_id)))
        .collect();
    let want = |c: &Conversation, seq: u64, id: &str| Some((c.id, seq, id.to_owned()));
    assert_eq!(
        got,
        vec![
            want(&a, 3, "a2"),
            want(&b, 2, "b1"),
            want(&a, 4, "a3"),
            want(&a, 5, "a4"),
            want(&a, 60, "a59"),
            want(&a, 1, "a0"),
            None,
            None,
            want(&a, 3, "a2"),
            None,
            want(&a, 40, "a39"),
        ]
    );
}

pub async fn delete_removes_everything_and_frees_the_triple<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    s.append(text(c.id, "b", "1", T0)).await.expect("append");
    assert!(matches!(
        s.delete_conversation(c.id, "mallory").await,
        Err(StorageError::Forbidden(_))
    ));
    let deleted = s.delete_conversation(c.id, "s").await.expect("delete");
    assert_eq!(deleted.id, c.id);
    assert_eq!(s.conversation(c.id).await.expect("load"), None);
    assert!(
        s.history(c.id, None, 10)
            .await
            .expect("h")
            .messages
            .is_empty()
    );
    assert!(
        s.list_conversations("b", None, 10)
            .await
            .expect("l")
            .items
            .is_empty()
    );
    assert!(matches!(
        s.append(text(c.id, "b", "2", T0)).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.delete_conversation(c.id, "s").await,
        Err(StorageError::NotFound)
    ));
    let again = s.create_direct("b", "s", "l", T0).await.expect("recreate");
    assert!(again.created);
    assert_ne!(again.conversation.id, c.id);
    // The old idempotency key is gone with the conversation it belonged to.
    let fresh = s
        .append(text(again.conversation.id, "b", "1", T0))
        .await
        .expect("a");
    assert!(!fresh.duplicate);
    assert_eq!(
        s.history(again.conversation.id, None, 10)
            .await
            .expect("h")
            .messages
            .len(),
        1,
        "the new conversation starts empty"
    );

    let g = s
        .create_group("owner", &["m".into()], "g", T0)
        .await
        .expect("group");
    assert!(matches!(
        s.delete_conversation(g.id, "m").await,
        Err(StorageError::Forbidden(_))
    ));
    s.delete_conversation(g.id, "owner")
        .await
        .expect("owner deletes");
}

pub async fn blocks_stop_new_conversations_and_messages<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    s.set_block("s", "b", true, T0).await.expect("block");
    assert!(s.is_blocked_between("b", "s").await.expect("q"));
    assert!(s.is_blocked_between("s", "b").await.expect("q"));
    assert!(!s.is_blocked_between("b", "other").await.expect("q"));
    for sender in ["b", "s"] {
        assert!(matches!(
            s.append(text(c.id, sender, "x", T0)).await,
            Err(StorageError::Blocked)
        ));
    }
    assert!(matches!(
        s.create_direct("b", "s", "l2", T0).await,
        Err(StorageError::Blocked)
    ));
    s.set_block("s", "b", false, T0).await.expect("unblock");
    assert!(!s.is_blocked_between("b", "s").await.expect("q"));
    s.append(text(c.id, "b", "x", T0))
        .await
        .expect("after unblock");
}

pub async fn blocks_are_listed_and_known_both_ways<S: Storage>(s: Arc<S>) {
    s.set_block("s", "b", true, T0).await.expect("block");
    s.set_block("s", "a", true, T0 + 1).await.expect("block");
    s.set_block("b", "z", true, T0 + 2).await.expect("block");
    assert_eq!(
        s.blocks("s").await.expect("list"),
        vec![("a".to_owned(), T0 + 1), ("b".to_owned(), T0)]
    );
    assert_eq!(
        s.blocks("b").await.expect("list"),
        vec![("z".to_owned(), T0 + 2)]
    );
    assert!(s.blocks("nobody").await.expect("list").is_empty());
    // b blocked z and was blocked by s.
    assert_eq!(s.block_relations("b").await.expect("rel"), vec!["s", "z"]);
    assert_eq!(s.block_relations("s").await.expect("rel"), vec!["a", "b"]);
    assert_eq!(s.block_relations("z").await.expect("rel"), vec!["b"]);
    s.set_block("s", "b", false, T0).await.expect("unblock");
    assert_eq!(s.block_relations("b").await.expect("rel"), vec!["z"]);
    assert_eq!(
        s.blocks("s").await.expect("list"),
        vec![("a".to_owned(), T0 + 1)]
    );
}

pub async fn a_group_cannot_include_someone_blocked_either_way<S: Storage>(s: Arc<S>) {
    s.set_block("bob", "alice", true, T0).await.expect("block");
    for (creator, others) in [("alice", ["bob", "carol"]), ("bob", ["carol", "alice"])] {
        let others: Vec<String> = others.map(String::from).to_vec();
        assert!(
            matches!(
                s.create_group(creator, &others, "t", T0).await,
                Err(StorageError::Blocked)
            ),
            "{creator} with {others:?}"
        );
    }
    // Others who blocked each other may share a group one of them did not create.
    s.create_group("carol", &["alice".into(), "bob".into()], "t", T0)
        .await
        .expect("carol's group");
}

pub async fn reports_are_stored<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let m = s
        .append(text(c.id, "s", "spam", T0))
        .await
        .expect("m")
        .message;
    let a = s
        .report(NewReport {
            reporter: "b".into(),
            reported_user: "s".into(),
            conversation: Some(c.id),
            message: Some(m.id),
            reason: "spam".into(),
            now_ms: T0,
            snapshot: ReportSnapshot::default(),
            held: None,
        })
        .await
        .expect("report");
    let b = s
        .report(NewReport {
            reporter: "b".into(),
            reported_user: "s".into(),
            conversation: None,
            message: None,
            reason: "again".into(),
            now_ms: T0,
            snapshot: ReportSnapshot::default(),
            held: None,
        })
        .await
        .expect("report");
    assert_ne!(a, b);
}

fn report_of(reporter: &str, reported: &str, reason: &str, now_ms: i64) -> NewReport {
    NewReport {
        reporter: reporter.into(),
        reported_user: reported.into(),
        conversation: None,
        message: None,
        reason: reason.into(),
        now_ms,
        snapshot: ReportSnapshot::default(),
        held: None,
    }
}

fn entry(
    target: &str,
    action: ModAction,
    report: Option<uuid::Uuid>,
    at_ms: i64,
) -> ModerationEntry {
    ModerationEntry {
        id: time_ordered_id(at_ms),
        at_ms,
        moderator: "mod".into(),
        target: target.into(),
        action,
        report,
        note: format!("{} {target}", action.as_str()),
    }
}

pub async fn reports_keep_their_snapshot_and_list_newest_first<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let mut msgs = Vec::new();
    for i in 0..3 {
        let sender = if i == 1 { "s" } else { "b" };
        let m = s
            .append(text(c.id, sender, &format!("m{i}"), T0 + i))
            .await
            .expect("m");
        msgs.push(m.message);
    }
    let snapshot = ReportSnapshot {
        participants: c.participants.clone(),
        participant_count: 2,
        messages: msgs.clone(),
    };
    let first = s
        .report(NewReport {
            conversation: Some(c.id),
            message: Some(msgs[1].id),
            snapshot: snapshot.clone(),
            ..report_of("b", "s", "scam", T0 + 10)
        })
        .await
        .expect("report");
    // The evidence outlives the conversation.
    s.delete_conversation(c.id, "b").await.expect("delete");
    let stored = s.report_by_id(first).await.expect("get").expect("stored");
    assert_eq!(stored.snapshot, snapshot);
    assert_eq!(stored.message, Some(msgs[1].id));
    assert_eq!(stored.conversation, Some(c.id));
    assert_eq!(
        (stored.reporter.as_str(), stored.reported_user.as_str()),
        ("b", "s")
    );
    assert_eq!(stored.created_at_ms, T0 + 10);
    assert_eq!(stored.resolution, None);
    assert_eq!(s.report_by_id(uuid::Uuid::nil()).await.expect("get"), None);

    let second = s
        .report(report_of("x", "y", "spam", T0 + 20))
        .await
        .expect("r2");
    let third = s
        .report(report_of("b", "s", "again", T0 + 30))
        .await
        .expect("r3");
    let ids = |rs: Vec<parley_types::Report>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = ReportFilter::default();
    assert_eq!(
        ids(s.reports(&all, None, 10).await.expect("all")),
        [third, second, first]
    );
    // Pages chain through `before`.
    assert_eq!(
        ids(s.reports(&all, None, 2).await.expect("p1")),
        [third, second]
    );
    assert_eq!(
        ids(s.reports(&all, Some(second), 2).await.expect("p2")),
        [first]
    );
    let against_s = ReportFilter {
        reported_user: Some("s".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(s.reports(&against_s, None, 10).await.expect("s")),
        [third, first]
    );
    let nobody = ReportFilter {
        reported_user: Some("nobody".into()),
        ..Default::default()
    };
    assert!(s.reports(&nobody, None, 10).await.expect("none").is_empty());
}

pub async fn moderation_resolves_a_report_once_and_changes_standing<S: Storage>(s: Arc<S>) {
    assert_eq!(
        s.standing("s").await.expect("standing"),
        Standing::default()
    );
    let r1 = s.report(report_of("b", "s", "scam", T0)).await.expect("r1");
    let r2 = s
        .report(report_of("c", "s", "scam", T0 + 1))
        .await
        .expect("r2");
    let open = ReportFilter {
        open_only: true,
        ..Default::default()
    };
    assert_eq!(s.reports(&open, None, 10).await.expect("open").len(), 2);

    // A report against someone else, or unknown: refused, nothing written.
    assert_eq!(
        s.moderate(entry("b", ModAction::Ban, Some(r1), T0 + 2))
            .await,
        Err(StorageError::Invalid("that report is about another user"))
    );
    assert_eq!(
        s.moderate(entry("s", ModAction::Ban, Some(uuid::Uuid::nil()), T0 + 2))
            .await,
        Err(StorageError::NotFound)
    );
    assert_eq!(s.standing("b").await.expect("b"), Standing::default());
    assert!(
        s.moderation_log(None, None, 10)
            .await
            .expect("log")
            .is_empty()
    );

    let until = T0 + 3_600_000;
    let muted = s
        .moderate(entry(
            "s",
            ModAction::Mute { until_ms: until },
            Some(r1),
            T0 + 3,
        ))
        .await
        .expect("mute");
    assert_eq!(muted.muted_until_ms, until);
    assert!(muted.muted_at(T0 + 4) && !muted.muted_at(until));
    let resolved = s.report_by_id(r1).await.expect("get").expect("r1");
    let res = resolved.resolution.expect("resolved");
    assert_eq!(res.action, ModAction::Mute { until_ms: until });
    assert_eq!((res.moderator.as_str(), res.at_ms), ("mod", T0 + 3));
    // Once only.
    assert_eq!(
        s.moderate(entry("s", ModAction::Ban, Some(r1), T0 + 4))
            .await,
        Err(StorageError::Invalid("that report is already resolved"))
    );
    let still_open: Vec<_> = s.reports(&open, None, 10).await.expect("open");
    assert_eq!(still_open.iter().map(|r| r.id).collect::<Vec<_>>(), [r2]);
    let open_against_s = ReportFilter {
        open_only: true,
        reported_user: Some("s".into()),
    };
    assert_eq!(
        s.reports(&open_against_s, None, 10).await.expect("o").len(),
        1
    );

    // Actions without a report, then the log.
    s.moderate(entry("s", ModAction::Warn, None, T0 + 5))
        .await
        .expect("warn");
    s.moderate(entry("s", ModAction::Shadow, None, T0 + 6))
        .await
        .expect("shadow");
    let banned = s
        .moderate(entry("s", ModAction::Ban, Some(r2), T0 + 7))
        .await
        .expect("ban");
    assert_eq!(
        banned,
        Standing {
            banned: true,
            shadowed: true,
            muted_until_ms: until,
            warnings: 1,
            updated_at_ms: T0 + 7,
        }
    );
    assert_eq!(s.standing("s").await.expect("standing"), banned);
    s.moderate(entry("other", ModAction::Warn, None, T0 + 8))
        .await
        .expect("warn other");
    let unbanned = s
        .moderate(entry("s", ModAction::Unban, None, T0 + 9))
        .await
        .expect("unban");
    assert!(!unbanned.banned && unbanned.shadowed);
    let log = s.moderation_log(None, None, 10).await.expect("log");
    let actions: Vec<_> = log
        .iter()
        .map(|e| (e.target.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("s", "unban"),
            ("other", "warn"),
            ("s", "ban"),
            ("s", "shadow"),
            ("s", "warn"),
            ("s", "mute"),
        ]
    );
    assert_eq!(log[2].report, Some(r2));
    assert_eq!(log[2].note, "ban s");
    let of_s = s.moderation_log(Some("s"), None, 2).await.expect("of s");
    assert_eq!(
        of_s.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["unban", "ban"]
    );
    let older = s
        .moderation_log(Some("s"), Some(of_s[1].id), 10)
        .await
        .expect("older");
    assert_eq!(
        older.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["shadow", "warn", "mute"]
    );
}

pub async fn shadowed_messages_keep_their_visibility<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let shadowed = NewMessage {
        visibility: Visibility::Sender,
        ..text(c.id, "s", "hidden", T0)
    };
    let stored = s.append(shadowed.clone()).await.expect("append").message;
    assert_eq!(stored.visibility, Visibility::Sender);
    assert!(stored.visible_to("s") && !stored.visible_to("b"));
    s.append(text(c.id, "b", "plain", T0 + 1))
        .await
        .expect("plain");
    let retry = s.append(shadowed).await.expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.message.visibility, Visibility::Sender);
    let page = s.history(c.id, None, 10).await.expect("history");
    let vis: Vec<_> = page.messages.iter().map(|m| m.visibility).collect();
    assert_eq!(vis, [Visibility::Everyone, Visibility::Sender]);
    let after = s
        .messages_after(c.id, Position::default(), 10)
        .await
        .expect("after");
    assert_eq!(after[0], stored);
}

/// A message with an upload keeps every field of it (URLs are the gateway's, never stored),
/// and one with an outside URL (stored before uploads existed) keeps reading as one.
pub async fn uploaded_media_round_trips<S: Storage>(s: Arc<S>) {
    let c = direct(&*s, "b", "s", "l").await;
    let upload = MediaRef {
        mime_type: "image/jpeg".into(),
        size_bytes: 123_456,
        name: "castle.jpg".into(),
        width: 2048,
        height: 1365,
        id: "0190f0f0-0000-7000-8000-000000000001".into(),
        thumb_width: 320,
        thumb_height: 213,
        placeholder: "#8a7b6c".into(),
        ..MediaRef::default()
    };
    let outside = MediaRef {
        url: "https://example.com/x.png".into(),
        mime_type: "image/png".into(),
        size_bytes: 10,
        name: "x.png".into(),
        width: 1,
        height: 1,
        ..MediaRef::default()
    };
    for (i, media) in [upload, outside].into_iter().enumerate() {
        let sent = NewMessage {
            kind: MessageKind::Image,
            content: String::new(),
            media: Some(media.clone()),
            ..text(c.id, "s", &format!("m{i}"), T0 + i as i64)
        };
        let stored = s.append(sent).await.expect("append").message;
        assert_eq!(stored.media.as_ref(), Some(&media));
        let page = s.history(c.id, None, 1).await.expect("history");
        assert_eq!(page.messages[0].media.as_ref(), Some(&media));
    }
}

pub async fn contacts_are_users_sharing_a_conversation<S: Storage>(s: Arc<S>) {
    direct(&*s, "me", "s1", "l").await;
    direct(&*s, "me", "s1", "l2").await;
    direct(&*s, "s2", "me", "l").await;
    direct(&*s, "x", "y", "l").await;
    s.create_group("g", &["me".into(), "h".into()], "t", T0)
        .await
        .expect("group");
    let big: Vec<String> = ["me", "s1"]
        .into_iter()
        .map(String::from)
        .chain((0..10).map(|i| format!("crowd{i}")))
        .collect();
    s.create_group("g", &big, "big", T0).await.expect("group");
    // g, me, s1 and the crowd: 13.
    let mut contacts = s.contacts("me", 12).await.expect("contacts");
    contacts.sort();
    assert_eq!(
        contacts,
        vec!["g", "h", "s1", "s2"],
        "the group of 13 is too big"
    );
    let with_big = s.contacts("me", 13).await.expect("contacts");
    assert_eq!(with_big.len(), 14);
    assert!(s.contacts("nobody", 100).await.expect("none").is_empty());
}

pub async fn values_round_trip_by_owner_and_prefix<S: Storage>(s: Arc<S>) {
    s.put_value("u", "device/b", Some(b"B".to_vec()))
        .await
        .expect("put");
    s.put_value("u", "device/a", Some(b"A".to_vec()))
        .await
        .expect("put");
    s.put_value("u", "mute/c1", Some(Vec::new()))
        .await
        .expect("put");
    s.put_value("v", "device/x", Some(b"X".to_vec()))
        .await
        .expect("put");
    s.put_value("\0node", "cursor", Some(7u64.to_be_bytes().to_vec()))
        .await
        .expect("an internal owner");
    let devices = s.values("u", "device/", 100).await.expect("list");
    assert_eq!(
        devices,
        vec![
            ("device/a".to_owned(), b"A".to_vec()),
            ("device/b".to_owned(), b"B".to_vec())
        ]
    );
    assert_eq!(s.values("u", "device/", 1).await.expect("list").len(), 1);
    assert_eq!(s.values("u", "", 100).await.expect("all").len(), 3);
    assert_eq!(
        s.value("u", "mute/c1").await.expect("get"),
        Some(Vec::new()),
        "an empty value is a value"
    );
    assert_eq!(
        s.value("u", "mute/c").await.expect("get"),
        None,
        "not a prefix match"
    );
    assert_eq!(
        s.value("\0node", "cursor").await.expect("get"),
        Some(7u64.to_be_bytes().to_vec())
    );
    // Overwrite, then remove.
    s.put_value("u", "device/a", Some(b"A2".to_vec()))
        .await
        .expect("overwrite");
    assert_eq!(
        s.value("u", "device/a").await.expect("get"),
        Some(b"A2".to_vec())
    );
    s.put_value("u", "device/a", None).await.expect("remove");
    s.put_value("u", "device/none", None)
        .await
        .expect("removing what is not there is fine");
    assert_eq!(
        s.values("u", "device/", 100).await.expect("list"),
        vec![("device/b".to_owned(), b"B".to_vec())]
    );
    assert_eq!(s.values("v", "device/", 100).await.expect("list").len(), 1);
    // Bounds: errors, never a panic or a cut key.
    let long_key = "k".repeat(crate::MAX_VALUE_KEY_BYTES + 1);
    assert!(matches!(
        s.put_value("u", &long_key, Some(Vec::new())).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.put_value("u", "big", Some(vec![0; crate::MAX_VALUE_BYTES + 1]))
            .await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.put_value("", "k", None).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.values(&"o".repeat(70_000), "", 10).await,
        Err(StorageError::Invalid(_))
    ));
}
