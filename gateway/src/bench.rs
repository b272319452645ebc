//! What the criterion benches in `benches/` drive (feature `bench-internals`; not an API):
//! the session core per event, and one message's fan-out through a shard's inbox into its
//! members' outboxes.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parley_proto::codec::client::encode_client;
use parley_proto::{ClientBody, ClientFrame, Hello, ServerBody};
use parley_storage::embedded::{Embedded, EmbeddedConfig};
use parley_types::{ConversationId, Message, MessageId, MessageKind};
use tokio::sync::{mpsc, watch};

use crate::auth::Authenticator;
use crate::clock::{Now, wall_ms};
use crate::event::{Class, Event};
use crate::node::{Node, Settings};
use crate::outbox::{Next, Outbox};
use crate::server::{Parts, assemble};
use crate::session::{Output, Session, SessionLimits};
use crate::shard::Shard;
use crate::state::fanout::Delivery;

const SECRET: &[u8] = b"bench-secret-0123456789abcdef";

/// An authenticated session core with its rate limits lifted.
pub struct SessionBench {
    session: Session,
    out: Vec<Output>,
}

impl Default for SessionBench {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionBench {
    pub fn new() -> Self {
        let auth = Arc::new(
            Authenticator::new(Some(SECRET), None, crate::auth::TokenRules::default())
                .expect("auth"),
        );
        let limits = Arc::new(SessionLimits {
            frames_per_sec: 1e12,
            frame_burst: u32::MAX,
            ..SessionLimits::default()
        });
        let mut session = Session::new(1, limits, auth, Now::get());
        let hello = encode_client(&ClientFrame {
            seq: 1,
            body: ClientBody::Hello(Hello {
                token: parley_proto::token::mint_hs256(SECRET, "alice", 3600, wall_ms()),
                protocol_major: 1,
                protocol_minor: 0,
                resume: vec![],
                client_name: None,
            }),
        });
        let mut out = Vec::new();
        session.handle_frame_from(Now::get(), &hello, crate::session::Origin::Stream, &mut out);
        Self { session, out }
    }

    /// One frame through the session core.
    pub fn handle(&mut self, frame: &[u8]) -> usize {
        self.out.clear();
        self.session.handle_frame_from(
            Now::get(),
            frame,
            crate::session::Origin::Stream,
            &mut self.out,
        );
        self.out.len()
    }
}

/// A node with one shard, `members` sessions of distinct users on it, and a message to fan
/// out to all of them.
pub struct FanoutBench {
    rt: tokio::runtime::Runtime,
    node: Arc<Node>,
    shard: Rc<Shard>,
    inbox: mpsc::Receiver<Delivery>,
    users: Vec<String>,
    outboxes: Vec<Rc<Outbox>>,
    event: Event,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl FanoutBench {
    pub fn new(members: usize) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tmp");
        let storage =
            Arc::new(Embedded::open(dir.path(), EmbeddedConfig::default()).expect("storage"));
        let (inbox_tx, inbox) = mpsc::channel::<Delivery>(1 << 16);
        let parts = Parts {
            settings: Settings::default(),
            limits: SessionLimits::default(),
            auth: Authenticator::new(Some(SECRET), None, crate::auth::TokenRules::default())
                .expect("auth"),
            send_rate: (1e9, u32::MAX),
            moderation: Arc::new(crate::moderation::Moderation::disabled()),
            media: Arc::new(
                crate::media::Media::on_disk(
                    dir.path().join("media"),
                    crate::media::MediaConfig::with_keys(vec![(
                        "0".into(),
                        b"bench-media-url-key".to_vec(),
                    )]),
                )
                .expect("media dir"),
            ),
            search: None,
            push: None,
        };
        let node = assemble(parts, storage, vec![inbox_tx], None);
        let (stop, shutdown) = watch::channel(false);
        let shard = Rc::new(Shard::new(0, node.clone(), shutdown));
        let users: Vec<String> = (0..members).map(|i| format!("member{i}")).collect();
        let outboxes = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let user: Arc<str> = u.as_str().into();
                let o = Rc::new(Outbox::new(
                    1_000_000,
                    1_000_000_000,
                    crate::outbox::Budget::new(usize::MAX),
                ));
                shard.register(&user, i as u64, o.clone());
                node.chat.routes.session_opened(&user, 0);
                o
            })
            .collect();
        Self {
            rt,
            node,
            shard,
            inbox,
            users,
            outboxes,
            event: message_event(),
            _stop: stop,
            _dir: dir,
        }
    }

    /// One fan-out of the message to every member, through the inbox into the outboxes; the
    /// time it took (emptying the outboxes afterwards is not counted).
    pub fn run(&mut self) -> Duration {
        let start = Instant::now();
        let users = self.users.iter().map(String::as_str);
        self.rt.block_on(
            self.node
                .chat
                .fanout()
                .send(users, None, None, self.event.clone()),
        );
        while let Ok(d) = self.inbox.try_recv() {
            self.shard.deliver(&d);
        }
        let took = start.elapsed();
        self.rt.block_on(async {
            let mut buf = Vec::new();
            for o in &self.outboxes {
                let _: Next = o.next(&mut buf).await;
                buf.clear();
            }
        });
        took
    }
}

