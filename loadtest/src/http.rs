//! REST calls for setting a scenario up (conversations, seed messages) and for uploads, over
//! kept-alive HTTP/1.1 connections; one-shot GETs of a gateway's /metrics.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parley_types::ConversationId;
use serde_json::Value;

/// One kept-alive HTTP connection.
pub struct Http {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    /// The last answer's `Retry-After`.
    retry_after: Option<std::time::Duration>,
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self {
            addr,
            sender,
            retry_after: None,
        })
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.send(method, path, token, "application/json", Bytes::from(body))
            .await
    }

    /// One request with a raw body; status and the JSON answer (Null if it is not JSON).
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Value)> {
        if self.sender.is_closed() {
            *self = Self::connect(self.addr).await?;
        }
        self.sender.ready().await?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        self.retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map(std::time::Duration::from_secs);
        let bytes = resp.into_body().collect().await?.to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, json))
    }

    /// The last answer's `Retry-After` (a 429 or 503 says when to try again).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// Uploads `bytes` for `conv` (`POST /api/media`).
    pub async fn upload(
        &mut self,
        token: &str,
        conv: ConversationId,
        name: &str,
        bytes: Bytes,
    ) -> anyhow::Result<(u16, Value)> {
        let path = format!("/api/media?conversation={conv}&name={name}");
        self.send("POST", &path, token, "application/octet-stream", bytes)
            .await
    }

    /// The direct conversation of `buyer` with `seller` about `listing`.
    pub async fn direct(
        &mut self,
        buyer_token: &str,
        seller: &str,
        listing: &str,
    ) -> anyhow::Result<ConversationId> {
        let body = serde_json::json!({ "sellerId": seller, "listingId": listing });
        let (status, json) = self
            .request("POST", "/api/conversations", buyer_token, Some(body))
            .await?;
        conversation_id(status, &json)
    }

    /// A group of `creator` and `members`.
    pub async fn group(
        &mut self,
        creator_token: &str,
        members: &[String],
        title: &str,
    ) -> anyhow::Result<ConversationId> {
        let body = serde_json::json!({ "participantIds": members, "title": title });
        let (status, json) = self
            .request("POST", "/api/conversations", creator_token, Some(body))
            .await?;
        conversation_id(status, &json)
    }

    /// Posts a message (seeding history).
    pub async fn post_message(
        &mut self,
        token: &str,
        conv: ConversationId,
        content: &str,
    ) -> anyhow::Result<()> {
        let path = format!("/api/conversations/{conv}/messages");
        let body = serde_json::json!({ "content": content });
        let (status, json) = self.request("POST", &path, token, Some(body)).await?;
        if status != 201 && status != 200 {
            bail!("seeding a message: {status} {json}");
        }
        Ok(())
    }
}

fn conversation_id(status: u16, json: &Value) -> anyhow::Result<ConversationId> {
    if status != 201 && status != 200 {
        bail!("creating a conversation: {status} {json}");
    }
    json["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("conversation id in the response")
}

/// The body of `GET path` on a fresh connection (e.g. the gateway's /metrics); None on any
/// failure.
pub async fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// The resident memory of process `pid` (/proc), bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}
