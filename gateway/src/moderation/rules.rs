//! The rules file: parsed, checked and compiled at load (a file that fails any check is refused
//! whole, with the reason), then matched against every message's [`Seen`] text.
//!
//! ```json
//! { "rules": [
//!   { "id": "payment-off-site", "action": "bounce",
//!     "message": "Please keep payments on the marketplace.",
//!     "terms": ["western union", "wire transfer", "pay outside"] },
//!   { "id": "contact-early", "action": "flag", "contact_details": true, "first_messages": 3 },
//!   { "id": "phishing", "action": "shadow", "link_domains": ["bit.ly", "scam.example"] },
//!   { "id": "own-links", "action": "allow", "link_domains": ["marketplace.example"] },
//!   { "id": "wallets", "action": "flag", "regex": ["\\b(bc1|[13])[a-km-z1-9]{25,34}\\b"] }
//! ] }
//! ```
//!
//! A rule matches when any of its matchers does (`terms`: whole words or phrases of the folded
//! text; `regex`: patterns over the folded text; `link_domains`: a link to one of these
//! domains or their subdomains; `links_except`: a link to any other domain; `contact_details`:
//! an e-mail address or phone number; `link_only`: nothing but links) and its condition holds
//! (`first_messages: n`: only among a conversation's first `n` messages). Rules run in file
//! order; an `allow` match ends the check (an exception, listed before what it exempts from);
//! otherwise the most severe action of the matches wins: bounce > hold > shadow > flag.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use regex::RegexSet;
use serde::Deserialize;

use super::text::{Seen, fold};

/// What a matching rule does to the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// Delivered as usual; nothing after it is checked.
    Allow,
    /// Delivered, and filed as a report for moderators.
    Flag,
    /// Stored for its sender only (shadow): they see it as sent, nobody else gets it.
    Shadow,
    /// Kept with a report for moderators, not in the conversation, until one releases it
    /// (the sender gets error `held` with the rule's message).
    Hold,
    /// Refused with error `moderated` and the rule's message; nothing stored.
    Bounce,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Shadow => "shadow",
            Action::Hold => "hold",
            Action::Bounce => "bounce",
        }
    }
}

/// Largest rules file read.
pub(crate) const MAX_FILE_BYTES: u64 = 16 << 20;
/// Compiled size allowed per rule's regex set.
const REGEX_SIZE_LIMIT: usize = 8 << 20;
/// What a bounce says when its rule has no message.
const DEFAULT_BOUNCE: &str = "This message breaks the chat rules and was not sent.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    rules: Vec<Spec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    id: String,
    action: Action,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    terms: Vec<String>,
    #[serde(default)]
    regex: Vec<String>,
    #[serde(default)]
    link_domains: Vec<String>,
    #[serde(default)]
    links_except: Vec<String>,
    #[serde(default)]
    contact_details: bool,
    #[serde(default)]
    link_only: bool,
    #[serde(default)]
    first_messages: Option<u64>,
    #[serde(default)]
    same_text: Option<SameTextSpec>,
    #[serde(default)]
    classifier: Option<ClassifierSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifierSpec {
    min_score: f32,
    #[serde(default)]
    fail: FailMode,
}

/// What a classifier rule does when the classifier gives no score (down, slow, busy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FailMode {
    /// The rule does not match: messages go on unchecked.
    #[default]
    Open,
    /// The rule matches: nothing unchecked gets through.
    Closed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SameTextSpec {
    conversations: u64,
    window_secs: u64,
    #[serde(default = "default_min_letters")]
    min_letters: usize,
}

fn default_min_letters() -> usize {
    12
}

/// "The same sender put this text into `conversations` conversations within the window."
struct SameText {
    conversations: u64,
    window_ms: i64,
    min_letters: usize,
}

/// One compiled rule.
struct Rule {
    id: Arc<str>,
    action: Action,
    message: Arc<str>,
    terms: Option<AhoCorasick>,
    regex: Option<RegexSet>,
    link_domains: Vec<String>,
    links_except: Option<Vec<String>>,
    contact_details: bool,
    link_only: bool,
    first_messages: Option<u64>,
    same_text: Option<SameText>,
    /// The score at or above which it matches, and what no score means.
    classifier: Option<(f32, FailMode)>,
}

/// The decision on one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) rule: Arc<str>,
    pub(crate) action: Action,
    /// For the sender (bounces).
    pub(crate) message: Arc<str>,
}

/// What a rule is checked against besides the text.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    /// Messages in the conversation before this one.
    pub(crate) earlier_messages: u64,
    /// For `same_text` rules, by rule position: the conversations the sender put this text
    /// into within the rule's window (this one included).
    pub(crate) same_text: Vec<(usize, u64)>,
    /// The classifier's score (`Some(None)`: it gave none; `None`: not asked).
    pub(crate) classifier: Option<Option<f32>>,
}

