//! Per-user rates, shared by every session and REST request on this node: sends, and REST
//! requests of any kind.

use std::sync::Arc;

use dashmap::DashMap;
use parley_proto::ErrorCode;
use tokio::time::Instant;

use crate::errors::ClientError;
use crate::ratelimit::TokenBucket;

/// Token buckets by user (sends, REST requests, group creation).
pub(crate) struct UserLimiter {
    buckets: DashMap<Arc<str>, TokenBucket>,
    rate: f64,
    burst: u32,
    refusal: &'static str,
}

impl UserLimiter {
    /// A limiter of sends.
    pub(crate) fn new(per_sec: f64, burst: u32) -> Self {
        Self::with_refusal(per_sec, burst, "sending too fast; slow down")
    }

    /// A limiter that refuses with `refusal`.
    pub(crate) fn with_refusal(per_sec: f64, burst: u32, refusal: &'static str) -> Self {
        Self {
            buckets: DashMap::new(),
            rate: per_sec,
            burst,
            refusal,
        }
    }

    /// Takes a token for `user`, or refuses with `RateLimited`.
    pub(crate) fn take(&self, user: &Arc<str>, now: Instant) -> Result<(), ClientError> {
        let mut bucket = self
            .buckets
            .entry(user.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now));
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(ClientError::new(ErrorCode::RateLimited, self.refusal))
        }
    }
}
