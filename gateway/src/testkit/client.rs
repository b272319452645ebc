//! A session driven from memory: frames go straight into the driver, and the client reads
//! what the driver queued from the session's outbox — exactly what a transport's writer would
//! have written, encoded, but without a socket.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{decode_server, encode_client};
use parley_proto::*;
use parley_types::{ConversationId, Message, MessageKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::driver::{self, FrameSource, Incoming};
use crate::outbox::{Closing, Item, Next, Outbox};
use crate::session::Origin;
use crate::shard::Shard;

/// How long (in virtual time) a client waits for something that should come.
pub(crate) const WAIT: Duration = Duration::from_secs(600);

/// The read side the driver sees.
struct MemSource(mpsc::UnboundedReceiver<Incoming>);

impl FrameSource for MemSource {
    async fn next(&mut self) -> Incoming {
        self.0.recv().await.unwrap_or(Incoming::Closed)
    }
}

/// One session of one user on one shard.
pub(crate) struct MemClient {
    pub(crate) user: String,
    to_server: Option<mpsc::UnboundedSender<Incoming>>,
    pub(crate) outbox: Rc<Outbox>,
    /// The session's driver task (awaited by `disconnect`).
    task: Option<JoinHandle<()>>,
    frames: VecDeque<ServerFrame>,
    closing: Option<Closing>,
    seq: u32,
    pub(crate) welcome: Option<Welcome>,
}

impl MemClient {
    pub(super) fn open(shard: Rc<Shard>, user: &str) -> Self {
        // What a test sends is bounded by the test itself.
        #[allow(clippy::disallowed_methods)]
        let (tx, rx) = mpsc::unbounded_channel();
        let s = &shard.node.settings;
        let outbox = Rc::new(Outbox::new(
            s.outbox_frames,
            s.outbox_bytes,
            shard.node.outbox_budget.clone(),
        ));
        let task = tokio::task::spawn_local(driver::drive(shard, MemSource(rx), outbox.clone()));
        Self {
            user: user.to_owned(),
            to_server: Some(tx),
            outbox,
            task: Some(task),
            frames: VecDeque::new(),
            closing: None,
            seq: 0,
            welcome: None,
        }
    }

    /// Sends Hello (a token for this user) and waits for Welcome.
    pub(crate) async fn hello(&mut self, resume: Vec<ResumePoint>) -> Welcome {
        let token = parley_proto::token::mint_hs256(
            super::SECRET,
            &self.user,
            3600,
            crate::clock::wall_ms(),
        );
        let body = ClientBody::Hello(Hello {
            token,
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            resume,
            client_name: Some("testkit".into()),
        });
        match self.request(body).await.body {
            ServerBody::Welcome(w) => {
                self.welcome = Some(w.clone());
                w
            }
            other => panic!("{}: expected Welcome, got {other:?}", self.user),
        }
    }

    /// Sends one frame; its seq.
    pub(crate) fn send(&mut self, body: ClientBody) -> u32 {
        self.seq += 1;
        let bytes = encode_client(&ClientFrame {
            seq: self.seq,
            body,
        });
        self.send_bytes(bytes);
        self.seq
    }

    /// Raw bytes as one frame.
    pub(crate) fn send_bytes(&mut self, bytes: Bytes) {
        if let Some(tx) = &self.to_server {
            let _ = tx.send(Incoming::Frame(bytes, Origin::Stream));
        }
    }

    /// Moves what the outbox holds into `frames`; `false` once it is closed and empty.
    async fn pull(&mut self) -> bool {
        if self.closing.is_some() {
            return false;
        }
        let mut items = Vec::new();
        let next = self.outbox.next(&mut items).await;
        for item in items {
            if let Item::Frame(b) | Item::Datagram(b) = item {
                let f = decode_server(&b, &DecodeLimits::server())
                    .unwrap_or_else(|e| panic!("{}: undecodable frame: {e}", self.user));
                self.frames.push_back(f);
            }
        }
        if let Next::Close(c) = next {
            if let Some(f) = driver::final_frame(&c) {
                let f = decode_server(&f, &DecodeLimits::server()).expect("final frame");
                self.frames.push_back(f);
            }
            self.closing = Some(c);
        }
        true
    }

    /// The next frame matching `pred` within [`WAIT`]; others stay queued, in order. None
    /// when the session closed first.
    pub(crate) async fn next_where_or_closed(
        &mut self,
        pred: impl Fn(&ServerFrame) -> bool,
    ) -> Option<ServerFrame> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.frames.iter().position(&pred) {
                return self.frames.remove(i);
            }
            let pulled = tokio::time::timeout_at(deadline, self.pull()).await;
            match pulled {
                Ok(true) => {}
                Ok(false) => return None,
                Err(_) => panic!(
                    "{}: nothing matching within {WAIT:?}: {:?}",
                    self.user, self.frames
                ),
            }
        }
    }

    pub(crate) async fn next_where(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        let user = self.user.clone();
        self.next_where_or_closed(pred)
            .await
            .unwrap_or_else(|| panic!("{user}: closed while waiting"))
    }

    /// The next frame, whatever it is.
    pub(crate) async fn next(&mut self) -> ServerFrame {
        self.next_where(|_| true).await
    }

    /// Sends and waits for the answer with the same seq.
    pub(crate) async fn request(&mut self, body: ClientBody) -> ServerFrame {
        let seq = self.send(body);
        self.next_where(|f| f.seq == seq).await
    }

    /// Sends a text message; its Ack.
    pub(crate) async fn send_text(&mut self, c: ConversationId, id: &str, content: &str) -> Ack {
        match self.request(text(c, id, content)).await.body {
            ServerBody::Ack(a) => a,
            other => panic!("{}: send failed: {other:?}", self.user),
        }
    }

    /// The next MessageNew.
    pub(crate) async fn next_message(&mut self) -> Message {
        match self.next_where(is_message).await.body {
            ServerBody::MessageNew(m) => m,
            _ => unreachable!(),
        }
    }

    /// Every frame that arrives while all tasks can make progress (until virtual time would
    /// have to move `d` forward), without waiting longer.
    pub(crate) async fn drain_for(&mut self, d: Duration) -> Vec<ServerFrame> {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(true) = tokio::time::timeout_at(deadline, self.pull()).await {}
        self.frames.drain(..).collect()
    }

    /// Waits for the session to end; how it closed.
    pub(crate) async fn closed(&mut self) -> Closing {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(c) = self.closing {
                return c;
            }
            if tokio::time::timeout_at(deadline, self.pull())
                .await
                .is_err()
            {
                panic!("{}: not closed within {WAIT:?}", self.user);
            }
        }
    }

    /// The frames queued but not taken yet.
    pub(crate) fn pending(&self) -> &VecDeque<ServerFrame> {
        &self.frames
    }

    /// The transport goes away (a dropped connection); waits until the session ended.
    pub(crate) async fn disconnect(mut self) {
        self.to_server = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A text Send.
pub(crate) fn text(conversation: ConversationId, client_msg_id: &str, text: &str) -> ClientBody {
    ClientBody::Send(SendMessage {
        conversation,
        client_msg_id: client_msg_id.into(),
        kind: MessageKind::Text,
        content: text.into(),
        media: None,
    })
}

pub(crate) fn is_message(f: &ServerFrame) -> bool {
    matches!(f.body, ServerBody::MessageNew(_))
}
