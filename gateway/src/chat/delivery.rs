//! Messages out in seq order: the [`Sequencer`]'s lines driven — hand-outs through fan-out,
//! wakes as timer tasks, gaps filled from storage.
//!
//! A Send announces its append ([`Delivery::begin`]) before storage numbers it, and offers the
//! stored message with its Ack afterwards; messages from other nodes and from storage fills are
//! offered the same way. Whoever makes a line ready hands its messages out (usually the Send
//! itself, with nothing to wait for).

use std::sync::Arc;

use parley_proto::ErrorCode;
use parley_proto::codec::server::encode_server;
use parley_proto::{ServerBody, ServerFrame};
use parley_storage::Storage;
use parley_types::{Conversation, ConversationId, Message, MessageId, Position};
use tokio::time::Instant;

use crate::clock::Now;
use crate::event::{Class, Event};
use crate::media::Media;
use crate::state::conversations::Conversations;
use crate::state::fanout::{Fanout, SessionAck};
use crate::state::sequencer::{Filled, Next, Offer, Sequencer, Wake};

/// Messages read from storage per step of a fill.
const FILL_CHUNK: usize = 500;
/// How far back a new line in a cluster looks for messages it may have missed in flight: this
/// many at most, stored at most this long ago (by the storing node's clock).
const LOOK_BACK_MESSAGES: usize = 64;
const LOOK_BACK_MS: i64 = 10_000;

/// A message waiting in its line.
pub(crate) struct Queued {
    event: Event,
    conversation: Arc<Conversation>,
    ack: Option<SessionAck>,
}

/// Ordered delivery of messages (and the Acks of their Sends).
pub(crate) struct Delivery {
    pub(crate) fanout: Fanout,
    pub(crate) lines: Sequencer<Queued>,
    storage: Arc<dyn Storage>,
    conversations: Arc<Conversations>,
    /// Signs the URLs of media in messages read from storage.
    media: Arc<Media>,
}

/// A local append announced to its line; dropped without [`Delivery::offer_local`] (the append
/// failed), it tells the line nothing is coming.
pub(crate) struct InFlight {
    delivery: Arc<Delivery>,
    conversation: ConversationId,
    armed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Offer::Drain = self
            .delivery
            .lines
            .cancel(self.conversation, Instant::now())
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (delivery, conversation) = (self.delivery.clone(), self.conversation);
            rt.spawn(async move { delivery.drain(conversation).await });
        }
    }
}

impl Delivery {
    /// `sees_every_append`: this node is alone (no other node appends to its conversations).
    pub(crate) fn new(
        fanout: Fanout,
        storage: Arc<dyn Storage>,
        conversations: Arc<Conversations>,
        sees_every_append: bool,
        media: Arc<Media>,
    ) -> Self {
        Self {
            fanout,
            lines: Sequencer::new(sees_every_append),
            storage,
            conversations,
            media,
        }
    }

    /// A local append of `conversation` begins.
    pub(crate) fn begin(self: &Arc<Self>, conversation: ConversationId) -> InFlight {
        self.lines.begin(conversation, Instant::now());
        InFlight {
            delivery: self.clone(),
            conversation,
            armed: true,
        }
    }

    /// The stored message of an append announced by `in_flight`: delivered to the participants'
    /// sessions in line, and `ack` to the sending session (a retry's Ack too, if the message
    /// went out already).
    pub(crate) async fn offer_local(
        self: &Arc<Self>,
        mut in_flight: InFlight,
        conversation: Arc<Conversation>,
        seq: u64,
        event: Event,
        ack: Option<SessionAck>,
    ) {
        in_flight.armed = false;
        let item = Queued {
            event,
            conversation,
            ack,
        };
        self.offer(seq, item, true).await;
    }

    /// A message from another node.
    pub(crate) async fn offer_remote(
        self: &Arc<Self>,
        conversation: Arc<Conversation>,
        seq: u64,
        event: Event,
    ) {
        let item = Queued {
            event,
            conversation,
            ack: None,
        };
        self.offer(seq, item, false).await;
    }

    async fn offer(self: &Arc<Self>, seq: u64, item: Queued, local: bool) {
        let conversation = item.conversation.id;
        match self
            .lines
            .offer(conversation, seq, item, local, Instant::now())
        {
            Offer::Drain => self.drain(conversation).await,
            Offer::Held(wake) => self.arrange(conversation, wake),
            Offer::Duplicate(item) => {
                if let Some(ack) = item.ack {
                    self.fanout.ack_only(ack).await;
                }
            }
            Offer::Unordered(item) => self.hand_out(item).await,
        }
    }

    /// Hands out the line's ready messages, in order.
    async fn drain(self: &Arc<Self>, conversation: ConversationId) {
        loop {
            match self.lines.next(conversation, Instant::now()) {
                Next::Item(_, item) => self.hand_out(item).await,
                Next::Idle(wake) => return self.arrange(conversation, wake),
            }
        }
    }

