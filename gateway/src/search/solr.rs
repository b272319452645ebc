//! The cluster engine: a SolrCloud collection, spoken to over its HTTP JSON API.
//!
//! The collection's schema is `deploy/dev/solr/configset` (and what a production SolrCloud
//! must be given): `id` (the message id, the unique key: a message indexed again replaces
//! itself), `mid` (the id as a number: newest-first order and `before` pages), `conversation`,
//! `sender`, `members` (who may find it), `seq`, `at`, `text` (stored only, for snippets) and
//! `terms`: the [`analyzer`](super::analyzer)'s terms joined by spaces, split by Solr's
//! whitespace tokenizer only — so a word, a phrase, the word being typed and a CJK bigram
//! match exactly as on the embedded engine.
//!
//! Queries are Solr's JSON Query DSL: each unit of the user's query a required clause (a term,
//! a phrase, a prefix, or a phrase ending in a prefix through the `complexphrase` parser), the
//! asker, the conversation and `before` as filters, blocked senders as `must_not`. Updates are
//! one JSON command list per commit, applied in order.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use parley_types::{ConversationId, Message, MessageId};
use serde_json::{Value, json};

use super::{
    Hit, IndexWriter, MAX_LIMIT, Parsed, SNIPPET_CHARS, Search, SearchError, SearchIndex,
    SearchStats, SortBy,
};

/// Largest response read from Solr (a page of at most [`MAX_LIMIT`] stored messages).
const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// The fields a search returns.
const FIELDS: &str = "id,mid,conversation,sender,seq,at,text";

use crate::outbound::Connector;

/// A Solr collection as the message index.
pub(crate) struct Solr {
    /// `http(s)://host:port/solr/<collection>`, without a trailing slash.
    base: String,
    /// `Authorization: Basic …` from the URL's user info, if it has one.
    auth: Option<HeaderValue>,
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    stats: SearchStats,
}

impl Solr {
    /// A client of the collection at `url` (`http(s)://[user:pass@]host:port/solr/<name>`);
    /// every request has `timeout` for the whole exchange. Nothing is sent yet.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let uri: hyper::Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("--solr {url:?}: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("");
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "--solr {url:?}: the URL must be http:// or https://"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--solr {url:?}: no host"))?;
        let (auth, host) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, host)) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
                let value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| format!("--solr {url:?}: bad user info"))?;
                (Some(value), host)
            }
            None => (None, authority.as_str()),
        };
        let path = uri.path().trim_end_matches('/');
        if path.split('/').filter(|p| !p.is_empty()).count() < 2 {
            return Err(format!(
                "--solr {url:?}: name the collection, e.g. http://127.0.0.1:8983/solr/parley_messages"
            ));
        }
        let client = crate::outbound::client(
            "Solr",
            crate::outbound::Version::Http1,
            timeout,
            Duration::from_secs(60),
        )?;
        Ok(Self {
            base: format!("{scheme}://{host}{path}"),
            auth,
            client,
            timeout,
            stats: SearchStats::default(),
        })
    }

    /// Whether the collection answers a search (a node checks at start).
    pub(crate) async fn ping(&self) -> Result<(), SearchError> {
        let body = json!({"query": "*:*", "limit": 0}).to_string();
        self.post("/query", body).await.map(drop)
    }

    /// Documents in the collection, as last committed (tests, `gateway reindex`).
    pub(crate) async fn docs(&self) -> Result<u64, SearchError> {
        let body = json!({"query": "*:*", "limit": 0}).to_string();
        let v = self.post("/query", body).await?;
        v.pointer("/response/numFound")
            .and_then(Value::as_u64)
            .ok_or_else(|| SearchError::Remote("a search answer without numFound".into()))
    }

    /// POSTs a JSON body to `path` under the collection; the answer, or Solr's error.
    async fn post(&self, path: &str, body: String) -> Result<Value, SearchError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len());
        if let Some(auth) = &self.auth {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SearchError::Remote(format!("request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SearchError::Remote(format!("{}: {e}", self.base)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    SearchError::Remote(format!("{}: reading the answer: {e}", self.base))
                })?
                .to_bytes();
            Ok::<_, SearchError>((parts.status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                SearchError::Remote(format!("{}: no answer in {:?}", self.base, self.timeout))
            })??;
        let v: Value = serde_json::from_slice(&body).map_err(|_| {
            SearchError::Remote(format!("{}{path}: HTTP {status}, not JSON", self.base))
        })?;
        if status != StatusCode::OK {
            let msg = v
                .pointer("/error/msg")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return Err(SearchError::Remote(format!(
                "{}{path}: HTTP {status}: {msg}",
                self.base
            )));
        }
        Ok(v)
    }
}