/// `n` deliveries of one encoded message through a bounded inbox between two threads.
pub fn inbox_across_threads(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let frame: Bytes = message_event().frame;
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<Delivery>(1 << 16);
        let users: Vec<Arc<str>> = vec!["a".into()];
        let producer = tokio::spawn(async move {
            for _ in 0..n {
                let d = Delivery {
                    users: users.clone(),
                    exclude_session: None,
                    frame: frame.clone(),
                    class: Class::Reliable,
                    kind: parley_proto::FrameKind::MessageNew,
                    received_at: None,
                    ack: None,
                    ack_only: false,
                    close: None,
                };
                if tx.send(d).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = Vec::with_capacity(256);
        let mut got = 0;
        while got < n {
            let k = rx.recv_many(&mut buf, 256).await;
            if k == 0 {
                break;
            }
            got += k;
            buf.clear();
        }
        let _ = producer.await;
    });
}

fn message_event() -> Event {
    Event::new(
        ServerBody::MessageNew(Message {
            id: MessageId(384_082_353_594_564_608),
            conversation: ConversationId::random(),
            sender: "user-0".into(),
            kind: MessageKind::Text,
            content: "Hi! Is the bike still available? I could pick it up tomorrow.".into(),
            media: None,
            client_msg_id: "c".into(),
            created_at_ms: 1,
            seq: 1,
            visibility: Default::default(),
        }),
        Class::Reliable,
    )
}

/// The moderation stage on one message (`moderation::text::see` then the rules' check) with
/// a rule set like a marketplace's: `terms` term-list entries over a few rules, `regexes`
/// patterns, link and contact rules.
pub struct ModerationBench {
    rules: crate::moderation::RuleSet,
}

impl ModerationBench {
    /// `terms` 0 and `regexes` 0: no rules (what the check costs is then the text's folding
    /// and link / contact search alone).
    pub fn new(terms: usize, regexes: usize) -> Self {
        if terms == 0 && regexes == 0 {
            return Self {
                rules: crate::moderation::RuleSet::default(),
            };
        }
        // Pseudo-words of 5 to 12 letters from a fixed LCG: not in ordinary text, like the
        // slurs and scam phrases of a real list.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut word = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = 5 + (x >> 60) as usize % 8;
            (0..len)
                .map(|i| (b'a' + ((x >> (i * 5)) % 26) as u8) as char)
                .collect::<String>()
        };
        let lists: Vec<serde_json::Value> = (0..4)
            .map(|r| {
                let terms: Vec<String> = (0..terms / 4)
                    .map(|i| match i % 3 {
                        0 => format!("{} {}", word(), word()),
                        _ => word(),
                    })
                    .collect();
                let action = ["flag", "bounce", "shadow", "flag"][r];
                serde_json::json!({ "id": format!("terms-{r}"), "action": action, "terms": terms })
            })
            .collect();
        let patterns: Vec<String> = (0..regexes)
            .map(|i| match i % 5 {
                0 => format!(r"\bbc1[a-z0-9]{{{},{}}}\b", 20 + i % 7, 40 + i % 7),
                1 => format!(
                    r"\b\d{{4}}[- ]?\d{{4}}[- ]?\d{{4}}[- ]?\d{{{}}}\b",
                    1 + i % 4
                ),
                2 => format!(r"\b{}\s*(?:dot|\.)\s*(?:com|net)\b", word()),
                3 => format!(r"\bpay\s*(?:me|us)?\s*(?:via|by|with)\s+{}\b", word()),
                _ => format!(r"\b(?:whats\s*app|telegram|signal)\s*[:+]?\s*{}\b", word()),
            })
            .collect();
        let mut rules = lists;
        rules.push(serde_json::json!({ "id": "own", "action": "allow", "link_domains": ["marketplace.example"] }));
        rules.push(serde_json::json!({ "id": "patterns", "action": "flag", "regex": patterns }));
        rules.push(serde_json::json!({ "id": "contact", "action": "flag", "contact_details": true, "first_messages": 3 }));
        rules.push(serde_json::json!({ "id": "short", "action": "shadow", "link_domains": ["bit.ly", "tinyurl.com", "t.co"] }));
        let file = serde_json::json!({ "rules": rules }).to_string();
        Self {
            rules: crate::moderation::RuleSet::parse(file.as_bytes()).expect("bench rules"),
        }
    }

    /// Checks one message as the send path does; whether a rule matched.
    pub fn check(&self, text: &str) -> bool {
        let seen = crate::moderation::text::see(text);
        let facts = crate::moderation::Facts {
            earlier_messages: 10,
            ..Default::default()
        };
        self.rules.check(&seen, &facts).is_some()
    }
}
