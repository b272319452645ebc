//! The moderation stage of the send path: one message's text folded, its links, e-mails and
//! phones found, then a marketplace-sized rule set (5 000 terms, 30 regexes, link and contact
//! rules) checked. `cargo bench -p parley-benches --bench moderation`.

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::bench::ModerationBench;

fn moderation(c: &mut Criterion) {
    let rules = ModerationBench::new(5_000, 30);
    let none = ModerationBench::new(0, 0);
    let texts = [
        (
            "plain-64B",
            "Hi! Is the bike still available? I could pick it up tomorrow.",
        ),
        (
            "link-and-phone-160B",
            "Sure, see the photos at https://marketplace.example/l/123 or call me on +44 7700 900123; \
             I can also meet near the station on Saturday after ten.",
        ),
        (
            "loadtest-64B",
            "lt|117|2345|1764617000123456789|xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ),
        (
            "confusables-64B",
            "Ｈｉ! Ｉｓ ｔｈｅ ｂｉｋｅ ｓｔｉｌｌ ａｖａｉｌａｂｌｅ? ｔｏｍｏｒｒｏｗ ｏｋ",
        ),
    ];
    let mut g = c.benchmark_group("moderation");
    for (name, text) in texts {
        g.bench_function(format!("{name}/rules"), |b| b.iter(|| rules.check(text)));
        g.bench_function(format!("{name}/text-only"), |b| b.iter(|| none.check(text)));
    }
    g.finish();
}

criterion_group!(benches, moderation);
criterion_main!(benches);
