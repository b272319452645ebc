//! Chat operations shared by the socket protocol (`driver`) and the REST API: each checks who
//! may do it, writes storage, and fans the resulting event out — locally and, in a cluster,
//! over the bus. One place, so a message sent over HTTP is delivered exactly like one sent over
//! a socket, and every later stage (moderation, media, push, search) has one room to go in.

pub(crate) mod delivery;
mod presence;
pub(crate) mod search;

use std::sync::Arc;

use parley_proto::codec::server::encode_server;
use parley_proto::{Ack, ErrorCode, SendMessage, ServerBody, ServerFrame};
use parley_storage::Storage;
use parley_types::{
    Appended, Conversation, ConversationId, ConversationPage, ConversationSummary, Created,
    HeldMessage, HistoryPage, ListCursor, MAX_SNAPSHOT_MESSAGES, MAX_SNAPSHOT_PARTICIPANTS,
    Message, MessageId, MessageKind, ModerationEntry, NewMessage, NewReport, Position, ReadOutcome,
    ReadState, Report, ReportSnapshot, Standing, Visibility,
};

use crate::bus::{Bus, Invalidate, Outgoing, Target};
use crate::clock::Now;
use crate::errors::ClientError;
use crate::event::{Class, Event};
use crate::media::{Media, MediaKind};
use crate::moderation::{Action, Counter, Facts, LocalCounter, Moderation, Verdict};
use crate::state::blocks::Blocks;
use crate::state::conversations::Conversations;
use crate::state::fanout::{Fanout, SessionAck};
use crate::state::limiter::UserLimiter;
use crate::state::routes::Routes;
use crate::state::standings::Standings;
use delivery::{Delivery, message_event};

/// Participants whose read watermarks [`Chat::reads`] shows at most.
pub(crate) const READS_MAX: usize = 100;

/// Where a Send's Ack goes: the sending session and the request's seq.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reply {
    pub(crate) session: u64,
    pub(crate) seq: u32,
}

/// What a message passes through before it is stored: the moderation rules and, for media,
/// the upload it names.
pub(crate) struct Stages {
    pub(crate) moderation: Arc<Moderation>,
    pub(crate) media: Arc<Media>,
    /// The message index (None: search is off on this node).
    pub(crate) search: Option<Arc<dyn crate::search::SearchIndex>>,
    /// Push notifications (None: off on this node).
    pub(crate) push: Option<Arc<crate::push::Push>>,
}

/// The chat operations and the node parts they use.
pub(crate) struct Chat {
    storage: Arc<dyn Storage>,
    pub(crate) conversations: Arc<Conversations>,
    pub(crate) blocks: Arc<Blocks>,
    pub(crate) standings: Standings,
    pub(crate) routes: Arc<Routes>,
    /// Messages in seq order, and everything else, to this node's sessions.
    pub(crate) delivery: Arc<Delivery>,
    limiter: UserLimiter,
    pub(crate) bus: Option<Arc<Bus>>,
    /// The rules every message's text is checked against before it is stored.
    pub(crate) moderation: Arc<Moderation>,
    /// Where `same_text` rules count (this node's memory, or Redis in a cluster).
    spam: Arc<dyn Counter>,
    /// Uploads: a message's media id is checked here; its URLs are signed for readers.
    pub(crate) media: Arc<Media>,
    /// The message index, when search is on.
    pub(crate) search: Option<Arc<dyn crate::search::SearchIndex>>,
    /// Push notifications, when on.
    pub(crate) push: Option<Arc<crate::push::Push>>,
}

