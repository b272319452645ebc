//! A shard: one OS thread, one current-thread Tokio runtime, its own SO_REUSEPORT listener, and
//! the sessions it accepted, for their whole life. Other shards reach its sessions only through
//! its bounded inbox.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::node::Node;
use crate::outbox::{Outbox, Pushed};
use crate::state::admission::Admitted;
use crate::state::fanout::{Delivery, SessionAck};
use crate::state::routes::session_id;

/// Deliveries a shard takes from its inbox per wake-up.
const INBOX_BATCH: usize = 256;

/// This shard's sessions by user: (session id, outbox).
type LocalSessions = HashMap<Arc<str>, Vec<(u64, Rc<Outbox>)>>;

/// Shard-local state. `Rc`: it never leaves its thread.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) node: Arc<Node>,
    /// Flips to `true` once: stop accepting, tell sessions to go.
    pub(crate) shutdown: watch::Receiver<bool>,
    sessions: RefCell<LocalSessions>,
    next_session: Cell<u64>,
    /// Open connections (HTTP or upgraded), for draining at shutdown.
    pub(crate) connections: Cell<usize>,
}

impl Shard {
    pub(crate) fn new(id: usize, node: Arc<Node>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            id,
            node,
            shutdown,
            sessions: RefCell::new(HashMap::new()),
            next_session: Cell::new(0),
            connections: Cell::new(0),
        }
    }

    /// A session id unique on this node and across a cluster ([`session_id`]).
    pub(crate) fn new_session_id(&self) -> u64 {
        let n = self.next_session.get() + 1;
        self.next_session.set(n);
        session_id(self.node.limits.node_id, self.id, n)
    }

    pub(crate) fn register(&self, user: &Arc<str>, session: u64, outbox: Rc<Outbox>) {
        self.sessions
            .borrow_mut()
            .entry(user.clone())
            .or_default()
            .push((session, outbox));
    }

    pub(crate) fn unregister(&self, user: &str, session: u64) {
        let mut sessions = self.sessions.borrow_mut();
        if let Some(list) = sessions.get_mut(user) {
            list.retain(|(id, _)| *id != session);
            if list.is_empty() {
                sessions.remove(user);
            }
        }
    }

    /// Hands an Ack to its session (in line with the conversation's messages).
    fn deliver_ack(&self, ack: &SessionAck) {
        let sessions = self.sessions.borrow();
        let outbox = sessions
            .get(&ack.user)
            .and_then(|list| list.iter().find(|(id, _)| *id == ack.session));
        if let Some((_, outbox)) = outbox {
            let metrics = self.node.metrics.shard(self.id);
            match outbox.push_ack(ack.frame.clone(), ack.conversation, ack.seq) {
                Pushed::Queued => metrics.frames_out(parley_proto::FrameKind::Ack, 1),
                Pushed::Overflow => metrics.slow_consumer(),
                Pushed::Gap => metrics.resync(),
                Pushed::Dropped | Pushed::Repeat | Pushed::Closed => {}
            }
        }
    }

    /// Hands one delivery's frame to each local session of its users.
    pub(crate) fn deliver(&self, d: &Delivery) {
        if let Some(ack) = &d.ack {
            self.deliver_ack(ack);
        }
        if d.ack_only {
            return;
        }
        let metrics = self.node.metrics.shard(self.id);
        let sessions = self.sessions.borrow();
        let mut queued = 0;
        for user in &d.users {
            let Some(list) = sessions.get(user) else {
                continue;
            };
            for (id, outbox) in list {
                if Some(*id) == d.exclude_session {
                    continue;
                }
                let pushed = if d.kind.may_be_datagram() {
                    outbox.push_datagram(d.frame.clone(), d.class)
                } else {
                    outbox.push(d.frame.clone(), d.class)
                };
                match pushed {
                    Pushed::Queued => queued += 1,
                    Pushed::Dropped => metrics.dropped_ephemeral(),
                    Pushed::Overflow => metrics.slow_consumer(),
                    Pushed::Gap => metrics.resync(),
                    Pushed::Repeat | Pushed::Closed => {}
                }
                if let Some(code) = d.close {
                    outbox.close(code);
                }
            }
        }
        metrics.delivered(queued);
        metrics.frames_out(d.kind, queued);
        if let Some(t) = d.received_at
            && queued > 0
        {
            self.node.metrics.send_to_deliver.observe(t.elapsed());
        }
    }

    /// Drains the inbox until every sender is gone.
    pub(crate) async fn run_inbox(self: Rc<Self>, mut rx: mpsc::Receiver<Delivery>) {
        let mut batch = Vec::with_capacity(INBOX_BATCH);
        while rx.recv_many(&mut batch, INBOX_BATCH).await > 0 {
            for d in batch.drain(..) {
                self.deliver(&d);
            }
        }
    }
}

/// Counts a connection as open on its shard until dropped (for draining at shutdown), and
/// holds its place in the node's admission count (shared by an HTTP connection and the
/// WebSocket upgraded from it).
pub(crate) struct ConnGuard {
    shard: Rc<Shard>,
    _admitted: Rc<Admitted>,
}

impl ConnGuard {
    pub(crate) fn new(shard: &Rc<Shard>, admitted: Rc<Admitted>) -> Self {
        shard.connections.set(shard.connections.get() + 1);
        Self {
            shard: shard.clone(),
            _admitted: admitted,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shard.connections.set(self.shard.connections.get() - 1);
    }
}