/// A counter a `same_text` rule needs fed for a message: the rule's position, the key (rule,
/// sender, text fingerprint) and the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SameTextCount {
    pub(crate) rule: usize,
    pub(crate) key: String,
    pub(crate) window_ms: i64,
}

/// A loaded rules file.
#[derive(Default)]
pub(crate) struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Parses and compiles a rules file, or says what is wrong with it.
    pub(crate) fn parse(json: &[u8]) -> Result<Self, String> {
        let file: File =
            serde_json::from_slice(json).map_err(|e| format!("not a rules file: {e}"))?;
        let mut seen = std::collections::HashSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for spec in file.rules {
            let id = spec.id.clone();
            if !seen.insert(id.clone()) {
                return Err(format!("rule {id:?} appears twice"));
            }
            rules.push(Rule::compile(spec).map_err(|e| format!("rule {id:?}: {e}"))?);
        }
        Ok(Self { rules })
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether a rule asks the classifier.
    pub(crate) fn uses_classifier(&self) -> bool {
        self.rules.iter().any(|r| r.classifier.is_some())
    }

    /// The counters this message feeds (`same_text` rules, when the text is long enough).
    pub(crate) fn same_text_counts(&self, seen: &Seen, sender: &str) -> Vec<SameTextCount> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let Some(st) = &r.same_text else { continue };
            if let Some(fp) = super::spam::fingerprint(&seen.folded, st.min_letters) {
                out.push(SameTextCount {
                    rule: i,
                    key: format!("spam:{}:{sender}:{fp}", r.id),
                    window_ms: st.window_ms,
                });
            }
        }
        out
    }

    /// Whether a rule with a `first_messages` condition matches the text (the caller then
    /// needs to know how many messages the conversation has).
    pub(crate) fn needs_history(&self, seen: &Seen, facts: &Facts) -> bool {
        self.rules
            .iter()
            .enumerate()
            .any(|(i, r)| r.first_messages.is_some() && r.matchers_match(i, seen, facts))
    }

    /// The decision on a message, if any rule matched.
    pub(crate) fn check(&self, seen: &Seen, facts: &Facts) -> Option<Verdict> {
        let mut best: Option<&Rule> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if best.is_some_and(|b| b.action >= rule.action) || !rule.matches(i, seen, facts) {
                continue;
            }
            if rule.action == Action::Allow {
                return Some(rule.verdict());
            }
            best = Some(rule);
        }
        best.map(Rule::verdict)
    }
}

