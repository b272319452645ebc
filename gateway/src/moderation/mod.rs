//! The moderation stage of the send path (socket and REST alike, in `chat`): every text is
//! folded and its links, e-mail addresses and phone numbers found once ([`text`]), then the
//! rules of the configured file decide ([`rules`]): allow, flag (delivered and filed as a
//! report), shadow (visible to its sender only) or bounce (refused with error `moderated`).
//!
//! The file is read again when it changes (checked every `--moderation-reload-ms`); a file
//! that does not parse or compile is refused whole: the rules before it stay, the error is
//! logged and counted (`parley_moderation_reload_errors_total`). Every decision is counted per
//! rule and action and logged with the rule id — never the text.

pub(crate) mod classifier;
pub(crate) mod rules;
pub(crate) mod spam;
pub(crate) mod text;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

pub(crate) use rules::{Action, Facts, RuleSet, Verdict};
pub(crate) use spam::{Counter, LocalCounter};

/// The rules in force, where they come from, and what they decided.
pub(crate) struct Moderation {
    /// Swapped whole on a reload; each check clones the `Arc` in a short critical section.
    rules: Mutex<Arc<RuleSet>>,
    source: Option<Source>,
    /// The external classifier, when configured.
    pub(crate) classifier: Option<classifier::Classifier>,
    decisions: DashMap<(Arc<str>, Action), AtomicU64>,
    reload_errors: AtomicU64,
    reloads: AtomicU64,
}

struct Source {
    path: PathBuf,
    /// A classifier is configured (rules may use it).
    classifier: bool,
    /// Modification time and length of the file last read (changed: read again).
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl Moderation {
    /// No rules: every message is allowed.
    pub(crate) fn disabled() -> Self {
        Self::with(RuleSet::default(), None, None)
    }

    /// The rules of `path`; an error (with the reason) when it cannot be read or is invalid
    /// (the node does not start with rules it cannot enforce).
    pub(crate) fn from_file(
        path: PathBuf,
        classifier: Option<classifier::Classifier>,
    ) -> Result<Self, String> {
        let source = Source {
            path,
            stamp: Mutex::new(None),
            classifier: classifier.is_some(),
        };
        let (rules, stamp) = source.read()?;
        *source.stamp.lock().unwrap_or_else(|e| e.into_inner()) = Some(stamp);
        Ok(Self::with(rules, Some(source), classifier))
    }

    fn with(
        rules: RuleSet,
        source: Option<Source>,
        classifier: Option<classifier::Classifier>,
    ) -> Self {
        Self {
            rules: Mutex::new(Arc::new(rules)),
            source,
            classifier,
            decisions: DashMap::new(),
            reload_errors: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        }
    }

    pub(crate) fn rules(&self) -> Arc<RuleSet> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts and logs a decision (rule id only, never the text).
    pub(crate) fn record(&self, v: &Verdict, user: &str) {
        self.decisions
            .entry((v.rule.clone(), v.action))
            .or_default()
            .fetch_add(1, Relaxed);
        tracing::info!(rule = %v.rule, action = v.action.as_str(), user, "moderation");
    }

    /// Reads the file again if it changed; `Ok(true)` when new rules are in force. On an
    /// error the rules stay as they were.
    pub(crate) fn reload(&self) -> Result<bool, String> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let now = std::fs::metadata(&source.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        {
            let mut stamp = source.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if now == *stamp {
                return Ok(false);
            }
            // Taken before reading: a bad file is refused (and counted) once per change, not
            // at every check.
            *stamp = now;
        }
        match source.read() {
            Ok((rules, _)) => {
                let n = rules.len();
                *self.rules.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
                self.reloads.fetch_add(1, Relaxed);
                tracing::info!(rules = n, path = %source.path.display(), "moderation rules reloaded");
                Ok(true)
            }
            Err(e) => {
                self.reload_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "moderation rules not reloaded; the previous rules stay");
                Err(e)
            }
        }
    }

    /// Checks the file for changes every `every`, for as long as the process runs.
    pub(crate) async fn watch(self: Arc<Self>, every: Duration) {
        if self.source.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload()).await;
        }
    }

    /// The `parley_moderation_*` metrics.
    pub(crate) fn render(&self, out: &mut String) {
        if let Some(c) = &self.classifier {
            c.render(out);
        }
        out.push_str("# HELP parley_moderation_decisions_total Messages a moderation rule matched, by rule and action.\n");
        out.push_str("# TYPE parley_moderation_decisions_total counter\n");
        let mut rows: Vec<_> = self
            .decisions
            .iter()
            .map(|e| (e.key().0.clone(), e.key().1, e.value().load(Relaxed)))
            .collect();
        rows.sort();
        for (rule, action, n) in rows {
            let _ = writeln!(
                out,
                "parley_moderation_decisions_total{{rule=\"{rule}\",action=\"{}\"}} {n}",
                action.as_str()
            );
        }
        let rules = self.rules().len();
        let errors = self.reload_errors.load(Relaxed);
        let reloads = self.reloads.load(Relaxed);
        let _ = writeln!(
            out,
            "# HELP parley_moderation_rules Moderation rules in force.\n# TYPE parley_moderation_rules gauge\nparley_moderation_rules {rules}\n\
             # HELP parley_moderation_reloads_total Rules files loaded after a change.\n# TYPE parley_moderation_reloads_total counter\nparley_moderation_reloads_total {reloads}\n\
             # HELP parley_moderation_reload_errors_total Changed rules files refused (the previous rules stayed).\n# TYPE parley_moderation_reload_errors_total counter\nparley_moderation_reload_errors_total {errors}"
        );
    }
}

impl Source {
    fn read(&self) -> Result<(RuleSet, (SystemTime, u64)), String> {
        let path = self.path.display();
        let meta = std::fs::metadata(&self.path).map_err(|e| format!("{path}: {e}"))?;
        if meta.len() > rules::MAX_FILE_BYTES {
            return Err(format!(
                "{path}: larger than {} bytes",
                rules::MAX_FILE_BYTES
            ));
        }
        let bytes = std::fs::read(&self.path).map_err(|e| format!("{path}: {e}"))?;
        let rules = RuleSet::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
        if rules.uses_classifier() && !self.classifier {
            return Err(format!(
                "{path}: a classifier rule needs --moderation-classifier-url"
            ));
        }
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        Ok((rules, stamp))
    }
}
