//! What the rules see of a message's text, computed once per message: the text folded for
//! matching (invisible characters stripped, Unicode NFKC, confusables and look-alikes folded by
//! `decancer`, lower case) and the links, e-mail addresses and phone numbers in it (found in
//! the NFKC text, where `@` and `.` are still themselves).

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// A message's text as the rules see it.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Folded for matching terms and patterns.
    pub(crate) folded: String,
    /// The host of every link (lower case, no `www.`).
    pub(crate) link_hosts: Vec<String>,
    pub(crate) emails: usize,
    pub(crate) phones: usize,
    /// Nothing but links (and spaces / punctuation) in it.
    pub(crate) link_only: bool,
}

/// Characters that change nothing a reader sees: zero-width spaces and joiners, the word
/// joiner, the byte-order mark, soft hyphens, bidi controls, variation selectors.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        | '\u{FE00}'..='\u{FE0F}')
}

static LINK: LazyLock<Regex> = LazyLock::new(|| {
    // A scheme or www. link, or a bare host with a TLD of letters; then the rest of it.
    Regex::new(
        r"(?i)(?-u:\b)(?:(?:https?|ftp)://|www\.)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})(?-u:\b)(?:[/?#:][^\s]*)?",
    )
    .unwrap_or_else(|e| unreachable!("link pattern: {e}"))
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}(?-u:\b)")
        .unwrap_or_else(|e| unreachable!("email pattern: {e}"))
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    // Digits with the separators people use; counted as a phone number with 8 to 15 digits.
    Regex::new(r"\+?\(?[0-9][0-9 \t().-]{6,20}[0-9]")
        .unwrap_or_else(|e| unreachable!("phone pattern: {e}"))
});

/// The folded form of `text` alone (rule terms go through this too, so they match what
/// messages become).
pub(crate) fn fold(text: &str) -> String {
    let nfkc: String = text.chars().filter(|c| !invisible(*c)).nfkc().collect();
    cure(&nfkc)
}

fn cure(nfkc: &str) -> String {
    // decancer changes nothing in ASCII but the case (checked in the tests).
    if nfkc.is_ascii() {
        return nfkc.to_ascii_lowercase();
    }
    match decancer::cure(nfkc, decancer::Options::default()) {
        Ok(cured) => cured.to_string().to_lowercase(),
        // Text decancer refuses (malformed surrogates cannot occur in a str; this is for
        // whatever else it may refuse): match it as it is.
        Err(_) => nfkc.to_lowercase(),
    }
}

/// Everything the rules need of `text`.
pub(crate) fn see(text: &str) -> Seen {
    let nfkc: String = match text.is_ascii() {
        // ASCII is its own NFKC and has no invisible characters.
        true => text.to_owned(),
        false => text.chars().filter(|c| !invisible(*c)).nfkc().collect(),
    };
    // Each search only where it can find something (most messages have no '@', no '.'
    // between letters, and fewer than 8 digits).
    let (emails, without_emails) = match nfkc.contains('@') {
        true => (
            EMAIL.find_iter(&nfkc).count(),
            // Links: not the domains of the e-mail addresses.
            EMAIL.replace_all(&nfkc, " "),
        ),
        false => (0, std::borrow::Cow::Borrowed(nfkc.as_str())),
    };
    let mut link_hosts = Vec::new();
    let mut rest = String::with_capacity(without_emails.len());
    let mut last = 0;
    let links = match without_emails.contains('.') {
        true => LINK.captures_iter(&without_emails).collect(),
        false => Vec::new(),
    };
    for m in links {
        let (Some(all), Some(host)) = (m.get(0), m.get(1)) else {
            continue;
        };
        let host = host.as_str().to_lowercase();
        link_hosts.push(host.strip_prefix("www.").unwrap_or(&host).to_owned());
        rest.push_str(&without_emails[last..all.start()]);
        last = all.end();
    }
    rest.push_str(&without_emails[last..]);
    let digits = nfkc.bytes().filter(u8::is_ascii_digit).count();
    let phones = match digits >= 8 {
        true => PHONE
            .find_iter(&nfkc)
            .filter(|m| (8..=15).contains(&m.as_str().bytes().filter(u8::is_ascii_digit).count()))
            .count(),
        false => 0,
    };
    let link_only = !link_hosts.is_empty() && rest.chars().all(|c| !c.is_alphanumeric());
    Seen {
        folded: cure(&nfkc),
        link_hosts,
        emails,
        phones,
        link_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_and_invisible_characters_fold_away() {
        assert_eq!(fold("vＥⓡ𝔂 𝔽𝕌Ňℕy"), "very funny");
        assert_eq!(
            fold("w\u{200B}e\u{200D}s\u{FEFF}tern un\u{00AD}ion"),
            "western union"
        );
        assert_eq!(fold("ＰＡＹＰＡＬ"), "paypal");
        assert_eq!(fold("Ünïcödé"), fold("ünïcödé"));
    }

    #[test]
    fn ascii_folds_to_its_lower_case_as_decancer_does() {
        let all: String = (32u8..127).map(char::from).collect();
        let cured = decancer::cure(&all, decancer::Options::default()).expect("cure");
        assert_eq!(cured.to_string(), all.to_ascii_lowercase());
        assert_eq!(fold(&all), all.to_ascii_lowercase());
    }

    #[test]
    fn links_emails_and_phones_are_found() {
        let s = see(
            "mail me at John.Doe@Example.com or call +44 (0)20 7946 0958, see https://www.Evil.example/pay?x=1 and bit.ly/abc",
        );
        assert_eq!(s.emails, 1);
        assert_eq!(s.phones, 1);
        assert_eq!(s.link_hosts, ["evil.example", "bit.ly"]);
        assert!(!s.link_only);
        let only = see("  https://scam.example/login  ");
        assert!(only.link_only && only.link_hosts == ["scam.example"]);
        let plain = see("I can pay 120 euros on Friday, version 1.2 of the manual");
        assert_eq!(
            (plain.emails, plain.phones, plain.link_hosts.len()),
            (0, 0, 0)
        );
        // Full-width digits are digits after NFKC.
        assert_eq!(see("call ０７７００ ９００１２３").phones, 1);
    }
}
