//! Drives one session: feeds what the transport read into the session core, runs the commands
//! it asks for (storage, fan-out) and queues frames for the transport's writer. Transports
//! implement [`FrameSource`] and drain the [`Outbox`]; they never see the protocol.

use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parley_types::{ConversationId, MessageId};

use crate::clock::Now;
use parley_proto::ErrorCode;
use parley_proto::codec::server::encode_server;

use crate::errors::ClientError;
use crate::ops;
use crate::outbox::{Closing, Item, Outbox};
use crate::session::{Command, Origin, Output, Session};
use crate::shard::Shard;
use parley_proto::{Ack, ResumePoint, ServerBody, ServerFrame};

/// Messages read from storage per step of a resume replay.
const REPLAY_CHUNK: usize = 200;

/// What a transport read.
#[derive(Debug)]
pub enum Incoming {
    /// One whole protocol frame, and how it came.
    Frame(Bytes, Origin),
    /// A frame over the size limit; the transport cannot continue reading.
    Oversized,
    /// The peer closed, or the connection broke.
    Closed,
}

/// The read side of a transport.
pub trait FrameSource {
    /// The next frame. Need not be cancel-safe: the driver never drops it mid-read.
    fn next(&mut self) -> impl Future<Output = Incoming>;
}

/// Owns the source while reading so the driver can keep one read in flight across `select!`
/// iterations (replacing it with `Pin::set`) instead of cancelling it.
async fn read_one<S: FrameSource>(mut source: S) -> (S, Incoming) {
    let incoming = source.next().await;
    (source, incoming)
}

/// The frame a writer sends just before closing, when the queue that would have carried it was
/// discarded (slow consumer).
pub fn final_frame(closing: &Closing) -> Option<Bytes> {
    (closing.error == Some(ErrorCode::SlowConsumer)).then(|| {
        encode_server(&ServerFrame::push(ServerBody::Error {
            code: ErrorCode::SlowConsumer.code(),
            message: "too slow to receive; reconnect and resume".into(),
            fatal: true,
        }))
    })
}

/// Runs a session over `source` until it ends; frames go to `outbox`, which the transport's
/// writer drains.
pub async fn drive<S: FrameSource>(shard: Rc<Shard>, source: S, outbox: Rc<Outbox>) {
    let node = shard.node.clone();
    let id = shard.new_session_id();
    let mut session = Session::new(id, node.limits.clone(), node.auth.clone(), Now::get());
    let mut exec = Executor {
        shard,
        outbox,
        session_id: id,
        user: None,
    };
    let mut out = Vec::new();
    let mut shutdown = exec.shard.shutdown.clone();
    let mut resync = node.resync_rx();
    let mut shutdown_seen = *shutdown.borrow();
    if shutdown_seen {
        session.handle_shutdown(&mut out);
    }
    let mut read = std::pin::pin!(read_one(source));
    // `run` is boxed too: it holds whole frames across awaits, and an idle session should
    // not carry that space (the session future: 2.6 KB with it inline, 1.2 KB without).
    while Box::pin(exec.run(&mut out)).await {
        let deadline = session
            .next_deadline()
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = exec.outbox.closed() => break,
            _ = shutdown.changed(), if !shutdown_seen => {
                shutdown_seen = true;
                session.handle_shutdown(&mut out);
            }
            _ = resync.changed() => session.handle_resync(&mut out),
            (source, incoming) = &mut read => {
                match incoming {
                    Incoming::Frame(bytes, origin) => {
                        let now = Now::get();
                        if let Some(kind) = session.handle_frame_from(now, &bytes, origin, &mut out) {
                            exec.shard.node.metrics.shard(exec.shard.id).frame_in(kind);
                        }
                    }
                    Incoming::Oversized => session.handle_oversized(&mut out),
                    Incoming::Closed => break,
                }
                read.set(read_one(source));
            }
            _ = tokio::time::sleep_until(deadline) => session.handle_timeout(Now::get(), &mut out),
        }
    }
    out.clear();
    session.handle_transport_closed(&mut out);
    // Boxed for the same reason as commands: rare, large futures out of the idle state.
    Box::pin(async {
        exec.run_after_close(&mut out).await;
        exec.end().await;
    })
    .await;
}

