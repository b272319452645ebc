//! Finding one's conversations by what they are about: a query's words (folded like message
//! text) must each start a word of the conversation's text — the counterpart's or the other
//! members' ids, the listing id, the group's title, the last message. Conversations are few per
//! user (hundreds), so they are matched as they are listed, not indexed.

use parley_types::{ConversationKind, ConversationSummary};

use super::analyzer::terms;
use super::query::MAX_QUERY_CHARS;

/// Participants of a group whose ids are matched (the first ones).
const MAX_MEMBERS_MATCHED: usize = 100;

/// A parsed conversation query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConversationQuery {
    words: Vec<String>,
}

impl ConversationQuery {
    /// Parses `q`; an error names what is wrong with it.
    pub(crate) fn parse(q: &str) -> Result<Self, String> {
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(format!("q is longer than {MAX_QUERY_CHARS} characters"));
        }
        let words = terms(q);
        if words.is_empty() {
            return Err("q has no words to search for".into());
        }
        Ok(Self { words })
    }

    /// Whether `s` (as `user` sees it) matches: every word starts some word of its text.
    pub(crate) fn matches(&self, s: &ConversationSummary, user: &str) -> bool {
        let mut text = String::new();
        let c = &s.conversation;
        match &c.kind {
            ConversationKind::Direct {
                buyer,
                seller,
                listing,
            } => {
                for side in [buyer, seller] {
                    if side != user {
                        text.push_str(side);
                        text.push(' ');
                    }
                }
                text.push_str(listing);
            }
            ConversationKind::Group { title, .. } => {
                text.push_str(title);
                for p in c.participants.iter().take(MAX_MEMBERS_MATCHED) {
                    if p != user {
                        text.push(' ');
                        text.push_str(p);
                    }
                }
            }
        }
        if let Some(m) = &s.last_message {
            text.push(' ');
            text.push_str(&m.content);
        }
        let have = terms(&text);
        self.words
            .iter()
            .all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_types::{Conversation, ConversationId, Message, MessageId, MessageKind};

    fn summary(
        kind: ConversationKind,
        participants: &[&str],
        last: Option<&str>,
    ) -> ConversationSummary {
        let id = ConversationId::random();
        ConversationSummary {
            conversation: Conversation::new(
                id,
                kind,
                participants.iter().map(|p| p.to_string()).collect(),
                1,
            ),
            last_message: last.map(|t| Message {
                id: MessageId(1),
                conversation: id,
                sender: "x".into(),
                kind: MessageKind::Text,
                content: t.into(),
                media: None,
                client_msg_id: "c".into(),
                created_at_ms: 1,
                seq: 1,
                visibility: Default::default(),
            }),
            unread: 0,
        }
    }

    #[test]
    fn counterparts_listings_titles_and_last_messages_match_by_word_prefixes() {
        let direct = summary(
            ConversationKind::Direct {
                buyer: "alice".into(),
                seller: "bob-toys".into(),
                listing: "lego-castle-42".into(),
            },
            &["alice", "bob-toys"],
            Some("Is it still available? Très bien"),
        );
        let group = summary(
            ConversationKind::Group {
                title: "Train Collectors".into(),
                creator: "carol".into(),
            },
            &["carol", "alice", "dave"],
            None,
        );
        let q = |s: &str| ConversationQuery::parse(s).expect("parses");
        assert!(q("bob").matches(&direct, "alice"));
        assert!(q("castle 42").matches(&direct, "alice"));
        assert!(q("LEGO cas").matches(&direct, "alice"));
        assert!(q("tres avail").matches(&direct, "alice"));
        assert!(!q("alice").matches(&direct, "alice"), "not by my own id");
        assert!(q("alice").matches(&direct, "bob-toys"));
        assert!(!q("castle dragon").matches(&direct, "alice"), "every word");
        assert!(q("train coll").matches(&group, "alice"));
        assert!(q("dave").matches(&group, "alice"));
        assert!(!q("castle").matches(&group, "alice"));
        assert!(ConversationQuery::parse(" !! ").is_err());
    }
}
