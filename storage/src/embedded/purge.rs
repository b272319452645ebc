//! Deleting a conversation's messages off the writer's path.
//!
//! A delete commits, in the writer's batch, what makes the conversation gone (its record, its
//! head, its members, its direct triple) and a marker in `purge`. Its messages, idempotency
//! keys and watermarks are unreachable from then on (every read starts from the conversation
//! record) and this thread removes them in chunks of [`CHUNK`] keys, each its own small batch,
//! so deleting a 100 000-message conversation never holds the writer (it held it for 765 ms,
//! stalling every other user's send). The marker goes with the last chunk; after a crash the
//! thread starts again from the markers it finds.

use std::sync::mpsc::{Receiver, TryRecvError};

use fjall::{Database, OwnedWriteBatch};
use parley_types::ConversationId;

use super::{Keyspaces, keys};

/// Keys removed per batch.
const CHUNK: usize = 1000;

pub(super) struct Purger {
    pub(super) db: Database,
    pub(super) ks: Keyspaces,
}

/// Why a purge stopped before its end.
enum Stop {
    /// The writer is gone (the database is closing): leave the rest for the next start.
    Closing,
    Failed(fjall::Error),
}

impl From<fjall::Error> for Stop {
    fn from(e: fjall::Error) -> Self {
        Stop::Failed(e)
    }
}

impl Purger {
    /// Purges every marked conversation, then waits for the writer's next kick; returns when
    /// the writer has dropped its end of `kicks`.
    pub(super) fn run(self, kicks: Receiver<()>) {
        loop {
            match self.purge_marked(&kicks) {
                Ok(()) => {}
                Err(Stop::Closing) => return,
                Err(Stop::Failed(e)) => {
                    tracing::error!(error = %e, "storage: purging deleted conversations failed");
                }
            }
            if kicks.recv().is_err() {
                return;
            }
        }
    }

    /// Until no marker is left (deletes committed meanwhile included).
    fn purge_marked(&self, kicks: &Receiver<()>) -> Result<(), Stop> {
        loop {
            let marked: Vec<Vec<u8>> = self
                .ks
                .purge
                .iter()
                .map(|g| g.key().map(|k| k.to_vec()))
                .collect::<Result<_, _>>()?;
            if marked.is_empty() {
                return Ok(());
            }
            self.purge_all(marked, kicks)?;
        }
    }

    fn purge_all(&self, marked: Vec<Vec<u8>>, kicks: &Receiver<()>) -> Result<(), Stop> {
        for marker in marked {
            let Ok(bytes) = <[u8; 16]>::try_from(marker.as_slice()) else {
                tracing::error!(key = ?marker, "storage: malformed purge marker; dropping it");
                self.ks.purge.remove(marker)?;
                continue;
            };
            let conversation = ConversationId(uuid::Uuid::from_bytes(bytes));
            self.purge(conversation, kicks)?;
        }
        Ok(())
    }

    /// Removes one conversation's keys chunk by chunk, then its marker.
    fn purge(&self, conversation: ConversationId, kicks: &Receiver<()>) -> Result<(), Stop> {
        let prefix = keys::conversation_prefix(conversation);
        loop {
            if matches!(kicks.try_recv(), Err(TryRecvError::Disconnected)) {
                return Err(Stop::Closing);
            }
            let mut batch = OwnedWriteBatch::with_capacity(self.db.clone(), CHUNK);
            let mut n = 0;
            for ks in [&self.ks.msg, &self.ks.idem, &self.ks.read] {
                for guard in ks.prefix(&prefix).take(CHUNK - n) {
                    batch.remove(ks, guard.key()?);
                    n += 1;
                }
            }
            if n == 0 {
                batch.remove(&self.ks.purge, keys::conversation(conversation));
            }
            batch.commit()?;
            if n == 0 {
                return Ok(());
            }
        }
    }
}
