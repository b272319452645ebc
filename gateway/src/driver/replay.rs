//! A session's start: register it, announce presence, and replay what the client missed.
//! Live events are held while the replay runs and released after it without duplicates.

use std::collections::HashMap;
use std::sync::Arc;

use parley_proto::codec::server::encode_server;
use parley_proto::{ErrorCode, ResumePoint, ServerBody, ServerFrame};
use parley_types::{ConversationId, Position};

use crate::outbox::Item;

use super::executor::Executor;

/// Messages read from storage per step of a resume replay.
const REPLAY_CHUNK: usize = 200;

/// What one Hello may replay in all, over all its resume points.
struct Budget {
    messages: usize,
    bytes: usize,
}

impl Executor {
    /// Registers the session, announces presence and replays the resume points: each
    /// conversation once (the furthest point given for it), within the node's budget per
    /// Hello, and only while the session lasts.
    pub(super) async fn start(&mut self, user: Arc<str>, resume: Vec<ResumePoint>) {
        let node = self.shard.node.clone();
        let max = node.settings.max_sessions_per_user;
        let Some(first_here) = node
            .chat
            .routes
            .session_opened_within(&user, self.shard.id, max)
        else {
            let message = format!("this user already has {max} sessions on this node");
            let body = ServerBody::Error {
                code: ErrorCode::TooManySessions.code(),
                message,
                fatal: true,
            };
            self.reply(ServerFrame::push(body)).await;
            self.outbox.close(ErrorCode::TooManySessions);
            return;
        };
        self.user = Some(user.clone());
        if !resume.is_empty() {
            self.outbox.hold();
        }
        self.shard
            .register(&user, self.session_id, self.outbox.clone());
        // After registering: a ban from now on finds this session to close; one before is
        // in the standing read here. (Storage that cannot say does not end the session.)
        if let Err(e) = node.chat.not_banned(&user).await
            && e.code == ErrorCode::Banned
        {
            let body = ServerBody::Error {
                code: e.code.code(),
                message: e.message,
                fatal: true,
            };
            self.reply(ServerFrame::push(body)).await;
            self.outbox.close(e.code);
            return;
        }
        if node.chat.came_online(&user, first_here).await {
            node.chat.announce_presence(&user, true, 0).await;
        }
        if resume.is_empty() {
            return;
        }
        let mut budget = Budget {
            messages: node.settings.resume_max_total_messages,
            bytes: node.settings.resume_max_total_bytes,
        };
        let mut replayed = HashMap::new();
        for point in furthest_per_conversation(resume) {
            if self.outbox.is_closing() {
                return;
            }
            let last = self.replay(&user, point, &mut budget).await;
            replayed.insert(point.conversation, last);
        }
        self.outbox.release(replayed);
    }

    /// Replays one resume point (by its seq; by its id from clients before protocol 1.1).
    /// Returns the seq of the last message the client now has, when that is known: the replay
    /// was complete (and the point had a seq, or something was replayed). A live message at or
    /// below it is then a repeat for this client, even one this node delivers late.
    async fn replay(&self, user: &str, point: ResumePoint, budget: &mut Budget) -> Option<u64> {
        let node = &self.shard.node;
        let conversation = point.conversation;
        let mut after = point.position();
        if let Err(e) = node.chat.conversations.for_user(conversation, user).await {
            self.error(0, e).await;
            return None;
        }
        // Messages of users with a block between them and this one go as their place only (as
        // they are delivered); unknown (storage failing): whole, as they would be delivered.
        let blocked = node.chat.blocks.relations(user).await.unwrap_or_default();
        let max = node.settings.resume_max_messages.min(budget.messages);
        let mut count = 0usize;
        let mut complete = true;
        loop {
            let want = REPLAY_CHUNK.min(max - count);
            if want == 0 || budget.bytes == 0 {
                // Hit a cap: is there more than we replayed?
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
            for mut m in batch {
                after = Position::of(&m);
                if blocked.contains(&m.sender) || !m.visible_to(user) {
                    m = m.hidden();
                }
                let frame = encode_server(&ServerFrame::push(ServerBody::MessageNew(m)));
                budget.bytes = budget.bytes.saturating_sub(frame.len());
                if self.outbox.push_own(Item::Frame(frame)).await.is_err() {
                    // The session ended: nobody to replay to.
                    return None;
                }
                node.metrics
                    .shard(self.shard.id)
                    .frames_out(parley_proto::FrameKind::MessageNew, 1);
                count += 1;
                budget.messages -= 1;
            }
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

/// One point per conversation, the furthest one given for it, in the order first given.
fn furthest_per_conversation(points: Vec<ResumePoint>) -> Vec<ResumePoint> {
    let mut out: Vec<ResumePoint> = Vec::with_capacity(points.len());
    let mut index: HashMap<ConversationId, usize> = HashMap::with_capacity(points.len());
    for p in points {
        match index.get(&p.conversation) {
            Some(&i) => {
                let kept = &mut out[i];
                if (p.last_seq, p.last_message_id) > (kept.last_seq, kept.last_message_id) {
                    *kept = p;
                }
            }
            None => {
                index.insert(p.conversation, out.len());
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_types::MessageId;

    #[test]
    fn resume_points_are_one_per_conversation_the_furthest() {
        let (a, b) = (ConversationId::random(), ConversationId::random());
        let at = |c, seq| ResumePoint {
            conversation: c,
            last_message_id: MessageId(seq * 10),
            last_seq: seq,
        };
        let points = vec![at(a, 3), at(b, 1), at(a, 9), at(a, 5), at(b, 1)];
        assert_eq!(furthest_per_conversation(points), vec![at(a, 9), at(b, 1)]);
        let many = vec![at(a, 1); 1000];
        assert_eq!(furthest_per_conversation(many).len(), 1);
    }
}
