//! One suite for every engine: what each kind of query finds, who sees what, order and paging,
//! replacing and deleting, snippets. It runs on tantivy (in memory) and on a live SolrCloud
//! (`PARLEY_SOLR`: the root URL of one `scripts/test.sh` starts, e.g.
//! `http://127.0.0.1:8983/solr`; each case in a fresh two-shard collection of the `parley`
//! configset, dropped after). The indexers and the API are tried end to end in
//! `tests/it/search.rs`.

use std::sync::Arc;

use parley_types::{ConversationId, Message, MessageId, MessageKind, Visibility};

use super::*;

fn conv(n: u128) -> ConversationId {
    ConversationId(uuid::Uuid::from_u128(n))
}

fn message(c: ConversationId, id: u64, sender: &str, content: &str) -> Message {
    Message {
        id: MessageId(id),
        conversation: c,
        sender: sender.into(),
        kind: MessageKind::Text,
        content: content.into(),
        media: None,
        client_msg_id: format!("m{id}"),
        created_at_ms: id as i64,
        seq: id,
        visibility: Visibility::Everyone,
    }
}

/// A search's options besides the user and the text.
struct Opts {
    conversation: Option<ConversationId>,
    before: Option<MessageId>,
    exclude_senders: Vec<String>,
    sort: SortBy,
    offset: usize,
    limit: usize,
}

fn participants(c: u128) -> Vec<String> {
    match c {
        1 => vec!["alice".to_owned(), "bob".to_owned()],
        _ => vec!["alice".to_owned(), "carol".to_owned()],
    }
}

struct Fixture {
    index: Arc<dyn SearchIndex>,
}

impl Fixture {
    /// alice+bob talk in conversation 1; alice+carol in 2.
    async fn new(index: Arc<dyn SearchIndex>, messages: &[(u128, u64, &str, &str)]) -> Self {
        let f = Self { index };
        let rows: Vec<Message> = messages
            .iter()
            .map(|&(c, id, sender, text)| message(conv(c), id, sender, text))
            .collect();
        f.add(&rows).await;
        f
    }

    /// Adds and commits `rows` (participants by conversation, as in [`Fixture::new`]).
    async fn add(&self, rows: &[Message]) {
        let mut w = self.index.clone().writer().expect("writer");
        for m in rows {
            let c = m.conversation.0.as_u128();
            w.add(m, &participants(c)).expect("add");
        }
        w.commit(rows.len() as u64).await.expect("commit");
    }

    async fn ids(&self, user: &str, q: &str) -> Vec<u64> {
        self.find(user, q, |_| {}).await
    }

    async fn hits(&self, user: &str, q: &str, tweak: impl FnOnce(&mut Opts)) -> Vec<Hit> {
        let parsed = Parsed::parse(q).expect("query parses");
        let mut o = Opts {
            conversation: None,
            before: None,
            exclude_senders: Vec::new(),
            sort: SortBy::Newest,
            offset: 0,
            limit: 50,
        };
        tweak(&mut o);
        let s = Search {
            user: user.to_owned(),
            query: parsed,
            conversation: o.conversation,
            before: o.before,
            exclude_senders: o.exclude_senders,
            sort: o.sort,
            offset: o.offset,
            limit: o.limit,
        };
        self.index.clone().search(s).await.expect("search")
    }

    async fn find(&self, user: &str, q: &str, tweak: impl FnOnce(&mut Opts)) -> Vec<u64> {
        let hits = self.hits(user, q, tweak).await;
        hits.iter().map(|h| h.id.0).collect()
    }
}

/// The cases, each run on every engine.
macro_rules! cases {
    ($make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (index, _guard) = $make().await;
                super::$case(index).await;
            }
        )*
    };
}

macro_rules! suite {
    ($make:expr) => {
        cases!($make;
            words_all_must_match_whatever_their_case_and_accents,
            phrases_match_in_order_only,
            the_word_being_typed_matches_as_a_prefix,
            a_split_word_typed_with_a_common_prefix_still_answers,
            cjk_text_is_found_by_any_two_characters_in_a_row,
            a_user_finds_only_messages_they_may_see,
            pages_go_by_id_or_by_offset,
            relevance_puts_the_better_match_first,
            deleting_a_conversation_removes_its_hits,
            a_message_added_again_is_found_once,
            hits_carry_a_snippet_with_highlights,
        );
    };
}

mod solr_engine {
    use std::time::Duration;

    use parley_testsupport::SolrCollection;

    use super::*;
    use crate::search::solr::Solr;

    async fn make() -> (Arc<dyn SearchIndex>, SolrCollection) {
        let collection = tokio::task::spawn_blocking(SolrCollection::create)
            .await
            .expect("create");
        let solr = Solr::new(&collection.url(), Duration::from_secs(30)).expect("client");
        solr.ping().await.expect("the new collection answers");
        (Arc::new(solr), collection)
    }

