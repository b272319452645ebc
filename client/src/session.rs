//! A protocol session over a [`crate::link`]: Hello → Welcome, requests answered by `seq`,
//! events kept in order, and per conversation the position to resume from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::decode_server;
use parley_proto::{
    Ack, ClientBody, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, ResumePoint, SendMessage, ServerBody,
    ServerFrame, Welcome,
};
use parley_types::{ConversationId, Message, MessageId, MessageKind, Position};

use crate::Error;
use crate::link::{Event, Link, Reader, Via, Writer, WriterInner, open};

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

/// What [`Cursors::saw`] made of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Next in line (or the first of its conversation): the position moved.
    New,
    /// At or below the position (or already seen ahead of it).
    Repeat,
    /// Above the next seq: kept aside; the position waits at the last message before the gap
    /// (`missing` is the first seq not seen).
    Gap { missing: u64 },
}

/// One conversation's position: the last message of the unbroken run from where this client
/// started, and messages seen beyond a gap.
#[derive(Clone, Debug, Default)]
struct Line {
    at: Position,
    ahead: BTreeMap<u64, MessageId>,
}

/// Per conversation, the last message this client has *with every one before it* (since it
/// started following the conversation): what it resumes from. Messages are numbered by `seq`
/// (1, 2, 3, …) per conversation; the server sends them in that order, so a gap means
/// something went missing, and the position stays below it — a resume from there gets the
/// missing ones (and repeats of the rest, which [`Cursors::saw`] recognises).
#[derive(Clone, Debug, Default)]
pub struct Cursors {
    lines: HashMap<ConversationId, Line>,
    /// Gaps seen (messages that arrived above the next seq).
    pub gaps: u64,
    /// Repeats seen.
    pub repeats: u64,
}

impl Cursors {
    /// Records message `at` of `conversation` (a MessageNew, or the Ack of one's own Send).
    /// The first message of a conversation without a position starts it.
    pub fn saw(&mut self, conversation: ConversationId, at: Position) -> Seen {
        if at.seq == 0 {
            // A server before protocol 1.1: ids only, no order to check.
            let line = self.lines.entry(conversation).or_default();
            line.at.id = line.at.id.max(at.id);
            return Seen::New;
        }
        let Some(line) = self.lines.get_mut(&conversation) else {
            self.lines.insert(
                conversation,
                Line {
                    at,
                    ahead: BTreeMap::new(),
                },
            );
            return Seen::New;
        };
        if at.seq <= line.at.seq || line.ahead.contains_key(&at.seq) {
            self.repeats += 1;
            return Seen::Repeat;
        }
        if at.seq > line.at.seq + 1 {
            line.ahead.insert(at.seq, at.id);
            self.gaps += 1;
            return Seen::Gap {
                missing: line.at.seq + 1,
            };
        }
        line.at = at;
        while let Some(id) = line.ahead.remove(&(line.at.seq + 1)) {
            line.at = Position {
                seq: line.at.seq + 1,
                id,
            };
        }
        Seen::New
    }

    /// Sets the position in `conversation` (a saved one, or the newest message of a freshly
    /// loaded history); never moves it back.
    pub fn set(&mut self, conversation: ConversationId, at: Position) {
        let line = self.lines.entry(conversation).or_default();
        if at.seq > line.at.seq {
            line.at = at;
            line.ahead.retain(|seq, _| *seq > at.seq);
            while let Some(id) = line.ahead.remove(&(line.at.seq + 1)) {
                line.at = Position {
                    seq: line.at.seq + 1,
                    id,
                };
            }
        }
    }

    /// The position in `conversation` (`Position::default()`: nothing yet).
    pub fn get(&self, conversation: ConversationId) -> Position {
        self.lines
            .get(&conversation)
            .map(|l| l.at)
            .unwrap_or_default()
    }

    /// Conversations with messages seen beyond a gap.
    pub fn with_gaps(&self) -> Vec<ConversationId> {
        self.lines
            .iter()
            .filter(|(_, l)| !l.ahead.is_empty())
            .map(|(c, _)| *c)
            .collect()
    }

    /// A resume point per conversation the client has a position in.
    pub fn resume_points(&self) -> Vec<ResumePoint> {
        self.lines
            .iter()
            .filter(|(_, l)| l.at != Position::default())
            .map(|(c, l)| ResumePoint::at(*c, l.at))
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

    /// Hands the session a fresh token (protocol 1.2) before its current one expires
    /// (`Welcome::token_expires_ms`); returns the new expiry (Unix ms).
    pub async fn refresh(&mut self, token: &str) -> Result<i64, Error> {
        let body = ClientBody::Refresh {
            token: token.to_owned(),
        };
        match self.request(body).await?.body {
            ServerBody::Ack(a) => Ok(a.created_at_ms),
            other => Err(unexpected("Ack", other)),
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
            self.cursors.saw(m.conversation, Position::of(m));
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
                let at = Position {
                    seq: a.message_seq,
                    id: a.message_id,
                };
                self.cursors.saw(conversation, at);
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

    /// Ends the connection abruptly: a TCP reset over WebSocket, the connection dropped without
    /// a word over QUIC (the server learns it at its idle timeout, or from the stateless reset
    /// when the client's port is gone).
    pub fn abort(mut self) {
        if let WriterInner::WebSocket(w) = self.writer.inner() {
            let _ = w.abort();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64) -> Position {
        Position {
            seq,
            id: MessageId(1000 + seq),
        }
    }

    #[test]
    fn the_position_is_the_end_of_the_unbroken_run() {
        let mut c = Cursors::default();
        let conv = ConversationId::random();
        assert_eq!(c.saw(conv, at(7)), Seen::New, "the first message starts it");
        assert_eq!(c.saw(conv, at(8)), Seen::New);
        assert_eq!(c.saw(conv, at(8)), Seen::Repeat);
        assert_eq!(c.saw(conv, at(10)), Seen::Gap { missing: 9 });
        assert_eq!(c.saw(conv, at(11)), Seen::Gap { missing: 9 });
        assert_eq!(c.get(conv), at(8), "resume from before the gap");
        assert_eq!(c.with_gaps(), vec![conv]);
        assert_eq!(c.saw(conv, at(9)), Seen::New);
        assert_eq!(c.get(conv), at(11), "the gap closed: the run goes on");
        assert_eq!(c.saw(conv, at(10)), Seen::Repeat);
        assert_eq!((c.gaps, c.repeats), (2, 2));
        assert!(c.with_gaps().is_empty());
        let points = c.resume_points();
        assert_eq!(points, vec![ResumePoint::at(conv, at(11))]);
    }

    #[test]
    fn set_moves_forward_only() {
        let mut c = Cursors::default();
        let conv = ConversationId::random();
        c.set(conv, at(5));
        assert_eq!(c.saw(conv, at(7)), Seen::Gap { missing: 6 });
        c.set(conv, at(3));
        assert_eq!(c.get(conv), at(5));
        c.set(conv, at(6));
        assert_eq!(c.get(conv), at(7));
    }
}
