//! What a user types, as a query: every word must match (AND); `"quoted words"` must match as a
//! phrase; a word the analyzer splits (a CJK run into bigrams, "e-mail" into two) must match
//! as a phrase too; the last word, while it is being typed (no space after it), matches as a
//! prefix ("cast" finds "castle"). Case and diacritics never matter (the analyzer folds them).

use std::collections::HashSet;
use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    BooleanQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TokenStream;

use super::analyzer::{analyzer, is_cjk};
use super::embedded::QueryScope;

/// Longest query accepted, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 200;

/// Most words (and phrases) in one query.
const MAX_UNITS: usize = 16;

/// Shortest last word (characters) matched as a prefix; a shorter one must match whole.
const MIN_PREFIX_CHARS: usize = 2;

/// Terms a prefix may expand to (tantivy's bound on the term dictionary walk).
const MAX_EXPANSIONS: u32 = 64;

/// One required part of a query: terms at their positions, the last one a prefix or not.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unit {
    terms: Vec<(usize, String)>,
    prefix: bool,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    units: Vec<Unit>,
}

impl Parsed {
    /// Parses `q`; an error names what is wrong with it (too long, nothing to search for).
    pub(crate) fn parse(q: &str) -> Result<Self, String> {
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(format!("q is longer than {MAX_QUERY_CHARS} characters"));
        }
        let mut units = Vec::new();
        // Outside quotes at even indexes, inside at odd ones (an unclosed quote runs to the end).
        let parts: Vec<&str> = q.split('"').collect();
        let typing = !q.ends_with(|c: char| c.is_whitespace() || c == '"');
        for (i, part) in parts.iter().enumerate() {
            if i % 2 == 1 {
                units.extend(unit(part, false));
                continue;
            }
            let words: Vec<&str> = part.split_whitespace().collect();
            for (j, word) in words.iter().enumerate() {
                let last = i == parts.len() - 1 && j == words.len() - 1;
                units.extend(unit(word, last && typing));
            }
        }
        if units.is_empty() {
            return Err("q has no words to search for".into());
        }
        if units.len() > MAX_UNITS {
            return Err(format!("q has more than {MAX_UNITS} words"));
        }
        Ok(Self { units })
    }

    /// Each required part: its terms in order, and whether the last one is a prefix (the
    /// word being typed). One term: a word; more: a phrase.
    pub(crate) fn units(&self) -> impl Iterator<Item = (Vec<&str>, bool)> {
        self.units
            .iter()
            .map(|u| (u.terms.iter().map(|(_, t)| t.as_str()).collect(), u.prefix))
    }

    /// The query: every unit, within `scope`. None when it cannot match anything.
    pub(crate) fn to_query(&self, text: Field, scope: QueryScope) -> Option<Box<dyn Query>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for u in &self.units {
            clauses.push((Occur::Must, u.query(text)?));
        }
        for t in scope.must {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(t, IndexRecordOption::Basic)),
            ));
        }
        for t in scope.must_not {
            let q = TermQuery::new(t, IndexRecordOption::Basic);
            clauses.push((Occur::MustNot, Box::new(q)));
        }
        if let Some(before) = scope.before {
            let q = RangeQuery::new(Bound::Unbounded, Bound::Excluded(before));
            clauses.push((Occur::Must, Box::new(q)));
        }
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    /// Up to `max_chars` characters of `text` starting a little before its first match, and
    /// the matched spans in it, `[start, end)` in characters.
    pub(crate) fn snippet(&self, text: &str, max_chars: usize) -> (String, Vec<(usize, usize)>) {
        let mut exact = HashSet::new();
        let mut prefixes = Vec::new();
        for u in &self.units {
            for (i, (_, t)) in u.terms.iter().enumerate() {
                if u.prefix && i == u.terms.len() - 1 {
                    prefixes.push(t.as_str());
                } else {
                    exact.insert(t.as_str());
                }
            }
        }
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut a = analyzer();
        let mut stream = a.token_stream(text);
        while stream.advance() {
            let t = stream.token();
            if exact.contains(t.text.as_str()) || prefixes.iter().any(|p| t.text.starts_with(p)) {
                match spans.last_mut() {
                    // Overlapping bigrams merge into one span.
                    Some(last) if t.offset_from <= last.1 => last.1 = last.1.max(t.offset_to),
                    _ => spans.push((t.offset_from, t.offset_to)),
                }
            }
        }
        // Start up to a fifth of the window before the first match, on a char boundary.
        let first = spans.first().map_or(0, |s| s.0);
        let lead = max_chars / 5;
        let before = text[..first].chars().count();
        let start = match before.checked_sub(lead) {
            Some(skip) if skip > 0 => text.char_indices().nth(skip).map_or(0, |(i, _)| i),
            _ => 0,
        };
        let end = text[start..]
            .char_indices()
            .nth(max_chars)
            .map_or(text.len(), |(i, _)| start + i);
        let window = &text[start..end];
        let chars = |byte: usize| text[start..byte].chars().count();
        let highlights = spans
            .into_iter()
            .filter(|&(from, to)| from >= start && to <= end)
            .map(|(from, to)| (chars(from), chars(to)))
            .collect();
        (window.to_owned(), highlights)
    }
}

