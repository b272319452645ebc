//! The index on its own (in memory): what each kind of query finds, who sees what, order and
//! paging, deletes. The indexer and the API are tried end to end in `tests/it/search.rs`.

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

struct Fixture {
    index: Arc<SearchIndex>,
}

impl Fixture {
    /// alice+bob talk in conversation 1; alice+carol in 2.
    fn new(messages: &[(u128, u64, &str, &str)]) -> Self {
        let index = Arc::new(SearchIndex::in_memory());
        let mut w = index.writer().expect("writer");
        for &(c, id, sender, text) in messages {
            let participants = match c {
                1 => vec!["alice".to_owned(), "bob".to_owned()],
                _ => vec!["alice".to_owned(), "carol".to_owned()],
            };
            w.add(&message(conv(c), id, sender, text), &participants)
                .expect("add");
        }
        w.commit(messages.len() as u64).expect("commit");
        Self { index }
    }

    fn ids(&self, user: &str, q: &str) -> Vec<u64> {
        self.find(user, q, |_| {})
    }

    fn find(&self, user: &str, q: &str, tweak: impl FnOnce(&mut Opts)) -> Vec<u64> {
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
            user,
            query: &parsed,
            conversation: o.conversation,
            before: o.before,
            exclude_senders: &o.exclude_senders,
            sort: o.sort,
            offset: o.offset,
            limit: o.limit,
        };
        self.index
            .search(&s)
            .expect("search")
            .iter()
            .map(|h| h.id.0)
            .collect()
    }
}

#[test]
fn words_all_must_match_whatever_their_case_and_accents() {
    let f = Fixture::new(&[
        (1, 1, "bob", "The Lego castle is still available"),
        (1, 2, "alice", "Is the castle complete?"),
        (1, 3, "bob", "Yes, with the crème brûlée café set"),
    ]);
    assert_eq!(f.ids("alice", "castle "), [2, 1], "newest first");
    assert_eq!(f.ids("alice", "LEGO castle "), [1]);
    assert_eq!(f.ids("alice", "creme brulee cafe "), [3]);
    assert_eq!(f.ids("alice", "Crème "), [3]);
    assert_eq!(f.ids("alice", "castle dragon "), Vec::<u64>::new());
}

#[test]
fn phrases_match_in_order_only() {
    let f = Fixture::new(&[
        (1, 1, "bob", "pay me outside the site"),
        (1, 2, "bob", "the site says pay outside"),
    ]);
    assert_eq!(f.ids("alice", "\"pay me outside\""), [1]);
    assert_eq!(f.ids("alice", "\"outside the site\""), [1]);
    assert_eq!(
        f.ids("alice", "pay outside "),
        [2, 1],
        "without quotes: any order"
    );
}

#[test]
fn the_word_being_typed_matches_as_a_prefix() {
    let f = Fixture::new(&[
        (1, 1, "bob", "castle for sale"),
        (1, 2, "bob", "casting call"),
        (1, 3, "bob", "a cat"),
    ]);
    assert_eq!(f.ids("alice", "cast"), [2, 1]);
    assert_eq!(f.ids("alice", "castl"), [1]);
    assert_eq!(
        f.ids("alice", "cast "),
        Vec::<u64>::new(),
        "a finished word matches whole"
    );
    assert_eq!(
        f.ids("alice", "\"for sa"),
        Vec::<u64>::new(),
        "phrases are never prefixes"
    );
    assert_eq!(f.ids("alice", "for sa"), [1], "prefix after whole words");
}

#[test]
fn cjk_text_is_found_by_any_two_characters_in_a_row() {
    let f = Fixture::new(&[
        (1, 1, "bob", "我想买这个乐高城堡"),
        (1, 2, "bob", "城市很大"),
        (1, 3, "bob", "レゴのお城はまだありますか"),
    ]);
    assert_eq!(f.ids("alice", "乐高城堡"), [1]);
    assert_eq!(f.ids("alice", "城堡"), [1]);
    assert_eq!(f.ids("alice", "高城"), [1]);
    assert_eq!(f.ids("alice", "城市"), [2]);
    assert_eq!(f.ids("alice", "お城"), [3]);
    assert_eq!(f.ids("alice", "城堡很"), Vec::<u64>::new());
}

