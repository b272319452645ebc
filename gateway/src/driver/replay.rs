//! A session's start: register it, announce presence, and replay what the client missed.
//! Live events are held while the replay runs and released after it without duplicates.

use std::collections::HashMap;
use std::sync::Arc;

use parley_proto::{ResumePoint, ServerBody, ServerFrame};
use parley_types::Position;

use super::executor::Executor;

/// Messages read from storage per step of a resume replay.
const REPLAY_CHUNK: usize = 200;

impl Executor {
    /// Registers the session, announces presence and replays the resume points.
    pub(super) async fn start(&mut self, user: Arc<str>, resume: Vec<ResumePoint>) {
        let node = self.shard.node.clone();
        self.user = Some(user.clone());
        if !resume.is_empty() {
            self.outbox.hold();
        }
        self.shard
            .register(&user, self.session_id, self.outbox.clone());
        let first_here = node.chat.routes.session_opened(&user, self.shard.id);
        if node.chat.came_online(&user, first_here).await {
            node.chat.announce_presence(&user, true, 0).await;
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

    /// Replays one resume point (by its seq; by its id from clients before protocol 1.1).
    /// Returns the seq of the last message the client now has, when that is known: the replay
    /// was complete (and the point had a seq, or something was replayed). A live message at or
    /// below it is then a repeat for this client, even one this node delivers late.
    async fn replay(&self, user: &str, point: ResumePoint) -> Option<u64> {
        let node = &self.shard.node;
        let conversation = point.conversation;
        let mut after = point.position();
        if let Err(e) = node.chat.conversations.for_user(conversation, user).await {
            self.error(0, e).await;
            return None;
        }
        let max = node.settings.resume_max_messages;
        let mut count = 0usize;
        let mut complete = true;
        loop {
            let want = REPLAY_CHUNK.min(max - count);
            if want == 0 {
                // Hit the cap: is there more than we replayed?
                complete = matches!(
                    node.chat.messages_after(conversation, after, 1).await,
                    Ok(rest) if rest.is_empty()
                );
                break;
            }
            let batch = match node.chat.messages_after(conversation, after, want).await {
                Ok(b) => b,
                Err(e) => {
                    self.error(0, e).await;
                    complete = false;
                    break;
                }
            };
            let n = batch.len();
            for m in batch {
                after = Position::of(&m);
                self.reply(ServerFrame::push(ServerBody::MessageNew(m)))
                    .await;
            }
            count += n;
            if n < want {
                break;
            }
        }
        let body = ServerBody::Resumed {
            conversation,
            replayed: count as u32,
            complete,
            last_seq: after.seq,
        };
        self.reply(ServerFrame::push(body)).await;
        (complete && after.seq > 0).then_some(after.seq)
    }
}