impl Rule {
    fn compile(s: Spec) -> Result<Self, String> {
        let valid_id = !s.id.is_empty()
            && s.id.len() <= 64
            && s.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_id {
            return Err("an id is 1 to 64 characters of a-z, 0-9, '-', '_', '.'".into());
        }
        let matchers = !s.terms.is_empty()
            || !s.regex.is_empty()
            || !s.link_domains.is_empty()
            || !s.links_except.is_empty()
            || s.contact_details
            || s.link_only
            || s.same_text.is_some()
            || s.classifier.is_some();
        if !matchers {
            return Err(
                "no matcher (terms, regex, link_domains, links_except, contact_details, \
                 link_only, same_text, classifier)"
                    .into(),
            );
        }
        let same_text = match s.same_text {
            None => None,
            Some(st) => {
                if !(2..=1_000).contains(&st.conversations)
                    || !(1..=7 * 86_400).contains(&st.window_secs)
                    || !(1..=1_000).contains(&st.min_letters)
                {
                    return Err(
                        "same_text: conversations 2..=1000, window_secs 1..=604800, \
                         min_letters 1..=1000"
                            .into(),
                    );
                }
                Some(SameText {
                    conversations: st.conversations,
                    window_ms: (st.window_secs * 1000) as i64,
                    min_letters: st.min_letters,
                })
            }
        };
        let terms: Vec<String> = s.terms.iter().map(|t| fold(t).trim().to_owned()).collect();
        if terms.iter().any(String::is_empty) {
            return Err("an empty term".into());
        }
        let terms = match terms.is_empty() {
            true => None,
            false => Some(AhoCorasick::new(&terms).map_err(|e| format!("terms: {e}"))?),
        };
        let regex = match s.regex.is_empty() {
            true => None,
            false => Some(
                regex::RegexSetBuilder::new(&s.regex)
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("regex: {e}"))?,
            ),
        };
        let domains = |list: Vec<String>| -> Result<Vec<String>, String> {
            list.into_iter()
                .map(|d| {
                    let d = d.trim().trim_start_matches("www.").to_lowercase();
                    match d.contains('.') && !d.contains(['/', ' ', '@']) {
                        true => Ok(d),
                        false => Err(format!("{d:?} is not a domain")),
                    }
                })
                .collect()
        };
        let message = match (s.action, s.message) {
            (_, Some(m)) if m.trim().is_empty() || m.chars().count() > 500 => {
                return Err("a message is 1 to 500 characters".into());
            }
            (_, Some(m)) => m,
            (_, None) => DEFAULT_BOUNCE.to_owned(),
        };
        Ok(Rule {
            id: s.id.into(),
            action: s.action,
            message: message.into(),
            terms,
            regex,
            link_domains: domains(s.link_domains)?,
            links_except: match s.links_except.is_empty() {
                true => None,
                false => Some(domains(s.links_except)?),
            },
            contact_details: s.contact_details,
            link_only: s.link_only,
            first_messages: s.first_messages,
            same_text,
            classifier: match s.classifier {
                None => None,
                Some(c) if !(0.0..=1.0).contains(&c.min_score) => {
                    return Err("classifier: min_score is 0 to 1".into());
                }
                Some(c) => Some((c.min_score, c.fail)),
            },
        })
    }

    fn matches(&self, i: usize, seen: &Seen, facts: &Facts) -> bool {
        if self
            .first_messages
            .is_some_and(|n| facts.earlier_messages >= n)
        {
            return false;
        }
        self.matchers_match(i, seen, facts)
    }

    /// `i`: this rule's position (its `same_text` count in `facts`).
    fn matchers_match(&self, i: usize, seen: &Seen, facts: &Facts) -> bool {
        let repeated = self.same_text.as_ref().is_some_and(|st| {
            facts
                .same_text
                .iter()
                .any(|(rule, n)| *rule == i && *n >= st.conversations)
        });
        let in_list = |host: &str, list: &[String]| {
            list.iter().any(|d| {
                host == d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            })
        };
        let classified = self
            .classifier
            .is_some_and(|(min, fail)| match facts.classifier {
                Some(Some(score)) => score >= min,
                Some(None) => fail == FailMode::Closed,
                None => false,
            });
        repeated
            || classified
            || (self.contact_details && seen.emails + seen.phones > 0)
            || (self.link_only && seen.link_only)
            || (!self.link_domains.is_empty()
                && seen
                    .link_hosts
                    .iter()
                    .any(|h| in_list(h, &self.link_domains)))
            || self
                .links_except
                .as_ref()
                .is_some_and(|ok| seen.link_hosts.iter().any(|h| !in_list(h, ok)))
            || self
                .terms
                .as_ref()
                .is_some_and(|t| has_word(t, &seen.folded))
            || self
                .regex
                .as_ref()
                .is_some_and(|r| r.is_match(&seen.folded))
    }

    fn verdict(&self) -> Verdict {
        Verdict {
            rule: self.id.clone(),
            action: self.action,
            message: self.message.clone(),
        }
    }
}

