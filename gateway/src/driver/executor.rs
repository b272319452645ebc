//! Carries out the session core's outputs: frames go to the outbox, commands to the chat
//! operations. Each command is one small function returning the frames that answer it; errors
//! are answered in one place.

use std::rc::Rc;
use std::sync::Arc;

use parley_proto::codec::server::encode_server;
use parley_proto::{Ack, ServerBody, ServerFrame, close};
use parley_types::{ConversationId, ListCursor, MessageId, Position};

use crate::chat::Reply;
use crate::clock::Now;
use crate::errors::ClientError;
use crate::outbox::{Item, Outbox};
use crate::session::{Command, Output};
use crate::shard::Shard;

type Answer = Result<Vec<ServerFrame>, ClientError>;

pub(super) struct Executor {
    pub(super) shard: Rc<Shard>,
    pub(super) outbox: Rc<Outbox>,
    pub(super) session_id: u64,
    pub(super) user: Option<Arc<str>>,
}

impl Executor {
    pub(super) fn new(shard: Rc<Shard>, outbox: Rc<Outbox>, session_id: u64) -> Self {
        Self {
            shard,
            outbox,
            session_id,
            user: None,
        }
    }

    /// Carries out `out`; `false` once the session is closing.
    pub(super) async fn run(&mut self, out: &mut Vec<Output>) -> bool {
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
    pub(super) async fn run_after_close(&mut self, out: &mut Vec<Output>) {
        for o in out.drain(..) {
            if let Output::Do(Command::Typing {
                conversation,
                active,
                ..
            }) = o
                && let Some(user) = &self.user
            {
                let _ = self
                    .shard
                    .node
                    .chat
                    .typing(user, conversation, active)
                    .await;
            }
        }
    }

    pub(super) async fn reply(&self, frame: ServerFrame) {
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

    pub(super) async fn error(&self, seq: u32, e: ClientError) {
        let body = ServerBody::Error {
            code: e.code.code(),
            message: e.message,
            fatal: false,
        };
        self.reply(ServerFrame::new(seq, body)).await;
    }

    async fn exec(&mut self, cmd: Command) {
        let cmd = match cmd {
            Command::Start { user, resume } => return self.start(user, resume).await,
            other => other,
        };
        let Some(user) = self.user.clone() else {
            return;
        };
        let (seq, answer) = match cmd {
            Command::Start { .. } => return,
            Command::Join { seq, conversation } => (seq, self.join(&user, seq, conversation).await),
            Command::Leave { seq, conversation } => {
                (seq, self.leave(&user, seq, conversation).await)
            }
            Command::Send { seq, message } => {
                let chat = &self.shard.node.chat;
                let reply = Reply {
                    session: self.session_id,
                    seq,
                };
                let sent = chat
                    .send_message(&user, *message, Now::get(), Some(reply))
                    .await;
                // The Ack comes in line with the conversation's messages (chat::delivery).
                (seq, sent.map(|_| Vec::new()))
            }
            Command::Typing {
                seq,
                conversation,
                active,
            } => {
                let chat = &self.shard.node.chat;
                let typed = chat.typing(&user, conversation, active).await;
                // The server's own typing stop (seq 0) has no one to tell about an error.
                (seq, typed.map(|()| Vec::new()))
            }
            Command::Read {
                seq,
                conversation,
                up_to,
            } => (seq, self.read(&user, seq, conversation, up_to).await),
            Command::History {
                seq,
                conversation,
                before,
                limit,
            } => (
                seq,
                self.history(&user, seq, conversation, before, limit).await,
            ),
            Command::Conversations {
                seq,
                cursor,
                limit,
                query,
            } => (
                seq,
                self.conversations(&user, seq, cursor, limit, query.as_deref())
                    .await,
            ),
            Command::Search { seq, query } => (seq, self.search(&user, seq, *query).await),
            Command::Mute {
                seq,
                conversation,
                until,
            } => (seq, self.mute(&user, seq, conversation, until).await),
        };
        match answer {
            Ok(frames) => {
                for f in frames {
                    self.reply(f).await;
                }
            }
            Err(e) if seq != 0 => self.error(seq, e).await,
            Err(_) => {}
        }
    }

    async fn join(&self, user: &Arc<str>, seq: u32, conversation: ConversationId) -> Answer {
        let chat = &self.shard.node.chat;
        let c = chat.conversations.for_user(conversation, user).await?;
        let mut frames = vec![ServerFrame::new(seq, ServerBody::Ack(Ack::default()))];
        frames.extend(chat.presence_of_others(&c, user).await);
        Ok(frames)
    }

    async fn leave(&self, user: &Arc<str>, seq: u32, conversation: ConversationId) -> Answer {
        let chat = &self.shard.node.chat;
        chat.conversations.for_user(conversation, user).await?;
        Ok(vec![ServerFrame::new(seq, ServerBody::Ack(Ack::default()))])
    }

    async fn read(
        &self,
        user: &Arc<str>,
        seq: u32,
        conversation: ConversationId,
        up_to: MessageId,
    ) -> Answer {
        let chat = &self.shard.node.chat;
        let r = chat
            .mark_read(user, conversation, up_to, Now::get(), Some(self.session_id))
            .await?;
        let body = ServerBody::Ack(Ack {
            message_id: r.state.up_to,
            created_at_ms: r.state.read_at_ms,
            duplicate: !r.advanced,
            message_seq: r.state.seq,
        });
        Ok(vec![ServerFrame::new(seq, body)])
    }

    async fn history(
        &self,
        user: &Arc<str>,
        seq: u32,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Answer {
        let chat = &self.shard.node.chat;
        let before = before.map(|id| Position { seq: 0, id });
        let p = chat.history(user, conversation, before, limit).await?;
        let body = ServerBody::HistoryPage {
            conversation,
            messages: p.messages,
            next_before: p.next_before.map(|p| p.id),
        };
        Ok(vec![ServerFrame::new(seq, body)])
    }

    async fn conversations(
        &self,
        user: &Arc<str>,
        seq: u32,
        cursor: Option<ListCursor>,
        limit: usize,
        query: Option<&str>,
    ) -> Answer {
        let chat = &self.shard.node.chat;
        let p = match query {
            Some(q) => chat.search_conversations(user, q, cursor, limit).await?,
            None => chat.list(user, cursor, limit).await?,
        };
        let body = ServerBody::ConversationPage {
            items: p.items,
            next_cursor: p.next_cursor.map(|c| c.to_string()),
        };
        Ok(vec![ServerFrame::new(seq, body)])
    }

    async fn mute(
        &self,
        user: &Arc<str>,
        seq: u32,
        conversation: ConversationId,
        until: Option<i64>,
    ) -> Answer {
        let chat = &self.shard.node.chat;
        let push = chat.push_or_unsupported()?;
        chat.conversations.for_user(conversation, user).await?;
        push.set_muted(user, conversation, until).await?;
        let body = ServerBody::Ack(Ack {
            created_at_ms: until.unwrap_or(0),
            ..Ack::default()
        });
        Ok(vec![ServerFrame::new(seq, body)])
    }

    async fn search(&self, user: &Arc<str>, seq: u32, q: parley_proto::SearchQuery) -> Answer {
        let request = crate::search::SearchRequest {
            q: q.query,
            conversation: q.conversation,
            before: q.before,
            sort: if q.by_relevance {
                crate::search::SortBy::Relevance
            } else {
                crate::search::SortBy::Newest
            },
            offset: usize::from(q.offset),
            limit: match q.limit {
                0 => crate::search::DEFAULT_LIMIT,
                n => usize::from(n).min(crate::search::MAX_LIMIT),
            },
        };
        let page = self.shard.node.chat.search(user, request).await?;
        let hits = page
            .hits
            .into_iter()
            .map(|h| parley_proto::SearchHit {
                conversation: h.conversation,
                message_id: h.id,
                seq: h.seq,
                sender: h.sender,
                created_at_ms: h.created_at_ms,
                snippet: h.snippet,
                highlights: h
                    .highlights
                    .into_iter()
                    .map(|(a, b)| (a as u32, b as u32))
                    .collect(),
            })
            .collect();
        let body = ServerBody::SearchResults {
            hits,
            next_before: page.next_before,
            next_offset: page.next_offset.map(|o| o as u32),
        };
        Ok(vec![ServerFrame::new(seq, body)])
    }

    /// Unregisters the session and, if it was the user's last, announces them offline.
    pub(super) async fn end(&mut self) {
        if !self.outbox.is_closing() {
            self.outbox.close_normal(close::NORMAL);
        }
        let Some(user) = self.user.take() else {
            return;
        };
        let chat = &self.shard.node.chat;
        self.shard.unregister(&user, self.session_id);
        let now = Now::get();
        let last_here = chat
            .routes
            .session_closed(&user, self.shard.id, now.wall_ms);
        if chat.went_offline(&user, last_here, now.wall_ms).await {
            chat.announce_presence(&user, false, now.wall_ms).await;
        }
    }
}
