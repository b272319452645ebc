//! What both indexers read from storage: every message of every conversation, a page at a time
//! (rebuilds), and the participants of the conversations a batch names, cached within a
//! bound.

use std::collections::HashMap;
use std::sync::Arc;

use parley_storage::{Storage, StorageError};
use parley_types::{ConversationId, Message, Position};

/// Conversations and messages read per call while scanning.
const SCAN_PAGE: usize = 500;
/// Participant ids kept, over all conversations cached (then all are forgotten): a bound on
/// an indexer's memory whatever the groups' sizes.
const PARTICIPANTS_CACHED: usize = 1_000_000;

/// A conversation's participants, shared by its messages.
pub(crate) type Participants = Arc<Vec<String>>;

/// Rebuild progress: conversations and messages scanned so far.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) conversations: u64,
    pub(crate) messages: u64,
}

/// Every message of every conversation in storage, in the engine's scan order.
pub(crate) struct Scan<'a> {
    storage: &'a dyn Storage,
    after: Option<ConversationId>,
    waiting: std::vec::IntoIter<parley_types::Conversation>,
    /// The conversation being read and the last seq read in it.
    current: Option<(ConversationId, Participants, u64)>,
    pub(crate) scanned: Scanned,
}

/// One page of a conversation's messages (empty when `finished` and nothing was left).
pub(crate) struct ScanPage {
    pub(crate) conversation: ConversationId,
    pub(crate) participants: Participants,
    pub(crate) messages: Vec<Message>,
    /// The conversation is done: the last seq scanned in it (0: none).
    pub(crate) finished: Option<u64>,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(storage: &'a dyn Storage) -> Self {
        Self {
            storage,
            after: None,
            waiting: Vec::new().into_iter(),
            current: None,
            scanned: Scanned::default(),
        }
    }

    /// The next page, `None` once every conversation was read.
    pub(crate) async fn next(&mut self) -> Result<Option<ScanPage>, StorageError> {
        loop {
            if let Some((id, participants, from)) = &mut self.current {
                let at = Position {
                    seq: *from,
                    id: Default::default(),
                };
                let messages = self.storage.messages_after(*id, at, SCAN_PAGE).await?;
                let page = ScanPage {
                    conversation: *id,
                    participants: participants.clone(),
                    finished: None,
                    messages,
                };
                if let Some(last) = page.messages.last() {
                    *from = last.seq;
                    self.scanned.messages += page.messages.len() as u64;
                    return Ok(Some(page));
                }
                let finished = Some(*from);
                self.current = None;
                self.scanned.conversations += 1;
                return Ok(Some(ScanPage { finished, ..page }));
            }
            match self.waiting.next() {
                Some(c) => self.current = Some((c.id, Arc::new(c.participants), 0)),
                None => {
                    let page = self
                        .storage
                        .conversations_after(self.after, SCAN_PAGE)
                        .await?;
                    let Some(last) = page.last() else {
                        return Ok(None);
                    };
                    self.after = Some(last.id);
                    self.waiting = page.into_iter();
                }
            }
        }
    }
}

/// Participants of the conversations seen (`None`: deleted), and how many ids that holds.
#[derive(Default)]
pub(crate) struct ParticipantCache {
    by_conversation: HashMap<ConversationId, Option<Participants>>,
    ids: usize,
}

impl ParticipantCache {
    /// Reads from storage the conversations among `ids` not cached yet.
    pub(crate) async fn load(
        &mut self,
        storage: &dyn Storage,
        ids: &[ConversationId],
    ) -> Result<(), StorageError> {
        for &c in ids {
            if self.by_conversation.contains_key(&c) {
                continue;
            }
            let found = storage
                .conversation(c)
                .await?
                .map(|c| Arc::new(c.participants));
            let n = found.as_ref().map_or(1, |f| f.len());
            if self.ids + n > PARTICIPANTS_CACHED {
                self.by_conversation.clear();
                self.ids = 0;
            }
            self.ids += n;
            self.by_conversation.insert(c, found);
        }
        Ok(())
    }

    /// A conversation's participants, if cached and not deleted.
    pub(crate) fn get(&self, c: &ConversationId) -> Option<&Participants> {
        self.by_conversation.get(c).and_then(Option::as_ref)
    }

    /// The conversation was deleted.
    pub(crate) fn forget(&mut self, c: ConversationId) {
        self.by_conversation.insert(c, None);
    }
}