struct Executor {
    shard: Rc<Shard>,
    outbox: Rc<Outbox>,
    session_id: u64,
    user: Option<Arc<str>>,
}

impl Executor {
    /// Carries out `out`; `false` once the session is closing.
    async fn run(&mut self, out: &mut Vec<Output>) -> bool {
        for o in out.drain(..) {
            match o {
                Output::Send(frame) => self.reply(frame).await,
                // Boxed: a command's future is large (storage, fan-out, replay) and lives only
                // while it runs; inline, it sat in every idle session's task (4.3 KB → 2.8 KB).
                Output::Do(cmd) => Box::pin(self.exec(cmd)).await,
                Output::Close(code) => self.outbox.close(code),
            }
        }
        !self.outbox.is_closing()
    }

    /// After the connection ended only commands matter (typing stops); no one reads replies.
    async fn run_after_close(&mut self, out: &mut Vec<Output>) {
        for o in out.drain(..) {
            if let Output::Do(Command::Typing {
                conversation,
                active,
                ..
            }) = o
                && let Some(user) = &self.user
            {
                let _ = ops::typing(&self.shard.node, user, conversation, active).await;
            }
        }
    }

    async fn reply(&self, frame: ServerFrame) {
        let metrics = &self.shard.node.metrics;
        metrics
            .shard(self.shard.id)
            .frames_out(frame.body.kind(), 1);
        if let ServerBody::Error { code, .. } = frame.body {
            metrics.error(code);
        }
        // Err: the session is closing; the frame has nowhere to go.
        let _ = self
            .outbox
            .push_own(Item::Frame(encode_server(&frame)))
            .await;
    }

    async fn error(&self, seq: u32, e: ClientError) {
        self.reply(ServerFrame::new(
            seq,
            ServerBody::Error {
                code: e.code.code(),
                message: e.message,
                fatal: false,
            },
        ))
        .await;
    }

    async fn ack(&self, seq: u32, ack: Ack) {
        self.reply(ServerFrame::new(seq, ServerBody::Ack(ack)))
            .await;
    }

    async fn exec(&mut self, cmd: Command) {
        let node = self.shard.node.clone();
        if let Command::Start { user, resume } = cmd {
            return self.start(user, resume).await;
        }
        let Some(user) = self.user.clone() else {
            return;
        };
        match cmd {
            Command::Start { .. } => {}
            Command::Join { seq, conversation } => {
                match node.hub.conversation_for(conversation, &user).await {
                    Ok(c) => {
                        self.ack(seq, Ack::default()).await;
                        for frame in ops::presence_of_others(&node, &c, &user).await {
                            self.reply(frame).await;
                        }
                    }
                    Err(e) => self.error(seq, e).await,
                }
            }
            Command::Leave { seq, conversation } => {
                match node.hub.conversation_for(conversation, &user).await {
                    Ok(_) => self.ack(seq, Ack::default()).await,
                    Err(e) => self.error(seq, e).await,
                }
            }
            Command::Send { seq, message } => {
                let sent =
                    ops::send_message(&node, &user, message, Now::get(), Some(self.session_id))
                        .await;
                match sent {
                    Ok(a) => {
                        self.ack(
                            seq,
                            Ack {
                                message_id: a.message.id,
                                created_at_ms: a.message.created_at_ms,
                                duplicate: a.duplicate,
                            },
                        )
                        .await
                    }
                    Err(e) => self.error(seq, e).await,
                }
            }
            Command::Typing {
                seq,
                conversation,
                active,
            } => {
                if let Err(e) = ops::typing(&node, &user, conversation, active).await
                    && seq != 0
                {
                    self.error(seq, e).await;
                }
            }
            Command::Read {
                seq,
                conversation,
                up_to,
            } => {
                let now = Now::get();
                let read = ops::mark_read(
                    &node,
                    &user,
                    conversation,
                    up_to,
                    now,
                    Some(self.session_id),
                )
                .await;
                match read {
                    Ok(r) => {
                        self.ack(
                            seq,
                            Ack {
                                message_id: r.state.up_to,
                                created_at_ms: r.state.read_at_ms,
                                duplicate: !r.advanced,
                            },
                        )
                        .await
                    }
                    Err(e) => self.error(seq, e).await,
                }
            }
            Command::History {
                seq,
                conversation,
                before,
                limit,
            } => {
                let page = async {
                    node.hub.conversation_for(conversation, &user).await?;
                    Ok::<_, ClientError>(node.storage.history(conversation, before, limit).await?)
                };
                match page.await {
                    Ok(p) => {
                        self.reply(ServerFrame::new(
                            seq,
                            ServerBody::HistoryPage {
                                conversation,
                                messages: p.messages,
                                next_before: p.next_before,
                            },
                        ))
                        .await
                    }
                    Err(e) => self.error(seq, e).await,
                }
            }
            Command::Conversations { seq, cursor, limit } => {
                match node.storage.list_conversations(&user, cursor, limit).await {
                    Ok(p) => {
                        self.reply(ServerFrame::new(
                            seq,
                            ServerBody::ConversationPage {
                                items: p.items,
                                next_cursor: p.next_cursor.map(|c| c.to_string()),
                            },
                        ))
                        .await
                    }
                    Err(e) => self.error(seq, e.into()).await,
                }
            }
        }
    }