/// Whether one of the terms occurs in `text` as whole words (not inside a longer word:
/// "ass" does not match "class").
fn has_word(terms: &AhoCorasick, text: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    terms.find_overlapping_iter(text).any(|m| {
        !word(text[..m.start()].chars().next_back()) && !word(text[m.end()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moderation::text::see;

    fn rules(json: &str) -> RuleSet {
        RuleSet::parse(json.as_bytes()).expect("rules")
    }

    fn decide(r: &RuleSet, text: &str, earlier: u64) -> Option<(String, Action)> {
        let facts = Facts {
            earlier_messages: earlier,
            ..Default::default()
        };
        r.check(&see(text), &facts)
            .map(|v| (v.rule.to_string(), v.action))
    }

    #[test]
    fn the_most_severe_match_wins_unless_an_allow_comes_first() {
        let r = rules(
            r#"{"rules": [
                {"id": "own", "action": "allow", "link_domains": ["marketplace.example"]},
                {"id": "pay", "action": "bounce", "terms": ["Western Union", "pay outside"], "message": "Keep payments on the site"},
                {"id": "early-contact", "action": "flag", "contact_details": true, "first_messages": 2},
                {"id": "short", "action": "shadow", "link_domains": ["bit.ly"]},
                {"id": "links-only", "action": "flag", "link_only": true},
                {"id": "wallet", "action": "flag", "regex": ["\\bbc1[a-z0-9]{20,60}\\b"]}
            ]}"#,
        );
        let some = |id: &str, a| Some((id.to_owned(), a));
        assert_eq!(decide(&r, "is the bike still available?", 0), None);
        assert_eq!(
            decide(&r, "send it by ｗｅｓｔｅｒｎ u\u{200B}nion", 5),
            some("pay", Action::Bounce)
        );
        assert_eq!(
            decide(&r, "my number is 0770 0900 123", 0),
            some("early-contact", Action::Flag)
        );
        assert_eq!(decide(&r, "my number is 0770 0900 123", 2), None);
        // Both match: the bounce wins over the flag.
        assert_eq!(
            decide(&r, "call 0770 0900 123, western union", 0),
            some("pay", Action::Bounce)
        );
        assert_eq!(decide(&r, "see bit.ly/x", 9), some("short", Action::Shadow));
        assert_eq!(
            decide(&r, "https://evil.example/x", 9),
            some("links-only", Action::Flag)
        );
        assert_eq!(
            decide(&r, "https://shop.marketplace.example/l/1 western union", 9),
            some("own", Action::Allow)
        );
        assert_eq!(
            decide(&r, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", 9),
            some("wallet", Action::Flag)
        );
        // Whole words only; a domain's suffix is not a subdomain.
        assert_eq!(decide(&r, "western unionville", 9), None);
        assert_eq!(decide(&r, "see notbit.ly/x", 9), None);
    }

    #[test]
    fn same_text_matches_once_the_count_reaches_the_threshold() {
        let r = rules(
            r#"{"rules": [{"id": "copy-paste", "action": "shadow",
                "same_text": {"conversations": 3, "window_secs": 600}}]}"#,
        );
        let seen = see("Great deal!! Visit my shop today 1");
        let counts = r.same_text_counts(&seen, "spammer");
        assert_eq!(counts.len(), 1);
        assert!(counts[0].key.starts_with("spam:copy-paste:spammer:"));
        assert_eq!(counts[0].window_ms, 600_000);
        // Near-same text, same key; short texts are not counted.
        assert_eq!(
            r.same_text_counts(&see("great deal visit my shop TODAY 2"), "spammer"),
            counts
        );
        assert!(r.same_text_counts(&see("ok!"), "spammer").is_empty());
        let facts = |n| Facts {
            same_text: vec![(0, n)],
            ..Default::default()
        };
        assert_eq!(r.check(&seen, &facts(2)), None);
        assert_eq!(
            r.check(&seen, &facts(3)).map(|v| v.action),
            Some(Action::Shadow)
        );
    }

    #[test]
    fn classifier_rules_match_on_the_score_and_fail_as_configured() {
        let r = rules(
            r#"{"rules": [
                {"id": "abuse", "action": "bounce", "classifier": {"min_score": 0.9, "fail": "closed"}},
                {"id": "maybe", "action": "flag", "classifier": {"min_score": 0.5}}
            ]}"#,
        );
        assert!(r.uses_classifier());
        let seen = see("anything");
        let with = |score| Facts {
            classifier: Some(score),
            ..Default::default()
        };
        let decided = |f: Facts| r.check(&seen, &f).map(|v| v.rule.to_string());
        assert_eq!(decided(with(Some(0.95))), Some("abuse".into()));
        assert_eq!(decided(with(Some(0.6))), Some("maybe".into()));
        assert_eq!(decided(with(Some(0.1))), None);
        // No score: the closed rule matches, the open one does not.
        assert_eq!(decided(with(None)), Some("abuse".into()));
        assert_eq!(decided(Facts::default()), None);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (file, why) in [
            ("{", "not a rules file"),
            (
                r#"{"rules": [{"id": "x", "action": "flag"}]}"#,
                "no matcher",
            ),
            (
                r#"{"rules": [{"id": "x", "action": "delete", "terms": ["a"]}]}"#,
                "unknown variant",
            ),
            (
                r#"{"rules": [{"id": "x", "action": "flag", "regex": ["("]}]}"#,
                "regex",
            ),
            (
                r#"{"rules": [{"id": "x", "action": "flag", "terms": ["a"]}, {"id": "x", "action": "flag", "terms": ["b"]}]}"#,
                "twice",
            ),
            (
                r#"{"rules": [{"id": "x y", "action": "flag", "terms": ["a"]}]}"#,
                "an id is",
            ),
            (
                r#"{"rules": [{"id": "x", "action": "flag", "link_domains": ["nodot"]}]}"#,
                "not a domain",
            ),
            (
                r#"{"rules": [{"id": "x", "action": "flag", "terms": ["a"], "colour": 1}]}"#,
                "unknown field",
            ),
        ] {
            let e = RuleSet::parse(file.as_bytes()).err().unwrap_or_default();
            assert!(e.contains(why), "{file}: {e}");
        }
    }
}
