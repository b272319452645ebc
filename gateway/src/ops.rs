//! Chat operations shared by the socket protocol (`conn`) and the REST API (`rest`): each
//! checks who may do it, writes storage, and fans the resulting event out. One place, so a
//! message sent over HTTP is delivered exactly like one sent over a socket.

use std::sync::Arc;

use parley_types::{
    Appended, Conversation, ConversationId, ConversationSummary, Created, MessageId, NewMessage,
    ReadOutcome,
};

use crate::clock::Now;
use crate::cluster::event::Target;
use parley_proto::ErrorCode;

use crate::errors::ClientError;
use crate::hub::Event;
use crate::node::Node;
use crate::outbox::Class;
use parley_proto::{SendMessage, ServerBody, ServerFrame};

/// Most participants a Join answers with presence for.
pub const JOIN_PRESENCE_LIMIT: usize = 200;

/// Stores a message and delivers it to every session of every participant (except the
/// sending session, which gets the Ack instead). A retry (same client_msg_id) stores nothing
/// new, and delivers the stored message only if no node delivered it yet (its first node may
/// have died between storing and delivering).
pub async fn send_message(
    node: &Node,
    user: &Arc<str>,
    m: SendMessage,
    now: Now,
    exclude_session: Option<u64>,
) -> Result<Appended, ClientError> {
    let conversation = node.hub.conversation_for(m.conversation, user).await?;
    node.hub.take_send_token(user, now.mono)?;
    let appended = node
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
    if node.hub.first_delivery(appended.message.id) {
        let msg = &appended.message;
        let class = Class::Message {
            conversation: msg.conversation,
            id: msg.id,
        };
        let mut event = Event::new(ServerBody::MessageNew(msg.clone()), class);
        event.received_at = Some(now.mono);
        let written = node.cluster.as_ref().map(|cluster| {
            let target = conversation_target(msg.conversation, None);
            (cluster, cluster.publish_confirmed(target, &event))
        });
        let users = conversation.participants.iter().map(String::as_str);
        node.hub.fanout(users, None, exclude_session, event).await;
        // The Ack follows once the other nodes can get the message too.
        if let Some((cluster, written)) = written {
            cluster.wait_written(written).await;
        }
    }
    Ok(appended)
}

/// Moves the reader's watermark; when it moved, tells the other participants (and the
/// reader's other sessions, so their unread badges follow).
pub async fn mark_read(
    node: &Node,
    user: &Arc<str>,
    conversation: ConversationId,
    up_to: MessageId,
    now: Now,
    exclude_session: Option<u64>,
) -> Result<ReadOutcome, ClientError> {
    let c = node.hub.conversation_for(conversation, user).await?;
    let outcome = node
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
        publish(node, conversation_target(conversation, None), &event, None);
        let users = c.participants.iter().map(String::as_str);
        node.hub.fanout(users, None, exclude_session, event).await;
    }
    Ok(outcome)
}

/// Relays a typing state to the other participants.
pub async fn typing(
    node: &Node,
    user: &Arc<str>,
    conversation: ConversationId,
    active: bool,
) -> Result<(), ClientError> {
    let c = node.hub.conversation_for(conversation, user).await?;
    let event = Event::new(
        ServerBody::Typing {
            conversation,
            user: user.to_string(),
            active,
        },
        Class::Ephemeral,
    );
    publish(
        node,
        conversation_target(conversation, Some(user.to_string())),
        &event,
        None,
    );
    let users = c.participants.iter().map(String::as_str);
    node.hub.fanout(users, Some(user), None, event).await;
    Ok(())
}

/// Tells the users who share a conversation with `user` that it came online or went offline.
pub async fn announce_presence(node: &Node, user: &str, online: bool, last_seen_ms: i64) {
    let contacts = match node.storage.contacts(user).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "presence: contacts unavailable");
            return;
        }
    };
    if contacts.is_empty() {
        return;
    }
    let event = Event::new(
        ServerBody::Presence {
            user: user.to_owned(),
            online,
            last_seen_ms,
        },
        Class::Ephemeral,
    );
    publish(node, Target::Users(contacts.clone()), &event, None);
    let users = contacts.iter().map(String::as_str);
    node.hub.fanout(users, None, None, event).await;
}

