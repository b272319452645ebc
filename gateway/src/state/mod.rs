//! The node-wide state the chat operations use, one job per part; each is `Send + Sync` and
//! lock-free or sharded-lock, and none holds a lock across `.await`.
//!
//! - [`admission::Admission`]: how many connections the node, and each address, may have.
//! - [`routes::Routes`]: which shards each user's sessions are on (and local presence).
//! - [`conversations::Conversations`]: the conversation cache and its rule (participants only).
//! - [`blocks::Blocks`]: who has a block with whom (cached; events skip those users).
//! - [`standings::Standings`]: where each user stands with the moderators (cached).
//! - [`limiter::UserLimiter`]: per-user send rate.
//! - [`fanout::Fanout`]: one push per shard inbox for an event encoded once.
//! - [`sequencer::Sequencer`]: per conversation, messages handed out in seq order, each once
//!   (the bookkeeping; `chat::delivery` drives it).

pub(crate) mod admission;
pub(crate) mod blocks;
pub(crate) mod conversations;
pub(crate) mod fanout;
pub(crate) mod limiter;
mod per_user;
pub(crate) mod routes;
pub(crate) mod sequencer;
pub(crate) mod standings;