impl Chat {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        routes: Arc<Routes>,
        blocks: Arc<Blocks>,
        fanout: Fanout,
        limiter: UserLimiter,
        bus: Option<Arc<Bus>>,
        stages: Stages,
    ) -> Self {
        let Stages {
            moderation,
            media,
            search,
            push,
        } = stages;
        let conversations = Arc::new(Conversations::new(storage.clone()));
        let standings = Standings::new(storage.clone());
        let spam: Arc<dyn Counter> = match &bus {
            Some(bus) => Arc::new(BusCounter(bus.clone())),
            None => Arc::new(LocalCounter::default()),
        };
        let alone = bus.is_none();
        let delivery = Delivery::new(
            fanout,
            storage.clone(),
            conversations.clone(),
            alone,
            media.clone(),
        );
        Self {
            conversations,
            blocks,
            standings,
            storage,
            routes,
            delivery: Arc::new(delivery),
            limiter,
            bus,
            moderation,
            spam,
            media,
            search,
            push,
        }
    }

    /// This node's fan-out (events that need no order among themselves).
    pub(crate) fn fanout(&self) -> &Fanout {
        &self.delivery.fanout
    }

    /// Stores a message and delivers it, in seq order, to every session of every participant;
    /// the sending session (`reply`) gets the Ack instead, in the same place in line. A retry
    /// (same client_msg_id) stores nothing new; the stored message goes out only where it did
    /// not yet (its first node may have died between storing and delivering), and the retry is
    /// acknowledged with it. Other nodes get the message before anyone here does.
    pub(crate) async fn send_message(
        &self,
        user: &Arc<str>,
        mut m: SendMessage,
        now: Now,
        reply: Option<Reply>,
    ) -> Result<Appended, ClientError> {
        let conversation = self.conversations.for_user(m.conversation, user).await?;
        let standing = self.may_send(user, now).await?;
        self.limiter.take(user, now.mono)?;
        m.media = match m.media.take() {
            Some(asked) => Some(self.attach(user, &m, &asked.id, now.wall_ms).await?),
            None => None,
        };
        let verdict = self
            .check_text(user, &m.content, m.conversation, now.wall_ms)
            .await?;
        let action = verdict.as_ref().map(|v| v.action);
        if let Some(v) = verdict.as_ref().filter(|v| v.action == Action::Bounce) {
            return Err(ClientError::new(
                ErrorCode::Moderated,
                v.message.to_string(),
            ));
        }
        if let Some(v) = verdict.as_ref().filter(|v| v.action == Action::Hold) {
            self.hold(user, &m, v, now).await?;
            return Err(ClientError::new(ErrorCode::Held, v.message.to_string()));
        }
        // From here the message is stored: its upload is kept for good.
        if let Some(media) = &m.media {
            self.media.attach(&media.id).await.map_err(|e| {
                let (code, message) = e.into_client();
                ClientError::new(code, message)
            })?;
        }
        let visibility = match standing.shadowed || action == Some(Action::Shadow) {
            true => Visibility::Sender,
            false => Visibility::Everyone,
        };
        let flag = verdict.filter(|v| v.action == Action::Flag);
        self.store_and_deliver(user, conversation, m, visibility, flag, now, reply)
            .await
    }

    /// The media a message carries, from the upload's id: the sender's, uploaded for this
    /// conversation, of the message's kind.
    async fn attach(
        &self,
        user: &str,
        m: &SendMessage,
        id: &str,
        now_ms: i64,
    ) -> Result<parley_types::MediaRef, ClientError> {
        let (kind, media) = self
            .media
            .for_message(id, user, m.conversation, now_ms)
            .await
            .map_err(|e| {
                let (code, message) = e.into_client();
                ClientError::new(code, message)
            })?;
        let matches = matches!(
            (m.kind, kind),
            (MessageKind::Image, MediaKind::Image) | (MessageKind::File, MediaKind::File)
        );
        if !matches {
            return Err(ClientError::new(
                ErrorCode::Invalid,
                match kind {
                    MediaKind::Image => "that media is an image: send it as kind image",
                    MediaKind::File => "that media is a file: send it as kind file",
                },
            ));
        }
        Ok(media)
    }

    /// Stores a checked message and delivers it (see `send_message`).
    #[allow(clippy::too_many_arguments)]
    async fn store_and_deliver(
        &self,
        user: &Arc<str>,
        conversation: Arc<Conversation>,
        m: SendMessage,
        visibility: Visibility,
        flag: Option<Verdict>,
        now: Now,
        reply: Option<Reply>,
    ) -> Result<Appended, ClientError> {
        let in_flight = self.delivery.begin(m.conversation);
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
                visibility,
            })
            .await?;
        let mut appended = appended;
        self.media.show(&mut appended.message, now.wall_ms);
        let msg = &appended.message;
        // Nobody needs the hidden frame if the sender has no blocks (it is not encoded, nor sent
        // over the bus with every message). A node that learned of a new block before this one
        // did gets none, and closes that session with resync; its replay has the hidden message.
        let blocks = self.blocks.relations(user).await;
        let shadowed = msg.visibility == Visibility::Sender;
        let hidden = shadowed || !blocks.is_ok_and(|r| r.is_empty());
        let mut event = message_event(msg.clone(), hidden);
        event.actor_only = shadowed;
        event.received_at = Some(now.mono);
        if let Some(bus) = &self.bus {
            let written = bus.publish_confirmed(Outgoing {
                event: event.clone(),
                target: to_participants(msg.conversation, None),
                invalidate: None,
            });
            // Acknowledged (below, in line) only once the other nodes can get it too.
            bus.wait_written(written).await;
        }
        let ack = reply.map(|r| SessionAck {
            user: user.clone(),
            session: r.session,
            frame: encode_server(&ack_frame(r.seq, &appended)),
            conversation: msg.conversation,
            seq: msg.seq,
        });
        // Filed before the Ack: a sender who has the Ack finds the report there.
        if let Some(v) = flag.filter(|_| !appended.duplicate) {
            self.flag(user, msg, &v, now).await;
        }
        self.delivery
            .offer_local(in_flight, conversation, msg.seq, event, ack)
            .await;
        Ok(appended)
    }

    /// Keeps a message a rule held with a report for moderators (not in the conversation).
    async fn hold(
        &self,
        user: &str,
        m: &SendMessage,
        v: &Verdict,
        now: Now,
    ) -> Result<(), ClientError> {
        if m.media.is_some() {
            // Held messages are text; one with media is refused instead.
            return Err(ClientError::new(
                ErrorCode::Moderated,
                v.message.to_string(),
            ));
        }
        let snapshot = self.report_snapshot(m.conversation, None).await?;
        self.storage
            .report(NewReport {
                reporter: MODERATION_REPORTER.to_owned(),
                reported_user: user.to_owned(),
                conversation: Some(m.conversation),
                message: None,
                reason: format!("held by moderation rule {}", v.rule),
                now_ms: now.wall_ms,
                snapshot,
                held: Some(HeldMessage {
                    kind: m.kind,
                    content: m.content.clone(),
                    client_msg_id: m.client_msg_id.clone(),
                    created_at_ms: now.wall_ms,
                }),
            })
            .await?;
        Ok(())
    }

    /// A moderator releases a held message: the report is resolved (once: a second release
    /// fails), then the message is sent as its sender would have (it gets its place in the
    /// conversation now), if they are still in the conversation.
    pub(crate) async fn release(
        &self,
        report: &Report,
        entry: ModerationEntry,
        now: Now,
    ) -> Result<Appended, ClientError> {
        let (Some(held), Some(conv)) = (report.held.clone(), report.conversation) else {
            return Err(ClientError::new(
                ErrorCode::Invalid,
                "that report holds no message",
            ));
        };
        self.moderate(entry, now).await?;
        let sender: Arc<str> = report.reported_user.as_str().into();
        let conversation = self.conversations.for_user(conv, &sender).await?;
        let m = SendMessage {
            conversation: conv,
            client_msg_id: held.client_msg_id,
            kind: held.kind,
            content: held.content,
            media: None,
        };
        self.store_and_deliver(
            &sender,
            conversation,
            m,
            Visibility::Everyone,
            None,
            now,
            None,
        )
        .await
    }

    /// The moderation rules' decision on a message's text (None: no rule matched).
    async fn check_text(
        &self,
        user: &str,
        text: &str,
        conversation: ConversationId,
        now_ms: i64,
    ) -> Result<Option<Verdict>, ClientError> {
        let rules = self.moderation.rules();
        if rules.len() == 0 || text.is_empty() {
            return Ok(None);
        }
        let seen = crate::moderation::text::see(text);
        let mut facts = Facts::default();
        let member = conversation.to_string();
        for c in rules.same_text_counts(&seen, user) {
            // A counter that cannot answer counts nothing (spam rules fail open).
            match self.spam.add(&c.key, &member, now_ms, c.window_ms).await {
                Ok(n) => facts.same_text.push((c.rule, n)),
                Err(e) => tracing::warn!(error = %e, "spam counter unavailable"),
            }
        }
        if rules.uses_classifier()
            && let Some(classifier) = &self.moderation.classifier
        {
            let ask = crate::moderation::classifier::Ask {
                text,
                sender: user,
                conversation: &member,
            };
            facts.classifier = Some(classifier.score(ask).await.ok());
        }
        if rules.needs_history(&seen, &facts) {
            // The cached conversation's last seq is not kept current: ask storage.
            let c = self.storage.conversation(conversation).await?;
            facts.earlier_messages = c.map_or(0, |c| c.last_seq);
        }
        let verdict = rules.check(&seen, &facts);
        if let Some(v) = &verdict {
            self.moderation.record(v, user);
        }
        Ok(verdict)
    }

    /// Files a flagged message as a report for moderators (reporter `parley:moderation`),
    /// with its snapshot. The message is delivered already; a failure here is logged.
    async fn flag(&self, user: &str, m: &Message, v: &Verdict, now: Now) {
        let filed = async {
            let snapshot = self.report_snapshot(m.conversation, Some(m.id)).await?;
            let report = NewReport {
                reporter: MODERATION_REPORTER.to_owned(),
                reported_user: user.to_owned(),
                conversation: Some(m.conversation),
                message: Some(m.id),
                reason: format!("moderation rule {}", v.rule),
                now_ms: now.wall_ms,
                snapshot,
                held: None,
            };
            Ok::<_, ClientError>(self.storage.report(report).await?)
        };
        if let Err(e) = filed.await {
            tracing::warn!(rule = %v.rule, error = %e.message, "flagged message not filed as a report");
        }
    }

    /// Moves the reader's watermark; when it moved, tells the other participants (and the
    /// reader's other sessions, so their unread badges follow).
    /// Push notifications, or the error every caller gives on a node without them.
    pub(crate) fn push_or_unsupported(&self) -> Result<&crate::push::Push, ClientError> {
        self.push.as_deref().ok_or_else(|| {
            let why = "push notifications are off on this node";
            ClientError::new(ErrorCode::Unsupported, why)
        })
    }

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
            )
            .by(user.clone());
            self.publish(to_participants(conversation, None), &event, None);
            let users = c.participants.iter().map(String::as_str);
            self.fanout()
                .send(users, None, exclude_session, event)
                .await;
            if let Some(push) = &self.push {
                // Read here: a notification a push showed elsewhere may be cleared.
                push.read(user, conversation, outcome.state.seq);
            }
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
        )
        .by(user.clone());
        self.publish(
            to_participants(conversation, Some(user.to_string())),
            &event,
            None,
        );
        let users = c.participants.iter().map(String::as_str);
        self.fanout().send(users, Some(user), None, event).await;
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
        parley_types::rules::listing_id(listing)
            .map_err(|why| ClientError::new(ErrorCode::Invalid, format!("listingId {why}")))?;
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
        parley_types::rules::title(title)
            .map_err(|why| ClientError::new(ErrorCode::Invalid, format!("title {why}")))?;
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
        self.fanout().send(users, None, None, event).await;
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
        self.unindex(conversation);
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
            Some(Invalidate::Conversation(conversation)),
        );
        let users = c.participants.iter().map(String::as_str);
        self.fanout().send(users, None, None, event).await;
        Ok(())
    }

    /// A page of history, newest first, for a participant.
    pub(crate) async fn history(
        &self,
        user: &str,
        conversation: ConversationId,
        before: Option<Position>,
        limit: usize,
    ) -> Result<HistoryPage, ClientError> {
        self.conversations.for_user(conversation, user).await?;
        let mut page = self.storage.history(conversation, before, limit).await?;
        // Messages of users with a block between them and the reader: only their place.
        let blocked = self.blocks.relations(user).await?;
        let now_ms = crate::clock::wall_ms();
        for m in &mut page.messages {
            if blocked.contains(&m.sender) || !m.visible_to(user) {
                *m = m.hidden();
            }
            self.media.show(m, now_ms);
        }
        Ok(page)
    }

    /// The message `id` of `conversation`, for a participant; None when it has no such message.
    pub(crate) async fn message(
        &self,
        user: &str,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<Option<Message>, ClientError> {
        self.conversations.for_user(conversation, user).await?;
        // The newest message strictly older than id + 1: the message itself if it exists.
        let before = Position {
            seq: 0,
            id: MessageId(id.0.saturating_add(1)),
        };
        let page = self.storage.history(conversation, Some(before), 1).await?;
        Ok(page
            .messages
            .into_iter()
            .next()
            .filter(|m| m.id == id && m.visible_to(user)))
    }

    /// What a report keeps of `conversation`: its participants and the messages around
    /// `message` (or its newest ones), as stored — moderators see what readers could not.
    pub(crate) async fn report_snapshot(
        &self,
        conversation: ConversationId,
        message: Option<MessageId>,
    ) -> Result<ReportSnapshot, ClientError> {
        let c = self.conversations.get(conversation).await?;
        let half = MAX_SNAPSHOT_MESSAGES / 2;
        let mut messages = match message {
            None => {
                let page = self
                    .storage
                    .history(conversation, None, MAX_SNAPSHOT_MESSAGES);
                let mut m = page.await?.messages;
                m.reverse();
                m
            }
            Some(id) => {
                // The message and up to `half` before it (newest first, reversed), then up to
                // `half` after it.
                let upto = Position {
                    seq: 0,
                    id: MessageId(id.0.saturating_add(1)),
                };
                let page = self.storage.history(conversation, Some(upto), half + 1);
                let mut m = page.await?.messages;
                m.reverse();
                if let Some(last) = m.last() {
                    let after = Position::of(last);
                    m.extend(
                        self.storage
                            .messages_after(conversation, after, half)
                            .await?,
                    );
                }
                m
            }
        };
        messages.truncate(MAX_SNAPSHOT_MESSAGES);
        Ok(ReportSnapshot {
            participants: c
                .participants
                .iter()
                .take(MAX_SNAPSHOT_PARTICIPANTS)
                .cloned()
                .collect(),
            participant_count: c.participants.len() as u32,
            messages,
        })
    }

    /// `user`'s standing, if they may send at `now` (not banned, not muted).
    async fn may_send(&self, user: &str, now: Now) -> Result<Arc<Standing>, ClientError> {
        let standing = self.standings.of(user).await?;
        if standing.banned {
            return Err(banned());
        }
        if standing.muted_at(now.wall_ms) {
            let left_s = (standing.muted_until_ms - now.wall_ms + 999) / 1000;
            return Err(ClientError::new(
                ErrorCode::Muted,
                format!("a moderator muted you; you can send again in {left_s} s"),
            ));
        }
        Ok(standing)
    }

    /// `Err(banned)` for a banned user (every REST call and session start asks).
    pub(crate) async fn not_banned(&self, user: &str) -> Result<(), ClientError> {
        match self.standings.of(user).await?.banned {
            true => Err(banned()),
            false => Ok(()),
        }
    }

    /// A moderator's action (checked by the caller): stored with its log entry; every node
    /// forgets the user's cached standing, and a banned user's sessions close everywhere.
    pub(crate) async fn moderate(
        &self,
        entry: ModerationEntry,
        now: Now,
    ) -> Result<Standing, ClientError> {
        let target = entry.target.clone();
        let standing = self.storage.moderate(entry).await?;
        let users = vec![target.clone()];
        self.standings.forget(&users);
        if let Some(bus) = &self.bus {
            let written = bus.publish_confirmed(Outgoing {
                event: nothing(now),
                target: Target::Users(Vec::new()),
                invalidate: Some(Invalidate::Standing(users)),
            });
            bus.wait_written(written).await;
        }
        if standing.banned {
            self.close_sessions(&target).await;
        }
        Ok(standing)
    }

    /// Closes `user`'s sessions on this node with `banned` if they are banned now (another
    /// node's moderator acted on them).
    pub(crate) async fn close_if_banned(&self, user: &str) {
        if self.standings.of(user).await.is_ok_and(|s| s.banned) {
            self.close_sessions(user).await;
        }
    }

    /// Closes `user`'s sessions on this node with `banned`.
    async fn close_sessions(&self, user: &str) {
        let b = banned();
        let mut event = Event::new(
            ServerBody::Error {
                code: b.code.code(),
                message: b.message,
                fatal: true,
            },
            Class::Reliable,
        );
        event.close = Some(ErrorCode::Banned);
        self.fanout().send([user], None, None, event).await;
    }

    /// Reports, the moderation log and standings, for moderators.
    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Messages after `after`, oldest first (resume replay; the caller checked access).
    pub(crate) async fn messages_after(
        &self,
        conversation: ConversationId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Message>, ClientError> {
        let mut messages = self
            .storage
            .messages_after(conversation, after, limit)
            .await?;
        let now_ms = crate::clock::wall_ms();
        for m in &mut messages {
            self.media.show(m, now_ms);
        }
        Ok(messages)
    }

    /// One page of `user`'s conversations.
    pub(crate) async fn list(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage, ClientError> {
        let mut page = self.storage.list_conversations(user, cursor, limit).await?;
        let blocked = self.blocks.relations(user).await?;
        let now_ms = crate::clock::wall_ms();
        for item in &mut page.items {
            if let Some(m) = &mut item.last_message {
                if blocked.contains(&m.sender) || !m.visible_to(user) {
                    *m = m.hidden();
                }
                self.media.show(m, now_ms);
            }
        }
        Ok(page)
    }

    /// How far `conversation`'s other participants (the first [`READS_MAX`]) have read, as
    /// `user` may see it: each one with a watermark, except users with a block between them
    /// and `user` (a block stops read receipts, so it hides these too). For a client that
    /// shows read ticks after a reload, before any live `MessageRead`.
    pub(crate) async fn reads(
        &self,
        user: &str,
        conversation: ConversationId,
    ) -> Result<Vec<(String, ReadState)>, ClientError> {
        let conv = self.conversations.for_user(conversation, user).await?;
        let blocked = self.blocks.relations(user).await?;
        let others: Vec<&String> = conv
            .participants
            .iter()
            .filter(|p| p.as_str() != user && !blocked.contains(p.as_str()))
            .take(READS_MAX)
            .collect();
        let states = futures_util::future::try_join_all(
            others
                .iter()
                .map(|p| self.storage.read_state(conversation, p)),
        )
        .await?;
        Ok(others
            .into_iter()
            .zip(states)
            .filter_map(|(p, s)| s.map(|s| (p.clone(), s)))
            .collect())
    }

    /// `(conversation, unread)` for each of `user`'s conversations with unread messages.
    pub(crate) async fn unread(
        &self,
        user: &str,
    ) -> Result<Vec<(ConversationId, u64)>, ClientError> {
        Ok(self.storage.unread_counts(user).await?)
    }

    /// Blocks or unblocks `target` for `user`; every node's cache forgets both users' blocks
    /// (this node's at once, the others' once the bus has it — waited for).
    pub(crate) async fn set_block(
        &self,
        user: &str,
        target: &str,
        blocked: bool,
        now: Now,
    ) -> Result<(), ClientError> {
        self.storage
            .set_block(user, target, blocked, now.wall_ms)
            .await?;
        let users = vec![user.to_owned(), target.to_owned()];
        self.blocks.forget(&users);
        if let Some(bus) = &self.bus {
            let written = bus.publish_confirmed(Outgoing {
                event: nothing(now),
                target: Target::Users(Vec::new()),
                invalidate: Some(Invalidate::Blocks(users)),
            });
            bus.wait_written(written).await;
        }
        Ok(())
    }

    /// The users `user` blocked, with when.
    pub(crate) async fn blocks_of(&self, user: &str) -> Result<Vec<(String, i64)>, ClientError> {
        Ok(self.storage.blocks(user).await?)
    }

    /// Stores an abuse report; its id.
    pub(crate) async fn report(&self, report: NewReport) -> Result<uuid::Uuid, ClientError> {
        Ok(self.storage.report(report).await?)
    }

    /// Whether storage can still write at all (liveness).
    pub(crate) fn storage_alive(&self) -> bool {
        self.storage.alive()
    }

    /// Whether storage serves reads and writes now (readiness).
    pub(crate) async fn storage_health(&self) -> Result<(), parley_storage::StorageError> {
        self.storage.health().await
    }

    /// Hands an event to the other nodes (nothing without a cluster).
    fn publish(&self, target: Target, event: &Event, invalidate: Option<Invalidate>) {
        if let Some(bus) = &self.bus {
            bus.publish(Outgoing {
                event: event.clone(),
                target,
                invalidate,
            });
        }
    }
}

/// Spam counting in Redis, through the bus's connection: the same sender's text counted
/// across every node.
struct BusCounter(Arc<Bus>);

#[async_trait::async_trait]
impl Counter for BusCounter {
    async fn add(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, String> {
        self.0
            .window_add(key, member, now_ms, window_ms)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The reporter of the reports moderation rules file (`flag`).
pub(crate) const MODERATION_REPORTER: &str = "parley:moderation";

/// An event for nobody, to carry an invalidation over the bus.
fn nothing(now: Now) -> Event {
    Event::new(
        ServerBody::Pong {
            nonce: 0,
            server_time_ms: now.wall_ms,
        },
        Class::Reliable,
    )
}

fn banned() -> ClientError {
    ClientError::new(ErrorCode::Banned, "a moderator banned this account")
}

/// The Ack of a Send: the stored message's id, time and seq.
pub(crate) fn ack_frame(seq: u32, a: &Appended) -> ServerFrame {
    let body = ServerBody::Ack(Ack {
        message_id: a.message.id,
        created_at_ms: a.message.created_at_ms,
        duplicate: a.duplicate,
        message_seq: a.message.seq,
    });
    ServerFrame::new(seq, body)
}

fn to_participants(id: ConversationId, skip_user: Option<String>) -> Target {
    Target::Conversation { id, skip_user }
}
