//! Moderators work reports (the evidence kept at report time outlives its deletion) and act
//! on users through the admin API (tokens with `parley_role: "admin"`): a mute refuses sends
//! until it ends, a ban closes the user's sessions — on every node — and refuses new ones and
//! every REST call, a shadow-ban makes their new messages visible to themselves only. Every
//! action is in the moderation log.

use crate::support::*;
use parley_client::token::mint_hs256_admin;
use parley_proto::*;
use parley_types::{ConversationId, MessageKind};
use serde_json::{Value, json};

const MODERATOR: &str = "mod-1";

fn admin_token() -> String {
    mint_hs256_admin(SECRET.as_bytes(), MODERATOR, 3600, wall_ms())
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, json, _) = http(gw.addr, method, path, Some(&admin_token()), body, &[]).await;
    (status, json)
}

async fn act(gw: &Gateway, user: &str, body: Value) -> Value {
    let path = format!("/api/admin/users/{user}/actions");
    let (status, json) = admin(gw, "POST", &path, Some(&body.to_string())).await;
    assert_eq!(status, 200, "{body}: {json}");
    json
}

/// A Send's answer: the Ack, or the Error's code.
async fn try_send(c: &mut Client, conv: ConversationId, id: &str, text: &str) -> Result<Ack, u16> {
    let f = c.request(send_text(conv, id, text)).await;
    match f.body {
        ServerBody::Ack(a) => Ok(a),
        ServerBody::Error { code, .. } => Err(code),
        other => panic!("{other:?}"),
    }
}

fn contents(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect()
}