/// The JSON DSL clause of one unit of a query (see the module). `relaxed`: a phrase ending in a
/// prefix is its whole words as a phrase and the prefix anywhere in the message, for when the
/// prefix has more words than Solr's clause limit.
fn unit_clause(terms: &[&str], prefix: bool, relaxed: bool) -> Value {
    match (terms, prefix) {
        ([t], false) => json!({"term": {"f": "terms", "query": t}}),
        ([t], true) => json!({"prefix": {"f": "terms", "query": t}}),
        (_, false) => json!({"field": {"f": "terms", "query": terms.join(" ")}}),
        ([whole @ .., last], true) if relaxed => json!({"bool": {"must": [
            unit_clause(whole, false, true),
            unit_clause(&[last], true, true),
        ]}}),
        (_, true) => {
            // Terms are letters and digits only (the analyzer's output); quotes and
            // backslashes are escaped all the same.
            let escaped: Vec<String> = terms
                .iter()
                .map(|t| t.replace('\\', "\\\\").replace('"', "\\\""))
                .collect();
            json!({"complexphrase": {
                "query": format!("\"{}*\"", escaped.join(" ")),
                "df": "terms",
                // Solr reads local parameters as strings only (a JSON `true` is a 400).
                "inOrder": "true",
            }})
        }
    }
}

/// The whole search request body (`relaxed`: see [`unit_clause`]).
fn request(s: &Search, relaxed: bool) -> Value {
    let must: Vec<Value> = s
        .query
        .units()
        .map(|(terms, prefix)| unit_clause(&terms, prefix, relaxed))
        .collect();
    let mut filter = vec![json!({"term": {"f": "members", "query": s.user}})];
    if let Some(c) = s.conversation {
        filter.push(json!({"term": {"f": "conversation", "query": c.to_string()}}));
    }
    if let Some(before) = s.before {
        match before.0.checked_sub(1) {
            Some(top) => filter.push(json!({"lucene": {"query": format!("mid:[* TO {top}]")}})),
            // Nothing is below id 0.
            None => filter.push(json!({"lucene": {"query": "-*:*"}})),
        }
    }
    let must_not: Vec<Value> = s
        .exclude_senders
        .iter()
        .map(|u| json!({"term": {"f": "sender", "query": u}}))
        .collect();
    let mut bool_q = json!({"must": must, "filter": filter});
    if !must_not.is_empty() {
        bool_q["must_not"] = Value::Array(must_not);
    }
    let limit = s.limit.clamp(1, MAX_LIMIT);
    let (sort, offset) = match s.sort {
        SortBy::Newest => ("mid desc", 0),
        SortBy::Relevance => ("score desc,mid desc", s.offset),
    };
    json!({
        "query": {"bool": bool_q},
        "sort": sort,
        "offset": offset,
        "limit": limit,
        "fields": FIELDS,
    })
}

/// A hit from one returned document (None: not one of ours).
fn hit(doc: &Value, query: &Parsed) -> Option<Hit> {
    let text = |k: &str| doc.get(k).and_then(Value::as_str);
    let number = |k: &str| doc.get(k).and_then(Value::as_i64);
    let conversation: ConversationId = text("conversation")?.parse().ok()?;
    let (snippet, highlights) = query.snippet(text("text").unwrap_or(""), SNIPPET_CHARS);
    Some(Hit {
        conversation,
        id: MessageId(u64::try_from(number("mid")?).ok()?),
        seq: u64::try_from(number("seq").unwrap_or(0)).unwrap_or(0),
        sender: text("sender").unwrap_or("").to_owned(),
        created_at_ms: number("at").unwrap_or(0),
        snippet,
        highlights,
    })
}

#[async_trait]
impl SearchIndex for Solr {
    fn engine(&self) -> &'static str {
        "solr"
    }

    fn stats(&self) -> &SearchStats {
        &self.stats
    }

    async fn search(self: Arc<Self>, s: Search) -> Result<Vec<Hit>, SearchError> {
        self.stats.queries.fetch_add(1, Relaxed);
        let v = match self.post("/query", request(&s, false).to_string()).await {
            // A phrase ending in a prefix that too many words start with ("e-m" typed).
            Err(SearchError::Remote(e)) if e.contains("maxClauseCount") => {
                self.stats.relaxed.fetch_add(1, Relaxed);
                self.post("/query", request(&s, true).to_string()).await?
            }
            v => v?,
        };
        let docs = v
            .pointer("/response/docs")
            .and_then(Value::as_array)
            .ok_or_else(|| SearchError::Remote("a search answer without docs".into()))?;
        Ok(docs.iter().filter_map(|d| hit(d, &s.query)).collect())
    }

    fn writer(self: Arc<Self>) -> Result<Box<dyn IndexWriter>, SearchError> {
        Ok(Box::new(SolrWriter {
            solr: self,
            commands: Vec::new(),
            adds: 0,
            deletes: 0,
        }))
    }
}

