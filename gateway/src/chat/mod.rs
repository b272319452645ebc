//! Chat operations shared by the socket protocol (`driver`) and the REST API: each checks who
//! may do it, writes storage, and fans the resulting event out — locally and, in a cluster,
//! over the bus. One place, so a message sent over HTTP is delivered exactly like one sent over
//! a socket, and every later stage (moderation, media, push, search) has one room to go in.

mod presence;

use std::sync::Arc;

use parley_proto::{ErrorCode, SendMessage, ServerBody};
use parley_storage::Storage;
use parley_types::{
    Appended, Conversation, ConversationId, ConversationPage, ConversationSummary, Created,
    HistoryPage, ListCursor, Message, MessageId, NewMessage, NewReport, ReadOutcome,
};

use crate::bus::{Bus, Outgoing, Target};
use crate::clock::Now;
use crate::errors::ClientError;
use crate::event::{Class, Event};
use crate::state::conversations::Conversations;
use crate::state::delivered::Delivered;
use crate::state::fanout::Fanout;
use crate::state::limiter::SendLimiter;
use crate::state::routes::Routes;

/// Longest listing id, bytes.
const MAX_LISTING_BYTES: usize = 256;
/// Longest group title, characters.
const MAX_TITLE_CHARS: usize = 200;

/// The chat operations and the node parts they use.
pub(crate) struct Chat {
    storage: Arc<dyn Storage>,
    pub(crate) conversations: Conversations,
    pub(crate) routes: Arc<Routes>,
    pub(crate) fanout: Fanout,
    limiter: SendLimiter,
    pub(crate) delivered: Delivered,
    pub(crate) bus: Option<Arc<Bus>>,
}