#[tokio::test]
async fn reports_keep_their_evidence_and_moderators_resolve_them() {
    let gw = Gateway::start(&[]);
    let c = direct(&gw, "alice", "bob", "bike").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    alice.send_text(c, "a1", "is it still for sale?").await;
    let scam = bob
        .send_text(c, "b1", "pay me by wire outside the site")
        .await
        .message_id;
    alice.send_text(c, "a2", "no thanks").await;
    let body = json!({
        "userId": "bob",
        "conversationId": c.to_string(),
        "messageId": scam.0.to_string(),
        "reason": "asks for payment off the site",
    });
    let (status, json, _) = post(&gw, "alice", "/api/reports", &body.to_string()).await;
    assert_eq!(status, 201, "{json}");
    let report_id = json["id"].as_str().expect("id").to_owned();
    // Bob deletes the conversation: the evidence stays with the report.
    let (status, json, _) = delete(&gw, "bob", &format!("/api/conversations/{c}")).await;
    assert_eq!(status, 204, "{json}");

    // Users cannot reach the admin API, not even with a good token.
    let (status, json, _) = get(&gw, "alice", "/api/admin/reports").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{json}"
    );

    let (status, listed) = admin(&gw, "GET", "/api/admin/reports", None).await;
    assert_eq!(status, 200, "{listed}");
    let reports = listed["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 1, "{listed}");
    let r = &reports[0];
    assert_eq!(r["id"], report_id.as_str());
    assert_eq!(
        (r["reporterId"].as_str(), r["reportedUserId"].as_str()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(r["status"], "open");
    assert_eq!(r["messageId"], scam.0.to_string());
    assert_eq!(
        contents(&r["snapshot"]["messages"]),
        [
            "is it still for sale?",
            "pay me by wire outside the site",
            "no thanks"
        ]
    );
    assert_eq!(r["snapshot"]["participantIds"], json!(["alice", "bob"]));

    // Resolve with a one-hour mute: bob cannot send (socket or REST) until it ends.
    let resolve = format!("/api/admin/reports/{report_id}/resolve");
    let mute = json!({ "action": "mute", "durationSecs": 3600, "note": "first offence" });
    let (status, standing) = admin(&gw, "POST", &resolve, Some(&mute.to_string())).await;
    assert_eq!(status, 200, "{standing}");
    assert!(standing["mutedUntil"].is_string(), "{standing}");
    let c2 = direct(&gw, "carol", "bob", "lamp").await;
    assert_eq!(
        try_send(&mut bob, c2, "b2", "hello").await.map(|_| ()),
        Err(1204)
    );
    let path = format!("/api/conversations/{c2}/messages");
    let (status, json, _) = post(&gw, "bob", &path, r#"{"content":"hi"}"#).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("muted")),
        "{json}"
    );
    let (status, own, _) = get(&gw, "bob", "/api/standing").await;
    assert_eq!(
        (status, own["mutedUntil"].is_string()),
        (200, true),
        "{own}"
    );
    assert_eq!(own["banned"], false);

    // Once only; the report is resolved, and the action is in the log.
    let (status, json) = admin(&gw, "POST", &resolve, Some(r#"{"action":"ban"}"#)).await;
    assert_eq!(status, 400, "{json}");
    let (status, one) = admin(&gw, "GET", &format!("/api/admin/reports/{report_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["status"], "resolved");
    assert_eq!(one["resolution"]["action"], "mute");
    assert_eq!(one["resolution"]["moderatorId"], MODERATOR);
    let (_, open) = admin(&gw, "GET", "/api/admin/reports?status=open", None).await;
    assert_eq!(open["reports"], json!([]), "{open}");
    let (_, log) = admin(&gw, "GET", "/api/admin/log?userId=bob", None).await;
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(
        (entries[0]["action"].as_str(), entries[0]["note"].as_str()),
        (Some("mute"), Some("first offence"))
    );
    assert_eq!(entries[0]["reportId"], report_id.as_str());

    // Unmute: bob sends again.
    act(&gw, "bob", json!({ "action": "unmute" })).await;
    try_send(&mut bob, c2, "b3", "hello again")
        .await
        .expect("unmuted");

    // Bad actions are clear errors.
    for body in [
        json!({ "action": "mute" }),
        json!({ "action": "ban", "durationSecs": 5 }),
        json!({ "action": "explode" }),
        json!({ "action": "dismiss" }),
    ] {
        let (status, json) = admin(
            &gw,
            "POST",
            "/api/admin/users/bob/actions",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {json}");
    }
    let (status, _) = admin(&gw, "GET", "/api/admin/reports/not-a-report", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_ban_closes_every_session_and_refuses_new_ones_until_lifted() {
    let gw = Gateway::start(&[]);
    let c = direct(&gw, "alice", "bob", "bike").await;
    let mut ws = Client::connect(&gw, "bob").await;
    let quic = quic_config(&gw);
    let mut q = Client::quic(gw.addr, &quic, "bob", vec![]).await;
    let mut alice = Client::connect(&gw, "alice").await;
    ws.send_text(c, "b1", "hi").await;
    assert_eq!(alice.next_message().await.content, "hi");

    let standing = act(&gw, "bob", json!({ "action": "ban", "note": "scammer" })).await;
    assert_eq!(standing["banned"], true);
    for c in [&mut ws, &mut q] {
        let closed = c.closed().await;
        assert_eq!(closed.error, Some(1203), "{closed:?}");
    }
    // A new session is told and closed; REST is refused.
    let mut again = Client::connect(&gw, "bob").await;
    assert_eq!(again.closed().await.error, Some(1203));
    let (status, json, _) = get(&gw, "bob", "/api/conversations").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("banned")),
        "{json}"
    );

    act(&gw, "bob", json!({ "action": "unban" })).await;
    let mut back = Client::connect(&gw, "bob").await;
    back.send_text(c, "b2", "back").await;
    assert_eq!(alice.next_message().await.content, "back");
    let (status, _, _) = get(&gw, "bob", "/api/conversations").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_shadowed_users_messages_reach_only_themselves() {
    let gw = Gateway::start(&[]);
    let c = direct(&gw, "alice", "bob", "bike").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let mut bob_phone = Client::connect(&gw, "bob").await;
    let mut alice = Client::connect(&gw, "alice").await;
    act(&gw, "bob", json!({ "action": "shadow" })).await;

    let ack = bob.send_text(c, "b1", "click my phishing link").await;
    alice.send_text(c, "a1", "marker").await;
    // Alice gets its place only; bob's other device gets it whole.
    let seen = alice.next_message().await;
    assert_eq!(
        (seen.kind, seen.content.as_str(), seen.seq),
        (MessageKind::Hidden, "", ack.message_seq)
    );
    assert_eq!(
        bob_phone.next_message().await.content,
        "click my phishing link"
    );
    assert_eq!(bob_phone.next_message().await.content, "marker");
    // History and the conversation list: the same.
    let path = format!("/api/conversations/{c}/messages");
    let (_, theirs, _) = get(&gw, "alice", &path).await;
    assert_eq!(contents(&theirs["messages"]), ["marker", ""]);
    assert_eq!(theirs["messages"][1]["type"], "hidden");
    let (_, mine, _) = get(&gw, "bob", &path).await;
    assert_eq!(
        contents(&mine["messages"]),
        ["marker", "click my phishing link"]
    );
    // A resume from before it: alice still gets only its place.
    let mut alice_again =
        Client::connect_resume(&gw, "alice", vec![resume_point(c, Default::default())]).await;
    let replayed = alice_again.next_message().await;
    assert_eq!(
        (replayed.kind, replayed.seq),
        (MessageKind::Hidden, ack.message_seq)
    );

    // Lifted: new messages are visible, the shadowed one stays hidden.
    act(&gw, "bob", json!({ "action": "unshadow" })).await;
    bob.send_text(c, "b2", "sorry").await;
    assert_eq!(alice.next_message().await.content, "sorry");
    let (_, theirs, _) = get(&gw, "alice", &path).await;
    assert_eq!(contents(&theirs["messages"]), ["sorry", "marker", ""]);
}

/// A ban made on node 1 closes the user's session on node 2 and holds there (node 2 had the
/// user's standing cached from before the ban).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_made_on_one_node_closes_sessions_on_the_others() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let n1 = cluster_node(&redis, &ks, 1, &["--shards", "1"]);
    let n2 = cluster_node(&redis, &ks, 2, &["--shards", "1"]);
    let c = direct(&n2, "alice", "bob", "bike").await;
    let mut bob = Client::connect(&n2, "bob").await;
    let mut alice = Client::connect(&n2, "alice").await;
    // Node 2 caches bob's standing (good) on this send.
    bob.send_text(c, "b1", "before").await;
    assert_eq!(alice.next_message().await.content, "before");

    act(&n1, "bob", json!({ "action": "ban" })).await;
    assert_eq!(bob.closed().await.error, Some(1203));
    let mut again = Client::connect(&n2, "bob").await;
    assert_eq!(again.closed().await.error, Some(1203));
    let (status, json, _) = get(&n2, "bob", "/api/conversations").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("banned")),
        "{json}"
    );
}

const RULES: &str = r#"{"rules": [
  {"id": "own-links", "action": "allow", "link_domains": ["marketplace.example"]},
  {"id": "pay-off-site", "action": "bounce", "terms": ["western union", "pay outside"],
   "message": "Please keep payments on the marketplace."},
  {"id": "early-contact", "action": "flag", "contact_details": true, "first_messages": 3},
  {"id": "shorteners", "action": "shadow", "link_domains": ["bit.ly"]}
]}"#;

/// Waits until the node's metric `series` exceeds `above`.
async fn metric_above(gw: &Gateway, series: &str, above: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric_value(&metrics(gw.addr).await, series) <= above {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stayed at {above}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn moderation_rules_bounce_flag_and_shadow_before_storage_and_reload_on_change() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.json");
    std::fs::write(&file, RULES).expect("rules");
    let path = file.to_str().expect("path");
    let gw = Gateway::start(&["--moderation-rules", path, "--moderation-reload-ms", "100"]);
    let c = direct(&gw, "alice", "bob", "bike").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let mut bob_phone = Client::connect(&gw, "bob").await;

    // Bounce, however it is dressed up: nothing stored, the rule's message to the sender.
    let f = bob
        .request(send_text(
            c,
            "b1",
            "send it by ｗｅｓｔｅｒｎ u\u{200B}nion",
        ))
        .await;
    match &f.body {
        ServerBody::Error { code, message, .. } => {
            assert_eq!(
                (*code, message.as_str()),
                (1205, "Please keep payments on the marketplace.")
            );
        }
        other => panic!("{other:?}"),
    }
    let path_msgs = format!("/api/conversations/{c}/messages");
    let (status, json, _) = post(
        &gw,
        "bob",
        &path_msgs,
        r#"{"content":"pay outside the site"}"#,
    )
    .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (422, Some("moderated")),
        "{json}"
    );
    let (_, history, _) = get(&gw, "alice", &path_msgs).await;
    assert_eq!(history["messages"], json!([]), "{history}");
    // An allow rule listed first exempts the marketplace's own links.
    bob.send_text(
        c,
        "b2",
        "western union? no: https://marketplace.example/pay",
    )
    .await;
    assert_eq!(alice.next_message().await.seq, 1);

    // Flag: delivered, and filed for moderators with the evidence.
    let flagged = alice.send_text(c, "a1", "call me on +44 7700 900123").await;
    assert_eq!(
        bob.next_message().await.content,
        "call me on +44 7700 900123"
    );
    let (_, reports) = admin(&gw, "GET", "/api/admin/reports", None).await;
    let r = &reports["reports"][0];
    assert_eq!(
        (r["reporterId"].as_str(), r["reportedUserId"].as_str()),
        (Some("parley:moderation"), Some("alice")),
        "{reports}"
    );
    assert_eq!(r["messageId"], flagged.message_id.0.to_string());
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("early-contact"),
        "{r}"
    );
    // Past the conversation's first three messages, contact details pass.
    alice.send_text(c, "a2", "ok").await;
    alice
        .send_text(c, "a3", "mail me at alice@example.com")
        .await;
    let (_, reports) = admin(&gw, "GET", "/api/admin/reports", None).await;
    assert_eq!(
        reports["reports"].as_array().map(Vec::len),
        Some(1),
        "{reports}"
    );

    // Shadow: bob sees it as sent (on every device), alice only its place.
    let shadowed = bob.send_text(c, "b3", "great deal: bit.ly/xyz").await;
    let seen = loop {
        let m = alice.next_message().await;
        if m.seq == shadowed.message_seq {
            break m;
        }
    };
    assert_eq!(
        (seen.kind, seen.content.as_str()),
        (MessageKind::Hidden, "")
    );
    let mine = loop {
        let m = bob_phone.next_message().await;
        if m.seq == shadowed.message_seq {
            break m;
        }
    };
    assert_eq!(mine.content, "great deal: bit.ly/xyz");

    let text = metrics(gw.addr).await;
    let decided = |rule: &str, action: &str| {
        metric_value(
            &text,
            &format!("parley_moderation_decisions_total{{rule=\"{rule}\",action=\"{action}\"}}"),
        )
    };
    assert_eq!(decided("pay-off-site", "bounce"), 2.0);
    assert_eq!(decided("early-contact", "flag"), 1.0);
    assert_eq!(decided("shorteners", "shadow"), 1.0);
    assert_eq!(decided("own-links", "allow"), 1.0);

    // A changed file is in force without a restart.
    let reloads = metric_value(&text, "parley_moderation_reloads_total");
    let more = RULES.replace(
        r#"{"id": "shorteners""#,
        r#"{"id": "lego", "action": "bounce", "terms": ["lego"]},
  {"id": "shorteners""#,
    );
    std::fs::write(&file, more).expect("rules");
    metric_above(&gw, "parley_moderation_reloads_total", reloads).await;
    assert_eq!(
        try_send(&mut bob, c, "b4", "LEGO castle").await.map(|_| ()),
        Err(1205)
    );
    // A broken file is refused whole: the rules before it stay.
    let errors = metric_value(
        &metrics(gw.addr).await,
        "parley_moderation_reload_errors_total",
    );
    std::fs::write(
        &file,
        r#"{"rules": [{"id": "x", "action": "delete", "terms": ["y"]}]}"#,
    )
    .expect("rules");
    metric_above(&gw, "parley_moderation_reload_errors_total", errors).await;
    assert_eq!(
        try_send(&mut bob, c, "b5", "lego again").await.map(|_| ()),
        Err(1205)
    );
    assert_eq!(
        metric_value(&metrics(gw.addr).await, "parley_moderation_rules"),
        5.0
    );
}

#[tokio::test]
async fn a_node_does_not_start_with_rules_it_cannot_enforce() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.json");
    std::fs::write(&file, r#"{"rules": [{"id": "x", "action": "flag"}]}"#).expect("rules");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "--port",
            "0",
            "--moderation-rules",
            file.to_str().expect("path"),
        ])
        .env("PARLEY_DATA_DIR", dir.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no matcher"), "{stderr}");
}

/// The same text into many conversations is counted across the cluster (in Redis): a
/// spammer who spreads it over two nodes is shadowed from the third conversation on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_into_many_conversations_is_caught_across_nodes() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.json");
    let rules = r#"{"rules": [{"id": "copy-paste", "action": "shadow",
        "same_text": {"conversations": 3, "window_secs": 600, "min_letters": 12}}]}"#;
    std::fs::write(&file, rules).expect("rules");
    let path = file.to_str().expect("path");
    let redis = RedisServer::start();
    let ks = keyspace();
    let n1 = cluster_node(&redis, &ks, 1, &["--moderation-rules", path]);
    let n2 = cluster_node(&redis, &ks, 2, &["--moderation-rules", path]);
    let buyers = ["b1", "b2", "b3"];
    let mut convs = Vec::new();
    for b in buyers {
        convs.push(direct(&n1, b, "spammer", "phone").await);
    }
    let mut on1 = Client::connect(&n1, "spammer").await;
    let mut on2 = Client::connect(&n2, "spammer").await;
    let mut third = Client::connect(&n1, "b3").await;
    let text = "Cheap phones!!! Order at my shop now";
    on1.send_text(convs[0], "s1", text).await;
    // Near-same (digits and punctuation differ), from the other node.
    on2.send_text(convs[1], "s2", "cheap phones, order at my shop now 2")
        .await;
    // Short texts are not counted.
    on1.send_text(convs[2], "s3", "hi").await;
    assert_eq!(third.next_message().await.content, "hi");
    let ack = on1.send_text(convs[2], "s4", text).await;
    let seen = third.next_message().await;
    assert_eq!(
        (seen.kind, seen.seq),
        (MessageKind::Hidden, ack.message_seq)
    );
    // The first two went out whole.
    let (_, first, _) = get(
        &n1,
        "b1",
        &format!("/api/conversations/{}/messages", convs[0]),
    )
    .await;
    assert_eq!(contents(&first["messages"]), [text]);
    let m = metrics(n1.addr).await;
    let shadowed = metric_value(
        &m,
        r#"parley_moderation_decisions_total{rule="copy-paste",action="shadow"}"#,
    );
    assert_eq!(shadowed, 1.0);
}