    suite!(make);
}

mod tantivy_engine {
    use super::*;

    async fn make() -> (Arc<dyn SearchIndex>, ()) {
        (Arc::new(Tantivy::in_memory()), ())
    }

    suite!(make);

    /// The embedded engine's own: commits carry the feed cursor, and what was never
    /// committed is gone after a rollback.
    #[tokio::test]
    async fn commits_carry_the_cursor_and_rollbacks_drop_the_rest() {
        let index = Arc::new(Tantivy::in_memory());
        let f = Fixture::new(
            index.clone(),
            &[(1, 1, "bob", "castle"), (2, 2, "carol", "castle")],
        )
        .await;
        assert_eq!(index.watermark().expect("wm"), Some(2));
        let mut w = index.open_writer().expect("writer");
        w.delete_conversation(conv(1));
        w.commit(3).expect("commit");
        assert_eq!(index.watermark().expect("wm"), Some(3));
        w.add(&message(conv(2), 9, "carol", "castle"), &["alice".into()])
            .expect("add");
        w.rollback().expect("rollback");
        assert_eq!(f.ids("alice", "castle ").await, [2]);
    }
}

async fn words_all_must_match_whatever_their_case_and_accents(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[
            (1, 1, "bob", "The Lego castle is still available"),
            (1, 2, "alice", "Is the castle complete?"),
            (1, 3, "bob", "Yes, with the crème brûlée café set"),
        ],
    )
    .await;
    assert_eq!(f.ids("alice", "castle ").await, [2, 1], "newest first");
    assert_eq!(f.ids("alice", "LEGO castle ").await, [1]);
    assert_eq!(f.ids("alice", "creme brulee cafe ").await, [3]);
    assert_eq!(f.ids("alice", "Crème ").await, [3]);
    assert_eq!(f.ids("alice", "castle dragon ").await, Vec::<u64>::new());
}

async fn phrases_match_in_order_only(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[
            (1, 1, "bob", "pay me outside the site"),
            (1, 2, "bob", "the site says pay outside"),
        ],
    )
    .await;
    assert_eq!(f.ids("alice", "\"pay me outside\"").await, [1]);
    assert_eq!(f.ids("alice", "\"outside the site\"").await, [1]);
    assert_eq!(
        f.ids("alice", "pay outside ").await,
        [2, 1],
        "without quotes: any order"
    );
}

async fn the_word_being_typed_matches_as_a_prefix(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[
            (1, 1, "bob", "castle for sale"),
            (1, 2, "bob", "casting call"),
            (1, 3, "bob", "a cat"),
        ],
    )
    .await;
    assert_eq!(f.ids("alice", "cast").await, [2, 1]);
    assert_eq!(f.ids("alice", "castl").await, [1]);
    assert_eq!(
        f.ids("alice", "cast ").await,
        Vec::<u64>::new(),
        "a finished word matches whole"
    );
    assert_eq!(
        f.ids("alice", "\"for sa").await,
        Vec::<u64>::new(),
        "phrases are never prefixes"
    );
    assert_eq!(
        f.ids("alice", "for sa").await,
        [1],
        "prefix after whole words"
    );
}

async fn a_split_word_typed_with_a_common_prefix_still_answers(index: Arc<dyn SearchIndex>) {
    // "lego-ca" being typed is the phrase "lego ca*": 3 000 words start with "ca", more than
    // an engine expands a prefix to (tantivy 64, Solr's clause limit 1 024).
    let texts: Vec<String> = (0..3_000).map(|i| format!("lego-ca{i:04}")).collect();
    let mut rows: Vec<(u128, u64, &str, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (1, i as u64 + 1, "bob", t.as_str()))
        .collect();
    rows.push((1, 3_001, "bob", "lego-castle"));
    rows.push((1, 3_002, "bob", "duplo ca0001"));
    let f = Fixture::new(index.clone(), &rows).await;
    let hits = f.ids("alice", "lego-ca").await;
    assert!(!hits.is_empty(), "answers, with some of the matches");
    assert!(
        hits.iter().all(|&id| id <= 3_001),
        "only \"lego\" followed by a ca… word: {hits:?}"
    );
    assert_eq!(f.ids("alice", "lego-cas").await, [3_001]);
}

async fn cjk_text_is_found_by_any_two_characters_in_a_row(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[
            (1, 1, "bob", "我想买这个乐高城堡"),
            (1, 2, "bob", "城市很大"),
            (1, 3, "bob", "レゴのお城はまだありますか"),
        ],
    )
    .await;
    assert_eq!(f.ids("alice", "乐高城堡").await, [1]);
    assert_eq!(f.ids("alice", "城堡").await, [1]);
    assert_eq!(f.ids("alice", "高城").await, [1]);
    assert_eq!(f.ids("alice", "城市").await, [2]);
    assert_eq!(f.ids("alice", "お城").await, [3]);
    assert_eq!(f.ids("alice", "城堡很").await, Vec::<u64>::new());
}