    /// Registers the session, announces presence and replays what the client missed: live
    /// events are held while the replay runs and released after it without duplicates.
    async fn start(&mut self, user: Arc<str>, resume: Vec<ResumePoint>) {
        let node = self.shard.node.clone();
        self.user = Some(user.clone());
        if !resume.is_empty() {
            self.outbox.hold();
        }
        self.shard
            .register(&user, self.session_id, self.outbox.clone());
        let first_here = node.hub.session_opened(&user, self.shard.id);
        if ops::came_online(&node, &user, first_here).await {
            ops::announce_presence(&node, &user, true, 0).await;
        }
        if resume.is_empty() {
            return;
        }
        let mut replayed = HashMap::new();
        for point in resume {
            let last = self.replay(&user, point).await;
            replayed.insert(point.conversation, last);
        }
        self.outbox.release(replayed);
    }

    /// Replays one resume point; returns the newest message id the client now has.
    async fn replay(&self, user: &str, point: ResumePoint) -> MessageId {
        let node = &self.shard.node;
        let conversation: ConversationId = point.conversation;
        let mut after = point.last_message_id;
        if let Err(e) = node.hub.conversation_for(conversation, user).await {
            self.error(0, e).await;
            return after;
        }
        let max = node.config.resume_max_messages;
        let mut count = 0usize;
        let mut complete = true;
        loop {
            let want = REPLAY_CHUNK.min(max - count);
            if want == 0 {
                // Hit the cap: is there more than we replayed?
                match node.storage.messages_after(conversation, after, 1).await {
                    Ok(rest) => complete = rest.is_empty(),
                    Err(_) => complete = false,
                }
                break;
            }
            let batch = match node.storage.messages_after(conversation, after, want).await {
                Ok(b) => b,
                Err(e) => {
                    self.error(0, e.into()).await;
                    complete = false;
                    break;
                }
            };
            let n = batch.len();
            for m in batch {
                after = m.id;
                self.reply(ServerFrame::push(ServerBody::MessageNew(m)))
                    .await;
            }
            count += n;
            if n < want {
                break;
            }
        }
        self.reply(ServerFrame::push(ServerBody::Resumed {
            conversation,
            replayed: count as u32,
            complete,
        }))
        .await;
        after
    }

    /// Unregisters the session and, if it was the user's last, announces them offline.
    async fn end(&mut self) {
        if !self.outbox.is_closing() {
            self.outbox.close_normal(1000);
        }
        let Some(user) = self.user.take() else {
            return;
        };
        let node = self.shard.node.clone();
        self.shard.unregister(&user, self.session_id);
        let now = Now::get();
        let last_here = node.hub.session_closed(&user, self.shard.id, now.wall_ms);
        if ops::went_offline(&node, &user, last_here, now.wall_ms).await {
            ops::announce_presence(&node, &user, false, now.wall_ms).await;
        }
    }
}