/// The classifier of `gateway/tests/classifier/serve.py` (alt-profanity-check), on a free port;
/// killed when dropped. Needs the test venv's Python (scripts/test.sh puts it first in PATH).
struct ClassifierService {
    child: std::process::Child,
    url: String,
}

impl ClassifierService {
    fn start() -> Self {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/classifier/serve.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (scripts/test.sh puts target/test-venv/bin first in PATH)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("classifier port");
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            panic!("the classifier did not start (alt-profanity-check installed? see scripts/test-requirements.txt): {line:?}")
        });
        Self {
            child,
            url: format!("http://127.0.0.1:{port}/classify"),
        }
    }
}

impl Drop for ClassifierService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_real_classifier_scores_messages_and_its_rules_fail_as_configured() {
    let mut service = ClassifierService::start();
    let dir = tempfile::tempdir().expect("dir");
    let closed = dir.path().join("closed.json");
    std::fs::write(
        &closed,
        r#"{"rules": [{"id": "profanity", "action": "bounce",
            "message": "Please keep it civil.",
            "classifier": {"min_score": 0.9, "fail": "closed"}}]}"#,
    )
    .expect("rules");
    let gw = Gateway::start(&[
        "--moderation-rules",
        closed.to_str().expect("path"),
        "--moderation-classifier-url",
        &service.url,
        "--moderation-classifier-timeout-ms",
        "2000",
    ]);
    let c = direct(&gw, "alice", "bob", "bike").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    bob.send_text(c, "b1", "Is the bike still available?").await;
    assert_eq!(
        alice.next_message().await.content,
        "Is the bike still available?"
    );
    for (id, text) in [
        ("b2", "you are a fucking idiot"),
        ("b3", "you are a fucking idiot"),
    ] {
        assert_eq!(
            try_send(&mut bob, c, id, text).await.map(|_| ()),
            Err(1205),
            "{text}"
        );
    }
    let m = metrics(gw.addr).await;
    assert_eq!(
        metric_value(
            &m,
            r#"parley_moderation_decisions_total{rule="profanity",action="bounce"}"#
        ),
        2.0
    );
    // The second was the same text: scored from the cache.
    assert_eq!(
        metric_value(&m, "parley_moderation_classifier_cache_hits_total"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "parley_moderation_classifier_seconds_count"),
        2.0
    );

    // The classifier dies: this rule fails closed, so nothing unscored gets through.
    let _ = service.child.kill();
    let _ = service.child.wait();
    assert_eq!(
        try_send(&mut bob, c, "b4", "see you on Friday")
            .await
            .map(|_| ()),
        Err(1205)
    );
    let m = metrics(gw.addr).await;
    assert_eq!(
        metric_value(
            &m,
            r#"parley_moderation_classifier_failures_total{reason="unavailable"}"#
        ),
        1.0
    );

    // A fail-open rule lets messages through while the classifier is down.
    let open = dir.path().join("open.json");
    std::fs::write(
        &open,
        r#"{"rules": [{"id": "profanity", "action": "bounce",
            "classifier": {"min_score": 0.9, "fail": "open"}}]}"#,
    )
    .expect("rules");
    let gw2 = Gateway::start(&[
        "--moderation-rules",
        open.to_str().expect("path"),
        "--moderation-classifier-url",
        &service.url,
    ]);
    let c2 = direct(&gw2, "alice", "bob", "bike").await;
    let mut bob2 = Client::connect(&gw2, "bob").await;
    try_send(&mut bob2, c2, "b1", "see you on Friday")
        .await
        .expect("fails open");
}