/// Changes buffered until the commit sends them, in order, as one request.
struct SolrWriter {
    solr: Arc<Solr>,
    /// `"add": {…}` / `"delete": {…}` members of the command object (Solr reads a JSON
    /// object with repeated keys as a list of commands, in order).
    commands: Vec<String>,
    adds: u64,
    deletes: u64,
}

impl SolrWriter {
    fn command(&mut self, name: &str, body: Value) {
        self.commands.push(format!("{}:{body}", Value::from(name)));
    }
}

#[async_trait]
impl IndexWriter for SolrWriter {
    fn add(&mut self, m: &Message, participants: &[String]) -> Result<(), SearchError> {
        let text = super::indexed_text(m);
        let terms = super::analyzer::terms(&text).join(" ");
        let mid = i64::try_from(m.id.0)
            .map_err(|_| SearchError::Remote(format!("message id {} is out of range", m.id)))?;
        let doc = json!({
            "id": m.id.0.to_string(),
            "mid": mid,
            "conversation": m.conversation.to_string(),
            "sender": m.sender,
            "members": super::members(m, participants),
            "seq": m.seq,
            "at": m.created_at_ms,
            "text": text,
            "terms": terms,
        });
        self.command("add", json!({"doc": doc, "overwrite": true}));
        self.adds += 1;
        Ok(())
    }

    fn delete_conversation(&mut self, conversation: ConversationId) {
        let q = format!("{{!term f=conversation}}{conversation}");
        self.command("delete", json!({"query": q}));
        self.deletes += 1;
    }

    async fn commit(&mut self, _checkpoint: u64) -> Result<(), SearchError> {
        self.command("commit", json!({}));
        let body = format!("{{{}}}", self.commands.join(","));
        let sent = self.solr.post("/update", body).await;
        // Sent or not, the buffer goes: a caller that failed starts its batch again.
        self.commands.clear();
        let (adds, deletes) = (
            std::mem::take(&mut self.adds),
            std::mem::take(&mut self.deletes),
        );
        sent?;
        let stats = &self.solr.stats;
        stats.indexed.fetch_add(adds, Relaxed);
        stats.deleted.fetch_add(deletes, Relaxed);
        stats.commits.fetch_add(1, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_collection() {
        let t = Duration::from_secs(1);
        assert!(Solr::new("http://127.0.0.1:8983/solr/parley_messages", t).is_ok());
        assert!(Solr::new("http://127.0.0.1:8983/solr", t).is_err());
        assert!(Solr::new("ftp://127.0.0.1/solr/x", t).is_err());
        let s = Solr::new("https://u:p@solr.example:8984/solr/m/", t).expect("url");
        assert_eq!(s.base, "https://solr.example:8984/solr/m");
        assert_eq!(
            s.auth.as_ref().map(|a| a.to_str().ok()),
            Some(Some("Basic dTpw"))
        );
    }

    #[test]
    fn units_become_terms_phrases_and_prefixes() {
        let q = Parsed::parse("Lego \"castle set\" e-mai").expect("parses");
        let s = Search {
            user: "alice".into(),
            query: q,
            conversation: None,
            before: Some(MessageId(10)),
            exclude_senders: vec!["mallory".into()],
            sort: SortBy::Newest,
            offset: 0,
            limit: 5,
        };
        let r = request(&s, false);
        let must = &r["query"]["bool"]["must"];
        assert_eq!(must[0], json!({"term": {"f": "terms", "query": "lego"}}));
        assert_eq!(
            must[1],
            json!({"field": {"f": "terms", "query": "castle set"}})
        );
        assert_eq!(must[2]["complexphrase"]["query"], "\"e mai*\"");
        assert_eq!(must[2]["complexphrase"]["inOrder"], "true");
        assert_eq!(
            r["query"]["bool"]["filter"][1]["lucene"]["query"],
            "mid:[* TO 9]"
        );
        assert_eq!(
            r["query"]["bool"]["must_not"][0]["term"]["query"],
            "mallory"
        );
        assert_eq!(r["sort"], "mid desc");
        let relaxed = request(&s, true);
        assert_eq!(
            relaxed["query"]["bool"]["must"][2],
            json!({"bool": {"must": [
                {"term": {"f": "terms", "query": "e"}},
                {"prefix": {"f": "terms", "query": "mai"}},
            ]}})
        );
    }
}