async fn a_user_finds_only_messages_they_may_see(index: Arc<dyn SearchIndex>) {
    let mut shadowed = message(conv(2), 4, "carol", "secret castle deal");
    shadowed.visibility = Visibility::Sender;
    let f = Fixture::new(
        index.clone(),
        &[
            (1, 1, "bob", "castle one"),
            (2, 2, "carol", "castle two"),
            (2, 3, "alice", "castle three"),
        ],
    )
    .await;
    f.add(&[shadowed]).await;
    assert_eq!(f.ids("alice", "castle ").await, [3, 2, 1]);
    assert_eq!(f.ids("bob", "castle ").await, [1]);
    assert_eq!(
        f.ids("carol", "castle ").await,
        [4, 3, 2],
        "a shadowed message: its sender only"
    );
    assert_eq!(f.ids("mallory", "castle ").await, Vec::<u64>::new());
    let only2 = f
        .find("alice", "castle ", |s| s.conversation = Some(conv(2)))
        .await;
    assert_eq!(only2, [3, 2]);
    let unblocked = f
        .find("alice", "castle ", |s| {
            s.exclude_senders = vec!["carol".into()]
        })
        .await;
    assert_eq!(unblocked, [3, 1], "blocked users' messages never appear");
}

async fn pages_go_by_id_or_by_offset(index: Arc<dyn SearchIndex>) {
    let rows: Vec<(u128, u64, &str, &str)> = (1..=30).map(|i| (1, i, "bob", "offer")).collect();
    let f = Fixture::new(index.clone(), &rows).await;
    let first = f.find("alice", "offer ", |s| s.limit = 10).await;
    assert_eq!(first, (21..=30).rev().collect::<Vec<_>>());
    let next = f
        .find("alice", "offer ", |s| {
            s.limit = 10;
            s.before = Some(MessageId(21));
        })
        .await;
    assert_eq!(next, (11..=20).rev().collect::<Vec<_>>());
    let by_score = f
        .find("alice", "offer ", |s| {
            s.sort = SortBy::Relevance;
            s.limit = 10;
            s.offset = 25;
        })
        .await;
    assert_eq!(by_score.len(), 5);
}

async fn relevance_puts_the_better_match_first(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[
            (1, 1, "bob", "price price price agreed at 40 price"),
            (
                1,
                2,
                "bob",
                "the weather today is nice, and about the toy: maybe a price later",
            ),
        ],
    )
    .await;
    let best = f
        .find("alice", "price ", |s| s.sort = SortBy::Relevance)
        .await;
    assert_eq!(best, [1, 2]);
}

async fn deleting_a_conversation_removes_its_hits(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[
            (1, 1, "bob", "castle"),
            (2, 2, "carol", "castle"),
            (1, 3, "alice", "castle"),
        ],
    )
    .await;
    let mut w = index.clone().writer().expect("writer");
    w.delete_conversation(conv(1));
    w.commit(3).await.expect("commit");
    assert_eq!(f.ids("alice", "castle ").await, [2]);
    assert_eq!(f.ids("bob", "castle ").await, Vec::<u64>::new());
    // A delete applies to what came before it in the same commit, not after.
    w.add(
        &message(conv(2), 4, "carol", "castle again"),
        &participants(2),
    )
    .expect("add");
    w.delete_conversation(conv(2));
    w.add(
        &message(conv(2), 5, "carol", "castle anew"),
        &participants(2),
    )
    .expect("add");
    w.commit(4).await.expect("commit");
    assert_eq!(f.ids("alice", "castle ").await, [5]);
}

async fn a_message_added_again_is_found_once(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[(1, 1, "bob", "castle"), (1, 2, "bob", "castle")],
    )
    .await;
    // Indexed again (a crash between commit and acknowledgement), in a later commit and in
    // the same one.
    let again = message(conv(1), 1, "bob", "castle");
    f.add(std::slice::from_ref(&again)).await;
    f.add(&[again.clone(), again]).await;
    assert_eq!(f.ids("alice", "castle ").await, [2, 1]);
    let by_score = f
        .find("alice", "castle ", |s| s.sort = SortBy::Relevance)
        .await;
    assert_eq!(by_score.len(), 2);
}

async fn hits_carry_a_snippet_with_highlights(index: Arc<dyn SearchIndex>) {
    let f = Fixture::new(
        index.clone(),
        &[(1, 1, "bob", "Is the Lego castle still available?")],
    )
    .await;
    let hits = f.hits("alice", "lego cas", |_| {}).await;
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(
        (h.conversation, h.seq, h.sender.as_str()),
        (conv(1), 1, "bob")
    );
    assert_eq!(h.snippet, "Is the Lego castle still available?");
    assert_eq!(h.highlights, [(7, 11), (12, 18)]);
}