/// A held message is not in the conversation (no seq, nobody gets it) until a moderator
/// releases it; then it is sent as its sender's, once.
#[tokio::test]
async fn a_held_message_waits_for_a_moderator_to_release_it() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.json");
    std::fs::write(
        &file,
        r#"{"rules": [{"id": "wallets", "action": "hold",
            "message": "Your message is waiting for review.",
            "regex": ["\\bbc1[a-z0-9]{25,60}\\b"]}]}"#,
    )
    .expect("rules");
    let gw = Gateway::start(&["--moderation-rules", file.to_str().expect("path")]);
    let c = direct(&gw, "alice", "bob", "bike").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let wallet = "pay to bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq please";
    let f = bob.request(send_text(c, "b1", wallet)).await;
    match &f.body {
        ServerBody::Error {
            code,
            message,
            fatal,
        } => {
            assert_eq!(
                (*code, message.as_str(), *fatal),
                (1206, "Your message is waiting for review.", false)
            );
        }
        other => panic!("{other:?}"),
    }
    // Not in the conversation: the next message takes seq 1.
    let marker = bob.send_text(c, "b2", "hello?").await;
    assert_eq!(marker.message_seq, 1);
    assert_eq!(alice.next_message().await.content, "hello?");
    // Over REST: 202, held.
    let path = format!("/api/conversations/{c}/messages");
    let body = json!({ "content": wallet }).to_string();
    let (status, json, _) = post(&gw, "bob", &path, &body).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (202, Some("held")),
        "{json}"
    );

    let (_, listed) = admin(&gw, "GET", "/api/admin/reports", None).await;
    let reports = listed["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 2, "{listed}");
    // The first held (oldest: last in the list).
    let r = &reports[1];
    assert_eq!(r["heldMessage"]["content"], wallet, "{r}");
    assert_eq!(r["heldMessage"]["clientMsgId"], "b1");
    let release = format!(
        "/api/admin/reports/{}/release",
        r["id"].as_str().expect("id")
    );
    let (status, sent) = admin(&gw, "POST", &release, Some(r#"{"note": "a real wallet"}"#)).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["message"]["seq"], 2);
    let m = alice.next_message().await;
    assert_eq!(
        (m.content.as_str(), m.sender.as_str(), m.seq),
        (wallet, "bob", 2)
    );
    assert_eq!(bob.next_message().await.seq, 2);
    // Once only.
    let (status, json) = admin(&gw, "POST", &release, Some("{}")).await;
    assert_eq!(status, 400, "{json}");
    let (_, log) = admin(&gw, "GET", "/api/admin/log", None).await;
    assert_eq!(log["entries"][0]["action"], "release", "{log}");
}
