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