impl Chat {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        routes: Arc<Routes>,
        fanout: Fanout,
        limiter: SendLimiter,
        bus: Option<Arc<Bus>>,
    ) -> Self {
        Self {
            conversations: Conversations::new(storage.clone()),
            storage,
            routes,
            fanout,
            limiter,
            delivered: Delivered::default(),
            bus,
        }
    }

    /// Stores a message and delivers it to every session of every participant (except the
    /// sending session, which gets the Ack instead). A retry (same client_msg_id) stores
    /// nothing new, and delivers the stored message only if this node did not deliver it yet
    /// (its first node may have died between storing and delivering).
    pub(crate) async fn send_message(
        &self,
        user: &Arc<str>,
        m: SendMessage,
        now: Now,
        exclude_session: Option<u64>,
    ) -> Result<Appended, ClientError> {
        let conversation = self.conversations.for_user(m.conversation, user).await?;
        self.limiter.take(user, now.mono)?;
        let appended = self
            .storage
            .append(NewMessage {
                conversation: m.conversation,
                sender: user.to_string(),
                kind: m.kind,
                content: m.content,
                media: m.media,
                client_msg_id: m.client_msg_id,
                now_ms: now.wall_ms,
            })
            .await?;
        if self.delivered.first(appended.message.id) {
            let msg = &appended.message;
            let class = Class::Message {
                conversation: msg.conversation,
                id: msg.id,
            };
            let mut event = Event::new(ServerBody::MessageNew(msg.clone()), class);
            event.received_at = Some(now.mono);
            let written = self.bus.as_ref().map(|bus| {
                let out = Outgoing {
                    event: event.clone(),
                    target: to_participants(msg.conversation, None),
                    invalidate: None,
                };
                (bus, bus.publish_confirmed(out))
            });
            let users = conversation.participants.iter().map(String::as_str);
            self.fanout.send(users, None, exclude_session, event).await;
            // The Ack follows once the other nodes can get the message too.
            if let Some((bus, written)) = written {
                bus.wait_written(written).await;
            }
        }
        Ok(appended)
    }

    /// Moves the reader's watermark; when it moved, tells the other participants (and the
    /// reader's other sessions, so their unread badges follow).
    pub(crate) async fn mark_read(
        &self,
        user: &Arc<str>,
        conversation: ConversationId,
        up_to: MessageId,
        now: Now,
        exclude_session: Option<u64>,
    ) -> Result<ReadOutcome, ClientError> {
        let c = self.conversations.for_user(conversation, user).await?;
        let outcome = self
            .storage
            .mark_read(conversation, user, up_to, now.wall_ms)
            .await?;
        if outcome.advanced {
            let event = Event::new(
                ServerBody::MessageRead {
                    conversation,
                    reader: user.to_string(),
                    up_to: outcome.state.up_to,
                    read_at_ms: outcome.state.read_at_ms,
                },
                Class::Reliable,
            );
            self.publish(to_participants(conversation, None), &event, None);
            let users = c.participants.iter().map(String::as_str);
            self.fanout.send(users, None, exclude_session, event).await;
        }
        Ok(outcome)
    }

    /// Relays a typing state to the other participants.
    pub(crate) async fn typing(
        &self,
        user: &Arc<str>,
        conversation: ConversationId,
        active: bool,
    ) -> Result<(), ClientError> {
        let c = self.conversations.for_user(conversation, user).await?;
        let event = Event::new(
            ServerBody::Typing {
                conversation,
                user: user.to_string(),
                active,
            },
            Class::Ephemeral,
        );
        self.publish(
            to_participants(conversation, Some(user.to_string())),
            &event,
            None,
        );
        let users = c.participants.iter().map(String::as_str);
        self.fanout.send(users, Some(user), None, event).await;
        Ok(())
    }

    /// Creates (or returns) the direct conversation of `buyer` with `seller` about `listing`.
    pub(crate) async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now: Now,
    ) -> Result<Created, ClientError> {
        crate::auth::validate_user_id(seller)
            .map_err(|e| ClientError::new(ErrorCode::Invalid, e))?;
        if listing.is_empty()
            || listing.len() > MAX_LISTING_BYTES
            || listing.chars().any(char::is_control)
        {
            return Err(ClientError::new(
                ErrorCode::Invalid,
                "listingId must be 1 to 256 bytes without control characters",
            ));
        }
        Ok(self
            .storage
            .create_direct(buyer, seller, listing, now.wall_ms)
            .await?)
    }

    /// Creates a group and tells its participants.
    pub(crate) async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now: Now,
    ) -> Result<Conversation, ClientError> {
        for p in participants {
            crate::auth::validate_user_id(p)
                .map_err(|e| ClientError::new(ErrorCode::Invalid, e))?;
        }
        if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
            return Err(ClientError::new(
                ErrorCode::Invalid,
                "title must be at most 200 characters without control characters",
            ));
        }
        let c = self
            .storage
            .create_group(creator, participants, title, now.wall_ms)
            .await?;
        let event = Event::new(
            ServerBody::ConversationUpdated(ConversationSummary {
                conversation: c.clone(),
                last_message: None,
                unread: 0,
            }),
            Class::Reliable,
        );
        self.publish(to_participants(c.id, None), &event, None);
        let users = c.participants.iter().map(String::as_str);
        self.fanout.send(users, None, None, event).await;
        Ok(c)
    }

    /// Deletes a conversation for everyone and tells its participants.
    pub(crate) async fn delete_conversation(
        &self,
        user: &str,
        conversation: ConversationId,
    ) -> Result<(), ClientError> {
        let c = self.storage.delete_conversation(conversation, user).await?;
        self.conversations.forget(conversation);
        let event = Event::new(
            ServerBody::ConversationDeleted {
                conversation,
                by: user.to_owned(),
            },
            Class::Reliable,
        );
        // The conversation is gone: other nodes get its participants in the event itself.
        self.publish(
            Target::Users(c.participants.clone()),
            &event,
            Some(conversation),
        );
        let users = c.participants.iter().map(String::as_str);
        self.fanout.send(users, None, None, event).await;
        Ok(())
    }

    /// A page of history, newest first, for a participant.
    pub(crate) async fn history(
        &self,
        user: &str,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, ClientError> {
        self.conversations.for_user(conversation, user).await?;
        Ok(self.storage.history(conversation, before, limit).await?)
    }

    /// Messages after `after`, oldest first (resume replay; the caller checked access).
    pub(crate) async fn messages_after(
        &self,
        conversation: ConversationId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<Message>, ClientError> {
        Ok(self
            .storage
            .messages_after(conversation, after, limit)
            .await?)
    }

    /// One page of `user`'s conversations.
    pub(crate) async fn list(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage, ClientError> {
        Ok(self.storage.list_conversations(user, cursor, limit).await?)
    }

    /// `(conversation, unread)` for each of `user`'s conversations with unread messages.
    pub(crate) async fn unread(
        &self,
        user: &str,
    ) -> Result<Vec<(ConversationId, u64)>, ClientError> {
        Ok(self.storage.unread_counts(user).await?)
    }

    /// Blocks or unblocks `target` for `user`.
    pub(crate) async fn set_block(
        &self,
        user: &str,
        target: &str,
        blocked: bool,
        now: Now,
    ) -> Result<(), ClientError> {
        Ok(self
            .storage
            .set_block(user, target, blocked, now.wall_ms)
            .await?)
    }

    /// Stores an abuse report; its id.
    pub(crate) async fn report(&self, report: NewReport) -> Result<uuid::Uuid, ClientError> {
        Ok(self.storage.report(report).await?)
    }

    /// Whether storage serves reads and writes now (readiness).
    pub(crate) async fn storage_health(&self) -> Result<(), parley_storage::StorageError> {
        self.storage.health().await
    }

    /// Hands an event to the other nodes (nothing without a cluster).
    fn publish(&self, target: Target, event: &Event, invalidate: Option<ConversationId>) {
        if let Some(bus) = &self.bus {
            bus.publish(Outgoing {
                event: event.clone(),
                target,
                invalidate,
            });
        }
    }
}

fn to_participants(id: ConversationId, skip_user: Option<String>) -> Target {
    Target::Conversation { id, skip_user }
}
