//! `--slo 'p99<5ms,loss=0'`: service-level objectives that decide the exit status.
//!
//! Terms, comma-separated: `[series.]pNN<value` / `<=` with `p50 p90 p99 p999 max mean` and a
//! unit (`us`, `ms`, `s`); the series defaults to `deliver` (also `ack`, `connect`, `history`,
//! `list`). Counters: `loss`, `duplicates`, `gaps`, `errors`, `disconnects`, `connect_failures` with
//! `=`, `<` or `<=`; rates: `throughput` (deliveries/s) and `sent_rate` with `>` or `>=`.

use anyhow::{Context, bail};

use crate::report::Report;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Lt,
    Le,
    Eq,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    text: String,
    metric: String,
    op: Op,
    value: f64,
}

/// Parses an SLO specification.
pub fn parse(spec: &str) -> anyhow::Result<Vec<Term>> {
    spec.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(parse_term)
        .collect()
}

fn parse_term(t: &str) -> anyhow::Result<Term> {
    let (pos, op, len) = ["<=", ">=", "<", ">", "="]
        .iter()
        .find_map(|o| t.find(o).map(|p| (p, *o, o.len())))
        .with_context(|| format!("SLO term {t:?} has no comparison"))?;
    let metric = t[..pos].trim().to_lowercase();
    let raw = t[pos + len..].trim();
    let op = match op {
        "<=" => Op::Le,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        ">" => Op::Gt,
        _ => Op::Eq,
    };
    let value = if let Some(n) = raw.strip_suffix("ms") {
        n.trim().parse::<f64>()? * 1e3
    } else if let Some(n) = raw.strip_suffix("us").or_else(|| raw.strip_suffix("µs")) {
        n.trim().parse::<f64>()?
    } else if let Some(n) = raw.strip_suffix('s') {
        n.trim().parse::<f64>()? * 1e6
    } else {
        raw.parse::<f64>()
            .with_context(|| format!("SLO term {t:?}: bad number"))?
    };
    let term = Term {
        text: t.to_owned(),
        metric,
        op,
        value,
    };
    // Validate the metric name now, not after a long run.
    term.measure(&Report::default())?;
    Ok(term)
}

impl Term {
    fn measure(&self, r: &Report) -> anyhow::Result<Option<f64>> {
        let (series, stat) = match self.metric.split_once('.') {
            Some((s, p)) => (s, p),
            None => ("deliver", self.metric.as_str()),
        };
        Ok(Some(match stat {
            "loss" | "lost" => r.lost as f64,
            "duplicates" | "dups" => r.duplicates as f64,
            "gaps" | "order_gaps" => r.order_gaps as f64,
            "errors" => r.errors_total() as f64,
            "disconnects" => r.disconnects as f64,
            "connect_failures" => r.connect_failures as f64,
            "throughput" => r.delivered_per_s,
            "sent_rate" => r.sent_per_s,
            "p50" | "p90" | "p99" | "p999" | "max" | "mean" => {
                if !["deliver", "ack", "connect", "reconnect", "history", "list"].contains(&series)
                {
                    bail!("SLO term {:?}: unknown series {series}", self.text);
                }
                let Some(l) = r.latency.get(series) else {
                    return Ok(None);
                };
                match stat {
                    "p50" => l.p50_us as f64,
                    "p90" => l.p90_us as f64,
                    "p99" => l.p99_us as f64,
                    "p999" => l.p999_us as f64,
                    "max" => l.max_us as f64,
                    _ => l.mean_us,
                }
            }
            _ => bail!("SLO term {:?}: unknown metric {stat}", self.text),
        }))
    }
}

/// The terms a report misses, with what was measured (empty: all met).
pub fn check(terms: &[Term], r: &Report) -> Vec<String> {
    let mut missed = Vec::new();
    for t in terms {
        match t.measure(r) {
            Ok(Some(v)) => {
                let ok = match t.op {
                    Op::Lt => v < t.value,
                    Op::Le => v <= t.value,
                    Op::Eq => (v - t.value).abs() < f64::EPSILON,
                    Op::Gt => v > t.value,
                    Op::Ge => v >= t.value,
                };
                if !ok {
                    missed.push(format!("{} (measured {v})", t.text));
                }
            }
            Ok(None) => missed.push(format!("{} (no such measurement in this run)", t.text)),
            Err(e) => missed.push(e.to_string()),
        }
    }
    missed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;

    #[test]
    fn parses_and_checks() {
        let terms = parse("p99<5ms, loss=0, ack.p50<=800us, throughput>=1000").expect("parse");
        assert_eq!(terms.len(), 4);
        let mut r = Report {
            delivered_per_s: 2000.0,
            ..Report::default()
        };
        r.latency.insert(
            "deliver".into(),
            Latency {
                p99_us: 4_000,
                ..Latency::default()
            },
        );
        r.latency.insert(
            "ack".into(),
            Latency {
                p50_us: 900,
                ..Latency::default()
            },
        );
        let missed = check(&terms, &r);
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert!(missed[0].starts_with("ack.p50<=800us"));
        r.lost = 1;
        assert_eq!(check(&terms, &r).len(), 2);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse("p99").is_err());
        assert!(parse("latency<5ms").is_err());
        assert!(parse("bogus.p99<5ms").is_err());
        assert!(parse("p99<fast").is_err());
    }
}
