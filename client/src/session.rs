//! A protocol session over a [`crate::link`]: Hello → Welcome, requests answered by `seq`,
//! events kept in order, and per conversation the position to resume from.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::decode_server;
use parley_proto::{
    Ack, ClientBody, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, ResumePoint, SendMessage, ServerBody,
    ServerFrame, Welcome,
};
use parley_types::{ConversationId, Message, MessageId, MessageKind};

use crate::Error;
use crate::link::{Event, Link, Reader, Via, Writer, open};

/// How long a call waits for the server by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The fatal Error frame's code before the close, if any.
    pub error: Option<u16>,
    /// The close code (None: the connection just ended).
    pub code: Option<u16>,
}

/// Per conversation, the newest message this client has: what it resumes from.
#[derive(Clone, Debug, Default)]
pub struct Cursors {
    last: HashMap<ConversationId, MessageId>,
}

impl Cursors {
    /// Records that the client has `id` of `conversation` (older ids do not move it back).
    pub fn saw(&mut self, conversation: ConversationId, id: MessageId) {
        let e = self.last.entry(conversation).or_default();
        *e = (*e).max(id);
    }

    /// The position in `conversation` (0: nothing yet).
    pub fn get(&self, conversation: ConversationId) -> MessageId {
        self.last.get(&conversation).copied().unwrap_or_default()
    }

    /// A resume point per conversation the client has seen messages of.
    pub fn resume_points(&self) -> Vec<ResumePoint> {
        self.last
            .iter()
            .map(|(c, id)| ResumePoint {
                conversation: *c,
                last_message_id: *id,
            })
            .collect()
    }
}

/// An authenticated (or not yet) protocol session.
pub struct Client {
    reader: Reader,
    writer: Writer,
    quic: Option<quinn::Connection>,
    zero_rtt: bool,
    limits: DecodeLimits,
    backlog: VecDeque<ServerFrame>,
    /// How long each call waits for the server.
    pub timeout: Duration,
    pub welcome: Option<Welcome>,
    /// Typing indicators that arrived as QUIC datagrams.
    pub datagrams: usize,
    /// What this client has of each conversation.
    pub cursors: Cursors,
}

impl Client {
    /// Connects without authenticating.
    pub async fn open(via: &Via) -> Result<Self, Error> {
        let Link {
            reader,
            writer,
            zero_rtt,
            quic,
        } = open(via).await?;
        Ok(Self {
            reader,
            writer,
            quic,
            zero_rtt,
            limits: DecodeLimits::server(),
            backlog: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
            welcome: None,
            datagrams: 0,
            cursors: Cursors::default(),
        })
    }

    /// Connects and authenticates with `token`, resuming from `resume`.
    pub async fn connect(via: &Via, token: &str, resume: Vec<ResumePoint>) -> Result<Self, Error> {
        let mut c = Self::open(via).await?;
        c.hello(token, resume).await?;
        Ok(c)
    }

    /// Sends Hello and waits for Welcome (a refusal comes back as [`Error::Server`]).
    pub async fn hello(&mut self, token: &str, resume: Vec<ResumePoint>) -> Result<Welcome, Error> {
        let body = ClientBody::Hello(Hello {
            token: token.to_owned(),
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            resume,
            client_name: Some("parley-client".into()),
        });
        match self.request(body).await?.body {
            ServerBody::Welcome(w) => {
                self.welcome = Some(w.clone());
                Ok(w)
            }
            other => Err(unexpected("Welcome", other)),
        }
    }

    /// Whether the QUIC connection used 0-RTT.
    pub fn used_0rtt(&self) -> bool {
        self.zero_rtt
    }

    /// The QUIC connection (None over WebSocket).
    pub fn quic_connection(&self) -> Option<&quinn::Connection> {
        self.quic.as_ref()
    }

    /// The write half (raw frames, datagrams, transport access).
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// Sends a frame; returns its seq.
    pub async fn send(&mut self, body: ClientBody) -> Result<u32, Error> {
        self.writer.send(body).await
    }

