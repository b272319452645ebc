//! How message text becomes terms, the same way at indexing and at query time: words (runs of
//! letters and digits) lowercased and folded to ASCII ("Café" → "cafe"), and runs of CJK
//! characters — which are written without spaces — as overlapping bigrams ("乐高城堡" → 乐高,
//! 高城, 城堡; a lone character as itself), so a CJK query of two or more characters finds the
//! text that contains it (the approach of Lucene's CJK bigram filter).

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the analyzer is registered under in the index.
pub(crate) const NAME: &str = "parley";

/// Tokens longer than this (bytes) are not indexed: nobody searches for them.
const MAX_TOKEN_BYTES: usize = 64;

/// The analyzer: [`WordsAndBigrams`], long tokens dropped, lowercased, folded to ASCII.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordsAndBigrams)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The terms of `text`, in order (what is indexed or asked for).
pub(crate) fn terms(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Whether `c` belongs to a script written without spaces between words (CJK ideographs,
/// kana, hangul syllables).
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x31F0..=0x31FF    // katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width katakana
        | 0x20000..=0x3134F  // CJK extensions B–G
    )
}

/// Splits text into words and CJK bigrams (see the module).
#[derive(Clone, Default)]
pub(crate) struct WordsAndBigrams;

impl Tokenizer for WordsAndBigrams {
    type TokenStream<'a> = Tokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Tokens {
        Tokens {
            tokens: split(text),
            next: 0,
        }
    }
}

/// The tokens of one text, computed up front (messages are short).
pub(crate) struct Tokens {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for Tokens {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

fn split(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Token>, from: usize, to: usize| {
        let position = out.len();
        out.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text: text[from..to].to_owned(),
            position_length: 1,
        });
    };
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_cjk(c) {
            // A run of CJK characters: its bigrams (a lone one as itself).
            let mut run = Vec::new();
            while let Some(&(i, c)) = chars.peek() {
                if !is_cjk(c) {
                    break;
                }
                run.push((i, i + c.len_utf8()));
                chars.next();
            }
            if run.len() == 1 {
                push(&mut out, run[0].0, run[0].1);
            }
            for pair in run.windows(2) {
                push(&mut out, pair[0].0, pair[1].1);
            }
        } else if c.is_alphanumeric() {
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if !c.is_alphanumeric() || is_cjk(c) {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            push(&mut out, start, end);
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_and_folded() {
        assert_eq!(terms("Café CRÈME, naïve!"), ["cafe", "creme", "naive"]);
        assert_eq!(terms("Straße Ångström 42€"), ["strasse", "angstrom", "42"]);
        assert_eq!(terms("  \u{200b} ... "), Vec::<String>::new());
    }

    #[test]
    fn cjk_runs_become_bigrams_and_mix_with_words() {
        assert_eq!(terms("乐高城堡"), ["乐高", "高城", "城堡"]);
        assert_eq!(terms("城"), ["城"]);
        assert_eq!(terms("Lego城堡set"), ["lego", "城堡", "set"]);
        assert_eq!(terms("レゴのお城"), ["レゴ", "ゴの", "のお", "お城"]);
        assert_eq!(terms("레고 성"), ["레고", "성"]);
    }

    #[test]
    fn positions_and_offsets_follow_the_text() {
        let mut a = analyzer();
        let text = "a 城堡城 b";
        let mut stream = a.token_stream(text);
        let mut seen = Vec::new();
        while stream.advance() {
            let t = stream.token();
            seen.push((t.position, &text[t.offset_from..t.offset_to]));
        }
        assert_eq!(seen, [(0, "a"), (1, "城堡"), (2, "堡城"), (3, "b")]);
    }

    #[test]
    fn very_long_tokens_are_dropped() {
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(terms(&format!("ok {long} fine")), ["ok", "fine"]);
    }
}
