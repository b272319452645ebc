//! What the cluster bus reports, carried out on this node.

use std::sync::Arc;

use async_trait::async_trait;

use crate::bus::{BusEvent, BusHandler, Invalidate, Target};
use crate::event::Class;
use crate::node::Node;

/// The node's [`BusHandler`].
pub(crate) struct BusEvents(pub(crate) Arc<Node>);

#[async_trait]
impl BusHandler for BusEvents {
    /// Delivers an event from another node to this node's sessions; a message in its
    /// conversation's line (once: a retried publish or a retried Send may bring it twice).
    async fn event(&self, e: BusEvent) {
        let chat = &self.0.chat;
        let (event, target, invalidate) = e.into_parts();
        match invalidate {
            Some(Invalidate::Conversation(c)) => chat.conversations.forget(c),
            Some(Invalidate::Blocks(users)) => chat.blocks.forget(&users),
            Some(Invalidate::Standing(users)) => {
                chat.standings.forget(&users);
                for user in &users {
                    chat.close_if_banned(user).await;
                }
            }
            None => {}
        }
        match target {
            Target::Users(users) => {
                let users = users.iter().map(String::as_str);
                chat.fanout().send(users, None, None, event).await;
            }
            Target::Conversation { id, skip_user } => {
                let Ok(c) = chat.conversations.get(id).await else {
                    return;
                };
                if let Class::Message { seq, .. } = event.class {
                    chat.delivery.offer_remote(c, seq, event).await;
                    return;
                }
                let users = c.participants.iter().map(String::as_str);
                chat.fanout()
                    .send(users, skip_user.as_deref(), None, event)
                    .await;
            }
        }
    }

    fn gap(&self) {
        self.0.lifecycle.resync();
    }

    async fn went_offline(&self, users: Vec<String>, at_ms: i64) {
        for user in users {
            self.0.chat.announce_presence(&user, false, at_ms).await;
        }
    }
}
