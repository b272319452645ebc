//! Counting for spam rules: how many distinct conversations one sender put the same (or
//! near-same) text into within a window. One node counts in memory; a cluster counts in Redis
//! through the bus (`chat` plugs that in), so spreading the same text over several nodes does
//! not escape it.

use std::sync::Mutex;

use async_trait::async_trait;
use dashmap::DashMap;

/// A windowed set counter: `add` puts `member` in the set `key` at `now_ms`, forgets members
/// older than `window_ms`, and says how many distinct members are left.
#[async_trait]
pub(crate) trait Counter: Send + Sync {
    async fn add(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, String>;
}

/// Keys kept before the oldest are dropped wholesale (a memory bound).
const MAX_KEYS: usize = 100_000;
/// Members kept per key (past a rule's threshold, more do not change a decision).
const MAX_MEMBERS: usize = 1_000;

/// The counter of a node on its own.
#[derive(Default)]
pub(crate) struct LocalCounter {
    sets: DashMap<String, Mutex<Vec<(String, i64)>>>,
}

#[async_trait]
impl Counter for LocalCounter {
    async fn add(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, String> {
        if self.sets.len() >= MAX_KEYS && !self.sets.contains_key(key) {
            self.sets.retain(|_, set| {
                let set = set.get_mut().unwrap_or_else(|e| e.into_inner());
                set.iter().any(|(_, at)| *at > now_ms - window_ms)
            });
            if self.sets.len() >= MAX_KEYS {
                self.sets.clear();
            }
        }
        let entry = self.sets.entry(key.to_owned()).or_default();
        let mut set = entry.lock().unwrap_or_else(|e| e.into_inner());
        set.retain(|(_, at)| *at > now_ms - window_ms);
        match set.iter().position(|(m, _)| m == member) {
            Some(i) => set[i].1 = now_ms,
            None if set.len() < MAX_MEMBERS => set.push((member.to_owned(), now_ms)),
            None => {}
        }
        Ok(set.len() as u64)
    }
}

/// The fingerprint of a text for "the same or near-same": its folded letters only (digits,
/// spaces, punctuation and emoji dropped, so "Great deal!! 1" and "great deal 2" are the same),
/// hashed; None when it has fewer than `min_letters` letters (short texts repeat innocently).
pub(crate) fn fingerprint(folded: &str, min_letters: usize) -> Option<String> {
    let letters: String = folded.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.chars().count() < min_letters {
        return None;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, letters.as_bytes());
    Some(
        digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn distinct_members_within_the_window_are_counted() {
        let c = LocalCounter::default();
        assert_eq!(c.add("k", "c1", 1_000, 100).await, Ok(1));
        assert_eq!(c.add("k", "c1", 1_010, 100).await, Ok(1));
        assert_eq!(c.add("k", "c2", 1_020, 100).await, Ok(2));
        assert_eq!(c.add("other", "c3", 1_020, 100).await, Ok(1));
        // c1 (last at 1 010) is out of the window at 1 111.
        assert_eq!(c.add("k", "c3", 1_111, 100).await, Ok(2));
    }

    #[test]
    fn near_same_texts_share_a_fingerprint() {
        let f = |t: &str| fingerprint(t, 10);
        assert_eq!(
            f("great deal!! visit my shop 1"),
            f("great deal visit my shop 22 🙂")
        );
        assert_ne!(
            f("great deal visit my shop"),
            f("great deal visit her shop")
        );
        assert_eq!(f("ok 123"), None);
    }
}