/// Presence frames for the other participants of `c` (answer to Join): across the cluster
/// when there is one (this node's view if Redis does not answer).
pub async fn presence_of_others(node: &Node, c: &Conversation, user: &str) -> Vec<ServerFrame> {
    let others: Vec<&str> = c
        .participants
        .iter()
        .map(String::as_str)
        .filter(|p| *p != user)
        .take(JOIN_PRESENCE_LIMIT)
        .collect();
    let cluster = match &node.cluster {
        Some(cluster) => cluster.presence_many(&others).await.ok(),
        None => None,
    };
    others
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let local = node.hub.presence(p);
            let (online, last_seen_ms) = match cluster.as_ref().and_then(|c| c.get(i)) {
                Some(s) => (s.online, s.last_seen_ms.max(local.last_seen_ms)),
                None => (local.online, local.last_seen_ms),
            };
            ServerFrame::push(ServerBody::Presence {
                user: (*p).to_owned(),
                online,
                last_seen_ms,
            })
        })
        .collect()
}

/// Whether a session that just opened brought `user` online (cluster-wide when clustered;
/// `first_here`: it is the user's first session on this node).
pub async fn came_online(node: &Node, user: &str, first_here: bool) -> bool {
    match &node.cluster {
        Some(cluster) if first_here => match cluster.session_opened(user).await {
            Ok(online) => online,
            Err(e) => {
                tracing::warn!(error = %e, "cluster presence unavailable; announcing from this node");
                true
            }
        },
        // Not this node's first session: the cluster count still goes up.
        Some(cluster) => {
            let _ = cluster.session_opened(user).await;
            false
        }
        None => first_here,
    }
}

/// Whether a session that just closed took `user` offline (cluster-wide when clustered).
pub async fn went_offline(node: &Node, user: &str, last_here: bool, now_ms: i64) -> bool {
    match &node.cluster {
        Some(cluster) => match cluster.session_closed(user, now_ms).await {
            Ok(offline) => offline,
            Err(e) => {
                tracing::warn!(error = %e, "cluster presence unavailable; announcing from this node");
                last_here
            }
        },
        None => last_here,
    }
}

fn conversation_target(id: ConversationId, skip_user: Option<String>) -> Target {
    Target::Conversation { id, skip_user }
}

/// Hands an event to the other nodes (nothing without a cluster).
fn publish(node: &Node, target: Target, event: &Event, invalidate: Option<ConversationId>) {
    if let Some(cluster) = &node.cluster {
        cluster.publish(target, event, invalidate);
    }
}

/// Creates (or returns) the direct conversation of `buyer` with `seller` about `listing`.
pub async fn create_direct(
    node: &Node,
    buyer: &str,
    seller: &str,
    listing: &str,
    now: Now,
) -> Result<Created, ClientError> {
    crate::auth::validate_user_id(seller).map_err(|e| ClientError::new(ErrorCode::Invalid, e))?;
    if listing.is_empty() || listing.len() > 256 || listing.chars().any(char::is_control) {
        return Err(ClientError::new(
            ErrorCode::Invalid,
            "listingId must be 1 to 256 bytes without control characters",
        ));
    }
    Ok(node
        .storage
        .create_direct(buyer, seller, listing, now.wall_ms)
        .await?)
}

/// Creates a group and tells its participants.
pub async fn create_group(
    node: &Node,
    creator: &str,
    participants: &[String],
    title: &str,
    now: Now,
) -> Result<Conversation, ClientError> {
    for p in participants {
        crate::auth::validate_user_id(p).map_err(|e| ClientError::new(ErrorCode::Invalid, e))?;
    }
    if title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(ClientError::new(
            ErrorCode::Invalid,
            "title must be at most 200 characters without control characters",
        ));
    }
    let c = node
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
    publish(node, conversation_target(c.id, None), &event, None);
    let users = c.participants.iter().map(String::as_str);
    node.hub.fanout(users, None, None, event).await;
    Ok(c)
}

/// Deletes a conversation for everyone and tells its participants.
pub async fn delete_conversation(
    node: &Node,
    user: &str,
    conversation: ConversationId,
) -> Result<(), ClientError> {
    let c = node.storage.delete_conversation(conversation, user).await?;
    node.hub.forget_conversation(conversation);
    let event = Event::new(
        ServerBody::ConversationDeleted {
            conversation,
            by: user.to_owned(),
        },
        Class::Reliable,
    );
    // The conversation is gone: other nodes get its participants in the event itself.
    publish(
        node,
        Target::Users(c.participants.clone()),
        &event,
        Some(conversation),
    );
    let users = c.participants.iter().map(String::as_str);
    node.hub.fanout(users, None, None, event).await;
    Ok(())
}