#[test]
fn a_user_finds_only_messages_they_may_see() {
    let mut shadowed = message(conv(2), 4, "carol", "secret castle deal");
    shadowed.visibility = Visibility::Sender;
    let f = Fixture::new(&[
        (1, 1, "bob", "castle one"),
        (2, 2, "carol", "castle two"),
        (2, 3, "alice", "castle three"),
    ]);
    let mut w = f.index.writer().expect("writer");
    let participants = ["alice".to_owned(), "carol".to_owned()];
    w.add(&shadowed, &participants).expect("add");
    w.commit(4).expect("commit");
    assert_eq!(f.ids("alice", "castle "), [3, 2, 1]);
    assert_eq!(f.ids("bob", "castle "), [1]);
    assert_eq!(
        f.ids("carol", "castle "),
        [4, 3, 2],
        "a shadowed message: its sender only"
    );
    assert_eq!(f.ids("mallory", "castle "), Vec::<u64>::new());
    let only2 = f.find("alice", "castle ", |s| s.conversation = Some(conv(2)));
    assert_eq!(only2, [3, 2]);
    let unblocked = f.find("alice", "castle ", |s| {
        s.exclude_senders = vec!["carol".into()]
    });
    assert_eq!(unblocked, [3, 1], "blocked users' messages never appear");
}

#[test]
fn pages_go_by_id_or_by_offset() {
    let rows: Vec<(u128, u64, &str, &str)> = (1..=30).map(|i| (1, i, "bob", "offer")).collect();
    let f = Fixture::new(&rows);
    let first = f.find("alice", "offer ", |s| s.limit = 10);
    assert_eq!(first, (21..=30).rev().collect::<Vec<_>>());
    let next = f.find("alice", "offer ", |s| {
        s.limit = 10;
        s.before = Some(MessageId(21));
    });
    assert_eq!(next, (11..=20).rev().collect::<Vec<_>>());
    let by_score = f.find("alice", "offer ", |s| {
        s.sort = SortBy::Relevance;
        s.limit = 10;
        s.offset = 25;
    });
    assert_eq!(by_score.len(), 5);
}

#[test]
fn relevance_puts_the_better_match_first() {
    let f = Fixture::new(&[
        (1, 1, "bob", "price price price agreed at 40 price"),
        (
            1,
            2,
            "bob",
            "the weather today is nice, and about the toy: maybe a price later",
        ),
    ]);
    let best = f.find("alice", "price ", |s| s.sort = SortBy::Relevance);
    assert_eq!(best, [1, 2]);
}

#[test]
fn deleting_a_conversation_removes_its_hits_and_commits_carry_the_cursor() {
    let f = Fixture::new(&[(1, 1, "bob", "castle"), (2, 2, "carol", "castle")]);
    assert_eq!(f.index.watermark().expect("wm"), Some(2));
    let mut w = f.index.writer().expect("writer");
    w.delete_conversation(conv(1));
    w.commit(3).expect("commit");
    assert_eq!(f.ids("alice", "castle "), [2]);
    assert_eq!(f.index.watermark().expect("wm"), Some(3));
    // What was never committed is not there after a rollback.
    w.add(&message(conv(2), 9, "carol", "castle"), &["alice".into()])
        .expect("add");
    w.rollback().expect("rollback");
    assert_eq!(f.ids("alice", "castle "), [2]);
}

#[test]
fn hits_carry_a_snippet_with_highlights() {
    let f = Fixture::new(&[(1, 1, "bob", "Is the Lego castle still available?")]);
    let parsed = Parsed::parse("lego cas").expect("parses");
    let s = Search {
        user: "alice",
        query: &parsed,
        conversation: None,
        before: None,
        exclude_senders: &[],
        sort: SortBy::Newest,
        offset: 0,
        limit: 5,
    };
    let hits = f.index.search(&s).expect("search");
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(
        (h.conversation, h.seq, h.sender.as_str()),
        (conv(1), 1, "bob")
    );
    assert_eq!(h.snippet, "Is the Lego castle still available?");
    assert_eq!(h.highlights, [(7, 11), (12, 18)]);
}
