//! Search end to end: messages sent over WebSocket become searchable through the indexer, for
//! the conversation's participants only, never from a blocked user; deletes leave the results;
//! a `kill -9` neither loses nor doubles an indexed message; `gateway reindex` and a missing
//! index rebuild from storage.

use std::collections::HashSet;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// `q` as a query-string value.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One search as `user`: status and body.
async fn search(gw: &Gateway, user: &str, q: &str, extra: &str) -> (u16, Value) {
    let (status, json, _) = get(gw, user, &format!("/api/search?q={}{extra}", encode(q))).await;
    (status, json)
}

/// The message ids of one page.
fn ids(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {page}"))
        .iter()
        .map(|r| r["messageId"].as_str().unwrap().to_owned())
        .collect()
}

/// Every result for `q`, paging newest first.
async fn all(gw: &Gateway, user: &str, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut before = String::new();
    loop {
        let (status, page) = search(gw, user, q, &format!("&limit=100{before}")).await;
        assert_eq!(status, 200, "{page}");
        out.extend(ids(&page));
        match page["nextBefore"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => return out,
        }
    }
}

/// Waits until `q` finds `n` results for `user` and the indexer has committed everything it
/// has read; returns the ids.
async fn until_found(gw: &Gateway, user: &str, q: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let found = all(gw, user, q).await;
        let lag = metric_value(&metrics(gw.addr).await, "parley_search_lag_changes");
        if found.len() >= n && lag == 0.0 {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{q:?}: {} of {n} results for {user} (lag {lag})",
            found.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `gateway <args> reindex`, which must succeed; its stdout.
fn reindex(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .args(["--jwt-secret", SECRET, "reindex"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `gateway reindex` of a cluster's keyspace `ks` into `solr`.
fn reindex_cluster(redis: &RedisServer, ks: &str, solr: &SolrCollection) -> String {
    let (url, cass, solr) = (redis.url(), cassandra(), solr.url());
    reindex(&[
        "--redis",
        &url,
        "--scylla",
        &cass,
        "--scylla-keyspace",
        ks,
        "--solr",
        &solr,
        "--push",
        "false",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_find_messages_by_words_phrases_prefixes_and_cjk() {
    let gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "lego-castle").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let texts = [
        "Is the Lego castle still available?",
        "I can pay 40 for the castle",
        "On peut se voir au café près de la gare",
        "我想买这个乐高城堡",
        "pay me outside the site please",
    ];
    for (i, t) in texts.iter().enumerate() {
        alice.send_text(conv, &format!("m{i}"), t).await;
    }
    let castle = until_found(&gw, "bob", "castle ", 2).await;
    assert_eq!(castle.len(), 2);

    let (status, page) = search(&gw, "bob", "LEGO cast", "").await;
    assert_eq!(status, 200, "{page}");
    let hit = &page["results"][0];
    assert_eq!(page["results"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(hit["conversationId"], conv.to_string());
    assert_eq!(hit["senderId"], "alice");
    assert_eq!(hit["seq"], 1);
    assert_eq!(hit["snippet"], texts[0]);
    assert_eq!(hit["highlights"], serde_json::json!([[7, 11], [12, 18]]));
    assert!(hit["createdAt"].as_str().unwrap().ends_with('Z'));

    for (q, want) in [
        ("cafe pres ", 1),
        ("CAFÉ", 1),
        ("城堡", 1),
        ("乐高", 1),
        ("\"pay me outside\"", 1),
        ("\"pay outside\"", 0),
        ("pay ", 2),
    ] {
        let (status, page) = search(&gw, "bob", q, "").await;
        assert_eq!(status, 200, "{q}: {page}");
        assert_eq!(ids(&page).len(), want, "{q}: {page}");
    }
    // The sender finds them too; someone outside the conversation finds nothing.
    assert_eq!(all(&gw, "alice", "castle ").await, castle);
    assert!(all(&gw, "mallory", "castle ").await.is_empty());
    let (status, page) = search(&gw, "mallory", "castle", &format!("&conversation={conv}")).await;
    assert_eq!(status, 403, "{page}");
    // One conversation at a time; relevance order with offsets.
    let other = direct(&gw, "carol", "bob", "bike").await;
    let mut carol = Client::connect(&gw, "carol").await;
    carol.send_text(other, "c1", "castle bike combo").await;
    until_found(&gw, "bob", "castle ", 3).await;
    let (_, page) = search(&gw, "bob", "castle", &format!("&conversation={other}")).await;
    assert_eq!(ids(&page).len(), 1, "{page}");
    let (_, page) = search(&gw, "bob", "castle ", "&sort=relevance&limit=2").await;
    assert_eq!(ids(&page).len(), 2, "{page}");
    assert_eq!(page["nextOffset"], 2);
    let (_, page) = search(&gw, "bob", "castle ", "&sort=relevance&limit=2&offset=2").await;
    assert_eq!(ids(&page).len(), 1, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_searches_get_clear_errors() {
    let gw = Gateway::start(UNLIMITED);
    for (extra, status, why) in [
        (String::new(), 400, "q is required"),
        (format!("q={}", "a".repeat(201)), 400, "longer than 200"),
        ("q=%21%21".into(), 400, "no words"),
        ("q=x&sort=oldest".into(), 400, "sort must be"),
        ("q=x&before=abc".into(), 400, "before must be"),
        ("q=x&offset=5000".into(), 400, "offset must be"),
        ("q=x&conversation=nope".into(), 400, "conversation must be"),
        ("q=x&limit=0".into(), 400, "limit must be"),
        ("q=%FF".into(), 400, "not UTF-8"),
        (format!("q=x&conversation={}", uuid::Uuid::nil()), 404, ""),
    ] {
        let (got, json, _) = get(&gw, "alice", &format!("/api/search?{extra}")).await;
        assert_eq!(got, status, "{extra}: {json}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{extra}: {json}");
    }
    let (status, _, _) = http(gw.addr, "GET", "/api/search?q=x", None, None, &[]).await;
    assert_eq!(status, 401);
    let off = Gateway::start(&["--search", "false"]);
    let (status, json, _) = get(&off, "alice", "/api/search?q=castle").await;
    assert_eq!(status, 501, "{json}");
    assert_eq!(json["error"]["code"], "unsupported", "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_users_and_deleted_conversations_never_appear() {
    let gw = Gateway::start(UNLIMITED);
    let members = ["bob".to_owned(), "carol".to_owned()];
    let g = group(&gw, "alice", &members, "toys").await;
    let d = direct(&gw, "carol", "bob", "train").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut carol = Client::connect(&gw, "carol").await;
    alice.send_text(g, "a1", "dragon from alice").await;
    carol.send_text(g, "c1", "dragon from carol").await;
    carol.send_text(d, "c2", "dragon in private").await;
    until_found(&gw, "bob", "dragon ", 3).await;
    // bob blocks alice: her group message leaves his results at once; carol's stay.
    let (status, json, _) = post(&gw, "bob", "/api/blocks", r#"{"userId":"alice"}"#).await;
    assert_eq!(status, 204, "{json}");
    let (_, page) = search(&gw, "bob", "dragon ", "").await;
    let senders: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["senderId"].as_str().unwrap())
        .collect();
    assert_eq!(senders, ["carol", "carol"], "{page}");
    // Either way: alice does not see bob's side either — nor, here, anything of his.
    assert_eq!(all(&gw, "alice", "dragon ").await.len(), 2);
    // The deleted conversation's message leaves at once, and the index drops it.
    let (status, json, _) = delete(&gw, "carol", &format!("/api/conversations/{d}")).await;
    assert_eq!(status, 204, "{json}");
    assert_eq!(all(&gw, "bob", "dragon ").await.len(), 1);
    assert_eq!(all(&gw, "carol", "private ").await.len(), 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric_value(&metrics(gw.addr).await, "parley_search_deletes_total") < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "delete indexed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_neither_loses_nor_doubles_what_was_indexed() {
    let mut gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "kill").await;
    let mut alice = Client::connect(&gw, "alice").await;
    for i in 0..150 {
        alice
            .send_text(conv, &format!("k{i}"), &format!("tick number {i}"))
            .await;
    }
    // Killed while the indexer is somewhere in the middle (or done: both must hold).
    gw.kill9();
    gw.restart();
    let mut alice = Client::connect(&gw, "alice").await;
    for i in 150..200 {
        alice
            .send_text(conv, &format!("k{i}"), &format!("tick number {i}"))
            .await;
    }
    let found = until_found(&gw, "bob", "tick ", 200).await;
    assert_eq!(found.len(), 200);
    assert_eq!(
        found.iter().collect::<HashSet<_>>().len(),
        200,
        "no duplicates"
    );
    gw.restart();
    let found = until_found(&gw, "bob", "tick ", 200).await;
    assert_eq!(found.len(), 200, "a restart after the commit adds nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_index_is_rebuilt_at_start_and_by_gateway_reindex() {
    let mut gw = Gateway::start(UNLIMITED);
    let a = direct(&gw, "alice", "bob", "one").await;
    let b = direct(&gw, "alice", "carol", "two").await;
    let mut alice = Client::connect(&gw, "alice").await;
    for i in 0..40 {
        let conv = if i % 2 == 0 { a } else { b };
        alice
            .send_text(conv, &format!("r{i}"), &format!("rebuild me {i}"))
            .await;
    }
    until_found(&gw, "alice", "rebuild ", 40).await;
    assert!(gw.terminate().success());
    std::fs::remove_dir_all(gw.dir.join("search")).unwrap();
    // Started without an index: it rebuilds from storage while serving.
    gw.restart();
    assert_eq!(until_found(&gw, "alice", "rebuild ", 40).await.len(), 40);
    assert_eq!(all(&gw, "bob", "rebuild ").await.len(), 20);
    assert!(gw.terminate().success());
    // The offline command, with the node stopped.
    let dir = gw.dir.to_str().expect("a UTF-8 data dir").to_owned();
    let stdout = reindex(&["--data-dir", &dir]);
    assert!(stdout.contains("2 conversations, 40 messages"), "{stdout}");
    assert!(stdout.contains("40 documents"), "{stdout}");
    gw.restart();
    let found = until_found(&gw, "alice", "rebuild ", 40).await;
    assert_eq!(found.iter().collect::<HashSet<_>>().len(), 40);
}

/// The protocol's Search (1.4) over WebSocket and QUIC: the same results as the REST API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_search_answers_like_the_rest_api() {
    use parley_proto::{ClientBody, ErrorCode, SearchQuery, ServerBody};
    let gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "proto").await;
    let mut alice = Client::connect(&gw, "alice").await;
    for i in 0..5 {
        alice
            .send_text(conv, &format!("p{i}"), &format!("bicycle offer {i}"))
            .await;
    }
    let rest = until_found(&gw, "bob", "bicycle ", 5).await;
    let query = |q: &str, before: Option<parley_types::MessageId>| {
        ClientBody::Search(SearchQuery {
            query: q.into(),
            conversation: Some(conv),
            before,
            limit: 3,
            by_relevance: false,
            offset: 0,
        })
    };
    let config = quic_config(&gw);
    let ws = Client::connect(&gw, "bob").await;
    let quic = Client::quic(gw.quic_addr, &config, "bob", vec![]).await;
    for mut bob in [ws, quic] {
        let mut ids = Vec::new();
        let mut before = None;
        loop {
            let frame = bob.request(query("bicy", before)).await;
            let ServerBody::SearchResults {
                hits, next_before, ..
            } = frame.body
            else {
                panic!("expected SearchResults, got {frame:?}");
            };
            for h in &hits {
                assert_eq!(h.conversation, conv);
                assert_eq!(h.sender, "alice");
                let marked: String = h
                    .snippet
                    .chars()
                    .skip(h.highlights[0].0 as usize)
                    .take((h.highlights[0].1 - h.highlights[0].0) as usize)
                    .collect();
                assert_eq!(marked, "bicycle");
            }
            ids.extend(hits.iter().map(|h| h.message_id.0.to_string()));
            match next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        assert_eq!(ids, rest, "pages of 3, newest first, like REST");
        let frame = bob.request(query("  ", None)).await;
        match frame.body {
            ServerBody::Error { code, .. } => assert_eq!(code, ErrorCode::Invalid.code()),
            other => panic!("expected an error, got {other:?}"),
        }
        bob.close().await;
    }
    let mut mallory = Client::connect(&gw, "mallory").await;
    let frame = mallory.request(query("bicycle", None)).await;
    match frame.body {
        ServerBody::Error { code, .. } => assert_eq!(code, ErrorCode::Forbidden.code()),
        other => panic!("expected forbidden, got {other:?}"),
    }
}

/// `GET /api/conversations?q=` and the protocol's `Conversations {query}`: one's own
/// conversations by counterpart, listing, group title or last message, paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_found_by_counterpart_listing_title_and_last_message() {
    use parley_proto::{ClientBody, ServerBody};
    let gw = Gateway::start(UNLIMITED);
    let lego = direct(&gw, "alice", "bob-toys", "lego-castle-42").await;
    let bike = direct(&gw, "alice", "carol", "bike-7").await;
    let members = ["dave".to_owned(), "erin".to_owned()];
    let trains = group(&gw, "alice", &members, "Train Collectors").await;
    let mut alice = Client::connect(&gw, "alice").await;
    alice.send_text(bike, "b1", "Is the bike still red?").await;
    let found = |json: &Value| -> Vec<String> {
        json["conversations"]
            .as_array()
            .unwrap_or_else(|| panic!("{json}"))
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (user, q, want) in [
        ("alice", "bob", vec![lego]),
        ("alice", "castle+42", vec![lego]),
        ("alice", "LEGO+cas", vec![lego]),
        ("alice", "trai+coll", vec![trains]),
        ("alice", "erin", vec![trains]),
        ("alice", "red", vec![bike]),
        ("alice", "alice", vec![]),
        ("bob-toys", "alice", vec![lego]),
        ("mallory", "bob", vec![]),
    ] {
        let (status, json, _) = get(&gw, user, &format!("/api/conversations?q={q}")).await;
        assert_eq!(status, 200, "{q}: {json}");
        let want: Vec<String> = want.iter().map(ToString::to_string).collect();
        assert_eq!(found(&json), want, "{user} {q}: {json}");
    }
    // Two match; a page of one, then the rest.
    let (_, first, _) = get(&gw, "alice", "/api/conversations?q=b&limit=1").await;
    assert_eq!(found(&first).len(), 1, "{first}");
    let next = first["nextCursor"].as_str().expect("a next page");
    let (_, second, _) = get(
        &gw,
        "alice",
        &format!("/api/conversations?q=b&limit=1&cursor={next}"),
    )
    .await;
    assert_eq!(found(&second).len(), 1, "{second}");
    assert_ne!(found(&first), found(&second));
    let (status, json, _) = get(&gw, "alice", "/api/conversations?q=%21").await;
    assert_eq!(status, 400, "{json}");
    // Over the socket.
    let frame = alice
        .request(ClientBody::Conversations {
            cursor: None,
            limit: 10,
            query: Some("bike".into()),
        })
        .await;
    let ServerBody::ConversationPage { items, .. } = frame.body else {
        panic!("expected a page, got {frame:?}");
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].conversation.id, bike);
    assert_eq!(
        items[0].last_message.as_ref().unwrap().content,
        "Is the bike still red?"
    );
}

// --- A cluster: a Solr collection fed through the bus's consumer group `search` -------------

/// A cluster node searching `solr`, committing every 100 ms.
fn solr_node(redis: &RedisServer, ks: &str, id: u16, solr: &SolrCollection) -> Gateway {
    let url = solr.url();
    cluster_node(
        redis,
        ks,
        id,
        &["--solr", &url, "--search-commit-ms", "100"],
    )
}

/// Waits until `q` finds exactly `n` results for `user` on `gw`; returns them.
async fn until_exactly(gw: &Gateway, user: &str, q: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let found = all(gw, user, q).await;
        if found.len() == n {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{q:?}: {} of {n} results for {user}",
            found.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until the collection holds `n` documents.
async fn until_docs(solr: &SolrCollection, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let docs = solr.docs();
        if docs == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{docs} documents in Solr, {n} expected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The sum of a counter over the nodes.
async fn total(nodes: &[&Gateway], series: &str) -> f64 {
    let mut sum = 0.0;
    for n in nodes {
        sum += metric_value(&metrics(n.addr).await, series);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_indexes_each_message_once_and_any_node_finds_it() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let solr = SolrCollection::create();
    let n1 = solr_node(&redis, &ks, 1, &solr);
    let n2 = solr_node(&redis, &ks, 2, &solr);
    let a = direct(&n1, "alice", "bob", "castle").await;
    let b = direct(&n2, "carol", "alice", "train").await;
    let mut alice = Client::connect(&n1, "alice").await;
    let mut carol = Client::connect(&n2, "carol").await;
    for i in 0..60 {
        alice
            .send_text(a, &format!("a{i}"), &format!("lego castle number {i}"))
            .await;
    }
    for i in 0..40 {
        carol
            .send_text(b, &format!("c{i}"), &format!("lego train number {i}"))
            .await;
    }
    // Sent on one node, found from the other; each participant sees their own only.
    assert_eq!(until_exactly(&n2, "bob", "lego ", 60).await.len(), 60);
    assert_eq!(until_exactly(&n1, "carol", "lego ", 40).await.len(), 40);
    let mine = until_exactly(&n2, "alice", "lego ", 100).await;
    assert_eq!(
        mine.iter().collect::<HashSet<_>>().len(),
        100,
        "no duplicates"
    );
    assert_eq!(all(&n1, "alice", "\"castle number 7\"").await.len(), 1);
    assert_eq!(all(&n2, "alice", "trai").await.len(), 40, "prefix");
    until_docs(&solr, 100).await;
    // Indexed once, by whichever node took each entry.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let indexed = total(&[&n1, &n2], "parley_search_indexed_total").await;
        assert!(indexed <= 100.0, "{indexed} messages indexed, 100 sent");
        if indexed == 100.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{indexed} indexed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // `gateway reindex` rebuilds a collection from ScyllaDB alone.
    let fresh = SolrCollection::create();
    let stdout = reindex_cluster(&redis, &ks, &fresh);
    assert!(stdout.contains("2 conversations, 100 messages"), "{stdout}");
    assert!(stdout.contains("100 documents"), "{stdout}");
    assert_eq!(fresh.docs(), 100);

    // A deleted conversation leaves the deleting node's results at once, the other node's as
    // soon as the bus tells it (its cache of the conversation), and Solr drops it.
    let (status, json, _) = delete(&n2, "bob", &format!("/api/conversations/{a}")).await;
    assert_eq!(status, 204, "{json}");
    assert_eq!(all(&n2, "alice", "lego ").await.len(), 40);
    assert_eq!(all(&n2, "bob", "lego ").await.len(), 0);
    until_exactly(&n1, "alice", "lego ", 40).await;
    until_docs(&solr, 40).await;
    assert_eq!(all(&n1, "bob", "lego ").await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_node_had_taken_is_indexed_by_the_other() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let solr = SolrCollection::create();
    // The first node up leases the partitions (a lease moves only when its holder dies); it
    // holds what it takes for 30 s before it commits: longer than the sends take.
    let url = solr.url();
    let mut n1 = cluster_node(
        &redis,
        &ks,
        1,
        &["--solr", &url, "--search-commit-ms", "30000"],
    );
    let n2 = solr_node(&redis, &ks, 2, &solr);
    let mut alice = Client::connect(&n2, "alice").await;
    for c in 0..4 {
        let conv = direct(&n2, "alice", "bob", &format!("kill{c}")).await;
        for i in 0..50 {
            alice
                .send_text(conv, &format!("k{c}-{i}"), &format!("tick number {i}"))
                .await;
        }
    }
    // Killed with entries taken and not yet committed.
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric_value(&metrics(n1.addr).await, "parley_search_lag_changes") == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 took nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    n1.kill9();
    let found = until_exactly(&n2, "bob", "tick ", 200).await;
    assert_eq!(found.iter().collect::<HashSet<_>>().len(), 200);
    until_docs(&solr, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_solr_is_away_sends_go_on_searches_fail_clearly_and_nothing_is_lost() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let solr = SolrCollection::create();
    let n1 = solr_node(&redis, &ks, 1, &solr);
    let conv = direct(&n1, "alice", "bob", "away").await;
    let mut alice = Client::connect(&n1, "alice").await;
    alice.send_text(conv, "before", "ahead of the outage").await;
    until_exactly(&n1, "bob", "outage ", 1).await;

    solr.delete();
    for i in 0..20 {
        alice
            .send_text(conv, &format!("d{i}"), &format!("during the outage {i}"))
            .await;
    }
    let (status, json) = search(&n1, "bob", "outage ", "").await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"]["code"], "storage_unavailable", "{json}");

    // Back, empty: what was sent meanwhile is indexed from the bus; what Solr lost comes
    // back with `gateway reindex`.
    solr.recreate();
    until_exactly(&n1, "bob", "during ", 20).await;
    reindex_cluster(&redis, &ks, &solr);
    assert_eq!(until_exactly(&n1, "bob", "outage ", 21).await.len(), 21);
}
