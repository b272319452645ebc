//! The node-wide state the chat operations use, one job per part; each is `Send + Sync` and
//! lock-free or sharded-lock, and none holds a lock across `.await`.
//!
//! - [`routes::Routes`]: which shards each user's sessions are on (and local presence).
//! - [`conversations::Conversations`]: the conversation cache and its rule (participants only).
//! - [`limiter::SendLimiter`]: per-user send rate.
//! - [`fanout::Fanout`]: one push per shard inbox for an event encoded once.
//! - [`delivered::Delivered`]: message ids delivered recently (exactly-once live delivery per
//!   node).

pub(crate) mod conversations;
pub(crate) mod delivered;
pub(crate) mod fanout;
pub(crate) mod limiter;
pub(crate) mod routes;