    /// Sends raw bytes as one frame.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer.send_bytes(bytes).await
    }

    /// Reads one frame (stream or datagram) within the timeout; None once the connection
    /// closed.
    async fn read(&mut self) -> Result<Option<ServerFrame>, Error> {
        let event = tokio::time::timeout(self.timeout, self.reader.next())
            .await
            .map_err(|_| Error::Timeout(self.timeout))?;
        let bytes = match event {
            Event::Frame(b) => b,
            Event::Datagram(b) => {
                self.datagrams += 1;
                b
            }
            Event::Closed(_) => return Ok(None),
        };
        Ok(Some(self.decode(&bytes)?))
    }

    fn decode(&mut self, bytes: &Bytes) -> Result<ServerFrame, Error> {
        let frame = decode_server(bytes, &self.limits)
            .map_err(|e| Error::Protocol(format!("undecodable frame: {e}")))?;
        if let ServerBody::MessageNew(m) = &frame.body {
            self.cursors.saw(m.conversation, m.id);
        }
        Ok(frame)
    }

    /// The next frame (backlog first).
    pub async fn next(&mut self) -> Result<ServerFrame, Error> {
        if let Some(f) = self.backlog.pop_front() {
            return Ok(f);
        }
        self.read().await?.ok_or(Error::Closed)
    }

    /// The next frame matching `pred`; others stay in the backlog, in order.
    pub async fn next_where(
        &mut self,
        pred: impl Fn(&ServerFrame) -> bool,
    ) -> Result<ServerFrame, Error> {
        self.next_where_or_closed(pred).await?.ok_or(Error::Closed)
    }

    /// Like `next_where`, but None when the connection ends.
    pub async fn next_where_or_closed(
        &mut self,
        pred: impl Fn(&ServerFrame) -> bool,
    ) -> Result<Option<ServerFrame>, Error> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Ok(self.backlog.remove(i));
        }
        loop {
            let Some(f) = self.read().await? else {
                return Ok(None);
            };
            if pred(&f) {
                return Ok(Some(f));
            }
            self.backlog.push_back(f);
        }
    }

    /// The frames waiting in the backlog.
    pub fn backlog(&self) -> &VecDeque<ServerFrame> {
        &self.backlog
    }

    /// Puts frames back at the end of the backlog (after looking at them).
    pub fn keep(&mut self, frames: Vec<ServerFrame>) {
        self.backlog.extend(frames);
    }

    /// A frame that arrives within `d`, or None (kept out of the backlog: the caller decides).
    pub async fn next_within(&mut self, d: Duration) -> Result<Option<ServerFrame>, Error> {
        if let Some(f) = self.backlog.pop_front() {
            return Ok(Some(f));
        }
        match tokio::time::timeout(d, self.reader.next()).await {
            Err(_) => Ok(None),
            Ok(Event::Frame(b) | Event::Datagram(b)) => Ok(Some(self.decode(&b)?)),
            Ok(Event::Closed(_)) => Err(Error::Closed),
        }
    }

    /// Sends and waits for the answer with the same seq.
    pub async fn request(&mut self, body: ClientBody) -> Result<ServerFrame, Error> {
        let seq = self.send(body).await?;
        self.next_where(|f| f.seq == seq).await
    }

    /// Sends a text message and returns its Ack (an Error answer as [`Error::Server`]).
    pub async fn send_text(
        &mut self,
        conversation: ConversationId,
        client_msg_id: &str,
        text: &str,
    ) -> Result<Ack, Error> {
        match self
            .request(text_message(conversation, client_msg_id, text))
            .await?
            .body
        {
            ServerBody::Ack(a) => {
                self.cursors.saw(conversation, a.message_id);
                Ok(a)
            }
            other => Err(unexpected("Ack", other)),
        }
    }

    /// The next MessageNew (other frames stay in the backlog).
    pub async fn next_message(&mut self) -> Result<Message, Error> {
        match self.next_where(is_message).await?.body {
            ServerBody::MessageNew(m) => Ok(m),
            other => Err(unexpected("MessageNew", other)),
        }
    }

    /// Waits for the connection to end; the fatal error code and close code seen.
    pub async fn closed(&mut self) -> Result<Closed, Error> {
        let mut error = None;
        for f in self.backlog.drain(..) {
            if let ServerBody::Error {
                code, fatal: true, ..
            } = f.body
            {
                error = Some(code);
            }
        }
        loop {
            let event = tokio::time::timeout(self.timeout, self.reader.next())
                .await
                .map_err(|_| Error::Timeout(self.timeout))?;
            match event {
                Event::Frame(b) | Event::Datagram(b) => {
                    if let Ok(ServerFrame {
                        body:
                            ServerBody::Error {
                                code, fatal: true, ..
                            },
                        ..
                    }) = decode_server(&b, &self.limits)
                    {
                        error = Some(code);
                    }
                }
                Event::Closed(code) => return Ok(Closed { error, code }),
            }
        }
    }

    /// Closes cleanly and waits (up to the timeout) for the server's side of the close.
    pub async fn close(mut self) {
        self.writer.close().await;
        let timeout = self.timeout;
        let _ = tokio::time::timeout(timeout, async {
            loop {
                if let Event::Closed(_) = self.reader.next().await {
                    break;
                }
            }
        })
        .await;
    }
}

fn unexpected(wanted: &'static str, got: ServerBody) -> Error {
    match got {
        ServerBody::Error { code, message, .. } => Error::Server { code, message },
        other => Error::Protocol(format!("expected {wanted}, got {other:?}")),
    }
}

/// A text Send.
pub fn text_message(conversation: ConversationId, client_msg_id: &str, text: &str) -> ClientBody {
    ClientBody::Send(SendMessage {
        conversation,
        client_msg_id: client_msg_id.into(),
        kind: MessageKind::Text,
        content: text.into(),
        media: None,
    })
}

/// Whether a frame is a MessageNew.
pub fn is_message(f: &ServerFrame) -> bool {
    matches!(f.body, ServerBody::MessageNew(_))
}

/// The error code of an Error frame.
pub fn error_code(f: &ServerFrame) -> Option<u16> {
    match f.body {
        ServerBody::Error { code, .. } => Some(code),
        _ => None,
    }
}
