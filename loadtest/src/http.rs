//! REST calls for setting a scenario up (conversations, seed messages), over kept-alive
//! HTTP/1.1 connections.

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
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { addr, sender })
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        if self.sender.is_closed() {
            *self = Self::connect(self.addr).await?;
        }
        self.sender.ready().await?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, json))
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