/// The unit of one word or quoted phrase (None: nothing in it to search for).
fn unit(text: &str, typing: bool) -> Option<Unit> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut terms = Vec::new();
    while stream.advance() {
        let t = stream.token();
        terms.push((t.position, t.text.clone()));
    }
    let last = terms.last()?;
    let prefix =
        typing && last.1.chars().count() >= MIN_PREFIX_CHARS && !last.1.chars().any(is_cjk);
    Some(Unit { terms, prefix })
}

impl Unit {
    fn query(&self, field: Field) -> Option<Box<dyn Query>> {
        let first = self.terms.first()?.0;
        let terms: Vec<(usize, Term)> = self
            .terms
            .iter()
            .map(|(p, t)| (p - first, Term::from_field_text(field, t)))
            .collect();
        Some(match (terms.len(), self.prefix) {
            (_, true) => {
                let mut q = PhrasePrefixQuery::new_with_offset(terms);
                q.set_max_expansions(MAX_EXPANSIONS);
                Box::new(q)
            }
            (1, false) => {
                let (_, t) = terms.into_iter().next()?;
                Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs))
            }
            (_, false) => Box::new(PhraseQuery::new_with_offset(terms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Vec<(Vec<&'static str>, bool)> {
        Parsed::parse(q)
            .expect("parses")
            .units
            .into_iter()
            .map(|u| {
                let words = u
                    .terms
                    .into_iter()
                    .map(|(_, t)| &*Box::leak(t.into_boxed_str()))
                    .collect();
                (words, u.prefix)
            })
            .collect()
    }

    #[test]
    fn words_phrases_and_the_word_being_typed() {
        assert_eq!(
            terms("Lego \"Castle Set\" cas"),
            [
                (vec!["lego"], false),
                (vec!["castle", "set"], false),
                (vec!["cas"], true)
            ]
        );
        assert_eq!(
            terms("lego "),
            [(vec!["lego"], false)],
            "a space ends the word"
        );
        assert_eq!(terms("l"), [(vec!["l"], false)], "one letter matches whole");
        assert_eq!(terms("\"pay outside"), [(vec!["pay", "outside"], false)]);
        assert_eq!(terms("e-mail"), [(vec!["e", "mail"], true)]);
        assert_eq!(terms("乐高城堡"), [(vec!["乐高", "高城", "城堡"], false)]);
    }

    #[test]
    fn bad_queries_are_refused_with_a_reason() {
        assert!(Parsed::parse("").is_err());
        assert!(Parsed::parse("  \" \" !!").is_err());
        assert!(Parsed::parse(&"a".repeat(MAX_QUERY_CHARS + 1)).is_err());
        let many: Vec<String> = (0..=MAX_UNITS).map(|i| format!("w{i}")).collect();
        assert!(Parsed::parse(&many.join(" ")).is_err());
    }

    #[test]
    fn snippets_mark_matches_in_characters() {
        let p = Parsed::parse("café cast").expect("parses");
        let (s, h) = p.snippet("Un CAFÉ près du castle", 160);
        assert_eq!(s, "Un CAFÉ près du castle");
        let spans: Vec<String> = h
            .iter()
            .map(|&(a, b)| s.chars().skip(a).take(b - a).collect())
            .collect();
        assert_eq!(spans, ["CAFÉ", "castle"]);

        let long = format!("{} needle {}", "hay ".repeat(100), "hay ".repeat(100));
        let (s, h) = Parsed::parse("needle ").expect("p").snippet(&long, 60);
        assert_eq!(s.chars().count(), 60);
        assert_eq!(h.len(), 1);
        let (a, b) = h[0];
        assert_eq!(s.chars().skip(a).take(b - a).collect::<String>(), "needle");

        let (s, h) = Parsed::parse("城堡")
            .expect("p")
            .snippet("我的乐高城堡很大", 160);
        assert_eq!(s, "我的乐高城堡很大");
        assert_eq!(h, [(4, 6)]);
    }
}
