//! Presence: who shares a conversation with a user learns when the user comes online or goes
//! offline (cluster-wide when clustered), and a Join answers with the others' state.

use parley_proto::{ServerBody, ServerFrame};
use parley_types::Conversation;

use super::Chat;
use crate::bus::Target;
use crate::event::{Class, Event};

/// Most participants a Join answers with presence for.
pub(crate) const JOIN_PRESENCE_LIMIT: usize = 200;

/// Presence is pushed to the participants of direct conversations and of groups up to this
/// size. In a bigger group a client asks (Join answers with the others' presence): pushing it
/// made one connect of a user in 100 groups of 1 000 fan out to 100 000 users.
pub(crate) const PUSHED_PRESENCE_MAX_PARTICIPANTS: usize = 100;

impl Chat {
    /// Tells the users who share a conversation with `user` (a direct one, or a group of at
    /// most [`PUSHED_PRESENCE_MAX_PARTICIPANTS`]) that it came online or went offline.
    pub(crate) async fn announce_presence(&self, user: &str, online: bool, last_seen_ms: i64) {
        let max = PUSHED_PRESENCE_MAX_PARTICIPANTS;
        let contacts = match self.storage.contacts(user, max).await {
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
        )
        .by(user);
        self.publish(Target::Users(contacts.clone()), &event, None);
        let users = contacts.iter().map(String::as_str);
        self.fanout().send(users, None, None, event).await;
    }

    /// Presence frames for the other participants of `c` (answer to Join): across the cluster
    /// when there is one (this node's view if the bus does not answer).
    pub(crate) async fn presence_of_others(
        &self,
        c: &Conversation,
        user: &str,
    ) -> Vec<ServerFrame> {
        let blocked = match self.blocks.relations(user).await {
            Ok(b) => b,
            Err(_) => return Vec::new(),
        };
        let others: Vec<&str> = c
            .participants
            .iter()
            .map(String::as_str)
            .filter(|p| *p != user && !blocked.contains(*p))
            .take(JOIN_PRESENCE_LIMIT)
            .collect();
        let cluster = match &self.bus {
            Some(bus) => bus.presence_many(&others).await.ok(),
            None => None,
        };
        others
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let local = self.routes.presence(p);
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
    pub(crate) async fn came_online(&self, user: &str, first_here: bool) -> bool {
        match &self.bus {
            Some(bus) if first_here => match bus.session_opened(user).await {
                Ok(online) => online,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster presence unavailable; announcing from this node");
                    true
                }
            },
            // Not this node's first session: the cluster count still goes up.
            Some(bus) => {
                let _ = bus.session_opened(user).await;
                false
            }
            None => first_here,
        }
    }

    /// Whether a session that just closed took `user` offline (cluster-wide when clustered).
    pub(crate) async fn went_offline(&self, user: &str, last_here: bool, now_ms: i64) -> bool {
        match &self.bus {
            Some(bus) => match bus.session_closed(user, now_ms).await {
                Ok(offline) => offline,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster presence unavailable; announcing from this node");
                    last_here
                }
            },
            None => last_here,
        }
    }
}