    async fn hand_out(&self, item: Queued) {
        let users = item.conversation.participants.iter().map(String::as_str);
        self.fanout.send_message(users, item.event, item.ack).await;
    }

    /// Wakes the line at `at` (a timer task).
    fn arrange(self: &Arc<Self>, conversation: ConversationId, at: Option<Instant>) {
        let Some(at) = at else { return };
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            this.woken(conversation).await;
        });
    }

    async fn woken(self: &Arc<Self>, conversation: ConversationId) {
        let mut wake = self.lines.wake(conversation, Instant::now());
        let how = match wake {
            Wake::Fill { after, up_to } => Some(self.fill(conversation, after, up_to).await),
            Wake::LookBack { below } => Some(self.look_back(conversation, below).await),
            _ => None,
        };
        if let Some(how) = how {
            wake = self.lines.filled(conversation, how, Instant::now());
        }
        match wake {
            Wake::Drain => self.drain(conversation).await,
            Wake::Later(at) => self.arrange(conversation, Some(at)),
            Wake::Nothing | Wake::Fill { .. } | Wake::LookBack { .. } => {}
        }
    }

    /// Offers the messages below `below` stored within the last [`LOOK_BACK_MS`] (at most
    /// [`LOOK_BACK_MESSAGES`]): a new line in a cluster may have missed them in flight.
    async fn look_back(&self, conversation: ConversationId, below: u64) -> Filled {
        let c = match self.participants(conversation).await {
            Ok(c) => c,
            Err(how) => return how,
        };
        let from = below.saturating_sub(LOOK_BACK_MESSAGES as u64 + 1);
        let want = usize::try_from(below - 1 - from).unwrap_or(LOOK_BACK_MESSAGES);
        let batch = match self.read_after(conversation, from, want).await {
            Ok(batch) => batch,
            Err(how) => return how,
        };
        let since = Now::get().wall_ms - LOOK_BACK_MS;
        for m in batch {
            if m.seq < below && m.created_at_ms >= since {
                self.offer_stored(&c, m);
            }
        }
        Filled::Read
    }

    /// Reads seqs `after + 1 ..= up_to` from storage into the line.
    async fn fill(&self, conversation: ConversationId, after: u64, up_to: u64) -> Filled {
        let c = match self.participants(conversation).await {
            Ok(c) => c,
            Err(how) => return how,
        };
        let mut from = after;
        while from < up_to {
            let want = usize::try_from(up_to - from)
                .unwrap_or(usize::MAX)
                .min(FILL_CHUNK);
            let batch = match self.read_after(conversation, from, want).await {
                Ok(batch) => batch,
                Err(how) => return how,
            };
            let n = batch.len();
            for m in batch.into_iter().take_while(|m| m.seq <= up_to) {
                from = m.seq;
                self.offer_stored(&c, m);
            }
            if n < want {
                break;
            }
        }
        Filled::Read
    }

    /// The conversation to fill (gone: nothing to fill, `Filled::Read`).
    async fn participants(
        &self,
        conversation: ConversationId,
    ) -> Result<Arc<Conversation>, Filled> {
        match self.conversations.get(conversation).await {
            Ok(c) => Ok(c),
            Err(e) if e.code == ErrorCode::NotFound => Err(Filled::Read),
            Err(_) => Err(Filled::Failed),
        }
    }

    async fn read_after(
        &self,
        conversation: ConversationId,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, Filled> {
        let after = Position {
            seq,
            id: MessageId(0),
        };
        let read = self.storage.messages_after(conversation, after, limit);
        read.await.map_err(|_| Filled::Failed)
    }

    /// Offers a message read from storage to its line (filling: it is held, or a repeat, until
    /// the fill is done).
    fn offer_stored(&self, c: &Arc<Conversation>, mut m: Message) {
        let seq = m.seq;
        self.media.show(&mut m, crate::clock::wall_ms());
        let item = Queued {
            event: message_event(m, true),
            conversation: c.clone(),
            ack: None,
        };
        let _ = self.lines.offer(c.id, seq, item, false, Instant::now());
    }
}

/// The MessageNew event of a stored message; with `hidden`, also the frame for users with a
/// block with its sender (see `Event::hidden`).
pub(crate) fn message_event(m: Message, hidden: bool) -> Event {
    let class = Class::Message {
        conversation: m.conversation,
        seq: m.seq,
    };
    let hidden =
        hidden.then(|| encode_server(&ServerFrame::push(ServerBody::MessageNew(m.hidden()))));
    let sender = m.sender.clone();
    let mut event = Event::new(ServerBody::MessageNew(m), class).by(sender);
    event.hidden = hidden;
    event
}
