//! The engine behind `direct`, `rooms` and `mixed`: members connect, senders send on an open-loop
//! schedule, every recipient checks sequence numbers and measures send → deliver latency from
//! the scheduled send time carried in the message (so a stalled client cannot hide latency:
//! no coordinated omission).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use parley_client::Cursors;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{ServerPeek, peek_server};
use parley_proto::{ClientBody, ResumePoint, SendMessage};
use parley_types::{ConversationId, MessageId, MessageKind, Position};
use tokio::time::Instant;

use crate::client::{self, Reader, Via, Writer};
use crate::ctx::{Ctx, Pacer};
use crate::stats::{self, SeqSet, Series, now_ns};

/// One connected user.
pub struct Member {
    pub user: String,
    /// The conversation it sends to (and resumes).
    pub conversation: ConversationId,
    pub sends: bool,
}

/// Who sends what to whom.
pub struct Topology {
    pub members: Vec<Member>,
    /// For each member index: the members that must receive what it sends.
    pub receivers: Vec<Vec<u32>>,
}

/// Behaviour of senders.
#[derive(Clone)]
pub struct Behaviour {
    /// Messages per second per sending member.
    pub rate: f64,
    /// Message content size in bytes (at least the header).
    pub size: usize,
    /// Probability of a typing start before a send.
    pub typing: f64,
    /// Probability of marking a received message read.
    pub read: f64,
    /// Reconnect (with resume) this often per member, if set.
    pub reconnect_every: Option<Duration>,
}

struct Pending {
    frame_seq: u32,
    /// 0 for requests that are not messages (reads).
    msg_seq: u32,
    sched_ns: u64,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Pending>,
    acked: SeqSet,
    /// Per sender: what this member received.
    seen: HashMap<u32, SeqSet>,
    duplicates: u64,
    /// Where this member is in its conversation (its own messages included): the resume point.
    cursors: Cursors,
    to_read: Option<MessageId>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Result of a chat run beyond the recorded stats.
pub struct Outcome {
    pub expected_deliveries: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Messages that arrived above the next seq of their conversation (out of order).
    pub gaps: u64,
    /// Seconds of the sending phase.
    pub measured_s: f64,
}

fn content(idx: u32, seq: u32, sched_ns: u64, size: usize) -> String {
    let mut s = format!("lt|{idx}|{seq}|{sched_ns}|");
    if s.len() < size {
        s.extend(std::iter::repeat_n('x', size - s.len()));
    }
    s
}

/// `lt|idx|seq|ns|…` → (idx, seq, ns).
fn parse(content: &str) -> Option<(u32, u32, u64)> {
    let mut it = content.strip_prefix("lt|")?.splitn(4, '|');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// Reads until the connection ends.
async fn read_loop(
    mut reader: Reader,
    state: Shared,
    me: u32,
    conversation: ConversationId,
    read_prob: f64,
) {
    let limits = DecodeLimits::server();
    let mut rng = fastrand(me as u64 + 1);
    while let Some(bytes) = reader.next().await {
        match peek_server(&bytes, &limits) {
            Ok(ServerPeek::MessageNew {
                conversation,
                id,
                message_seq,
                content,
                ..
            }) => {
                let at = Position {
                    seq: message_seq,
                    id,
                };
                lock(&state).cursors.saw(conversation, at);
                let Some((from, seq, sched_ns)) = parse(content) else {
                    continue;
                };
                if from == me {
                    // Our own message replayed by a resume: not a delivery to us.
                    continue;
                }
                let latency = now_ns().saturating_sub(sched_ns) / 1000;
                let fresh = {
                    let mut s = lock(&state);
                    if read_prob > 0.0 && next_f64(&mut rng) < read_prob {
                        s.to_read = Some(id);
                    }
                    let fresh = s.seen.entry(from).or_default().insert(seq);
                    if !fresh {
                        s.duplicates += 1;
                    }
                    fresh
                };
                if fresh {
                    stats::with(|r| {
                        r.delivered += 1;
                        r.record(Series::Deliver, latency);
                    });
                }
            }
            Ok(ServerPeek::Ack {
                seq,
                message_id,
                message_seq,
            }) => {
                let done = {
                    let mut s = lock(&state);
                    match s.pending.front() {
                        Some(p) if p.frame_seq == seq => {
                            let p = s.pending.pop_front();
                            if let Some(p) = &p
                                && p.msg_seq != 0
                            {
                                s.acked.insert(p.msg_seq);
                                let at = Position {
                                    seq: message_seq,
                                    id: message_id,
                                };
                                s.cursors.saw(conversation, at);
                            }
                            p
                        }
                        _ => None,
                    }
                };
                if let Some(p) = done
                    && p.msg_seq != 0
                {
                    let latency = now_ns().saturating_sub(p.sched_ns) / 1000;
                    stats::with(|r| {
                        r.acked += 1;
                        r.record(Series::Ack, latency);
                    });
                }
            }
            Ok(ServerPeek::Error { seq, code, .. }) => {
                let mut s = lock(&state);
                if s.pending.front().is_some_and(|p| p.frame_seq == seq) {
                    s.pending.pop_front();
                }
                drop(s);
                stats::with(|r| r.error(code));
            }
            Ok(ServerPeek::Other { .. }) => {}
            Err(_) => stats::with(|r| r.error(0)),
        }
    }
}

/// A tiny xorshift so behaviour is reproducible per member without a dependency.
fn fastrand(seed: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn next_f64(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

struct Conn {
    writer: Writer,
    reader_task: tokio::task::JoinHandle<()>,
}

async fn open(
    ctx: &Ctx,
    i: usize,
    via: &Via,
    member: &Member,
    state: &Shared,
    read_prob: f64,
    resume: bool,
) -> anyhow::Result<Conn> {
    let token = ctx.token(&member.user);
    let points = if resume {
        let at = lock(state).cursors.get(member.conversation);
        vec![ResumePoint::at(member.conversation, at)]
    } else {
        Vec::new()
    };
    let session = client::connect(via, &token, points).await;
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            stats::with(|r| r.connect_failures += 1);
            return Err(e);
        }
    };
    let series = if resume {
        Series::Reconnect
    } else {
        Series::Connect
    };
    stats::with(|r| {
        r.connects += 1;
        r.zero_rtt += u64::from(session.zero_rtt);
        r.record(series, session.connect_us);
    });
    let reader_task = tokio::spawn(read_loop(
        session.reader,
        state.clone(),
        i as u32,
        member.conversation,
        read_prob,
    ));
    Ok(Conn {
        writer: session.writer,
        reader_task,
    })
}

/// Sends on schedule until `end`; reconnects with resume when asked to.
/// Closes the connection and opens a new one that resumes (QUIC: with 0-RTT).
async fn reconnect(
    ctx: &Arc<Ctx>,
    i: usize,
    member: &Member,
    state: &Shared,
    mut conn: Conn,
    read: f64,
) -> Option<Conn> {
    conn.writer.close().await;
    let _ = (&mut conn.reader_task).await;
    lock(state).pending.clear();
    stats::with(|r| r.disconnects += 1);
    let via = ctx.via(i).reconnecting();
    open(ctx, i, &via, member, state, read, true).await.ok()
}

/// The read receipt owed (if any) and a typing refresh (if `typing`) before a send.
async fn extras(
    conn: &mut Conn,
    member: &Member,
    state: &Shared,
    sched_ns: u64,
    typing: bool,
) -> anyhow::Result<()> {
    let to_read = lock(state).to_read.take();
    if let Some(up_to) = to_read {
        // Register before writing: the answer may be read before `send` returns.
        lock(state).pending.push_back(Pending {
            frame_seq: conn.writer.next_seq(),
            msg_seq: 0,
            sched_ns,
        });
        let read = ClientBody::Read {
            conversation: member.conversation,
            up_to,
        };
        conn.writer.send(read).await?;
    }
    if typing {
        let typing = ClientBody::Typing {
            conversation: member.conversation,
            active: true,
        };
        conn.writer.send(typing).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn send_loop(
    ctx: Arc<Ctx>,
    i: usize,
    member: Arc<Member>,
    state: Shared,
    mut conn: Conn,
    behaviour: Behaviour,
    start: Instant,
    end: Instant,
) -> Option<Conn> {
    let mut rng = fastrand(i as u64 + 7);
    // Spread senders' phases over one interval so they do not all fire at once.
    let offset = Duration::from_secs_f64(next_f64(&mut rng) / behaviour.rate.max(1e-6));
    let mut pacer = Pacer::new(behaviour.rate, start + offset);
    let mut next_reconnect = behaviour
        .reconnect_every
        .map(|d| start + d.mul_f64(0.5 + next_f64(&mut rng)));
    let mut seq = 0u32;
    loop {
        let at = pacer.tick().await;
        if at >= end {
            break;
        }
        if let Some(t) = next_reconnect
            && at >= t
        {
            next_reconnect = behaviour.reconnect_every.map(|d| at + d);
            conn = reconnect(&ctx, i, &member, &state, conn, behaviour.read).await?;
        }
        let sched_ns = now_ns().saturating_sub(at.elapsed().as_nanos() as u64);
        let typing = behaviour.typing > 0.0 && next_f64(&mut rng) < behaviour.typing;
        if extras(&mut conn, &member, &state, sched_ns, typing)
            .await
            .is_err()
        {
            break;
        }
        seq += 1;
        let body = ClientBody::Send(SendMessage {
            conversation: member.conversation,
            client_msg_id: format!("{i}-{seq}"),
            kind: MessageKind::Text,
            content: content(i as u32, seq, sched_ns, behaviour.size),
            media: None,
        });
        // Register before writing: the Ack may be read before `send` returns.
        lock(&state).pending.push_back(Pending {
            frame_seq: conn.writer.next_seq(),
            msg_seq: seq,
            sched_ns,
        });
        if conn.writer.send(body).await.is_err() {
            stats::with(|r| r.disconnects += 1);
            break;
        }
        stats::with(|r| r.sent += 1);
    }
    Some(conn)
}

/// Connects everyone, runs the schedule for the run's duration, drains, and accounts for loss.
pub async fn run(
    ctx: Arc<Ctx>,
    topology: Topology,
    behaviour: Behaviour,
) -> anyhow::Result<Outcome> {
    let n = topology.members.len();
    let members: Vec<Arc<Member>> = topology.members.into_iter().map(Arc::new).collect();
    let states: Vec<Shared> = (0..n).map(|_| Shared::default()).collect();
    let conns = connect_all(&ctx, &members, &states, behaviour.read).await?;
    if !ctx.quiet {
        eprintln!("connected {n} members; sending for {:?}", ctx.duration);
    }

    let start = Instant::now() + Duration::from_millis(100);
    let end = start + ctx.duration;
    let mut senders = Vec::new();
    let mut idle = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        if members[i].sends {
            senders.push(tokio::spawn(send_loop(
                ctx.clone(),
                i,
                members[i].clone(),
                states[i].clone(),
                conn,
                behaviour.clone(),
                start,
                end,
            )));
        } else {
            idle.push(conn);
        }
    }
    let mut open_conns = idle;
    for s in senders {
        open_conns.extend(s.await?);
    }
    let measured_s = start
        .elapsed()
        .as_secs_f64()
        .min(ctx.duration.as_secs_f64());

    drain(&ctx, &states, &topology.receivers).await;
    let outcome = account(&states, &topology.receivers, measured_s);
    for mut c in open_conns {
        c.writer.close().await;
        c.reader_task.abort();
    }
    Ok(outcome)
}

/// Connects every member at the configured rate.
async fn connect_all(
    ctx: &Arc<Ctx>,
    members: &[Arc<Member>],
    states: &[Shared],
    read: f64,
) -> anyhow::Result<Vec<Conn>> {
    let mut pacer = Pacer::new(ctx.connect_rate, Instant::now());
    let mut connecting = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        pacer.tick().await;
        let (ctx, m, state) = (ctx.clone(), m.clone(), states[i].clone());
        connecting.push(tokio::spawn(async move {
            let via = ctx.via(i);
            open(&ctx, i, &via, &m, &state, read, false).await
        }));
    }
    let mut conns = Vec::with_capacity(members.len());
    for (i, c) in connecting.into_iter().enumerate() {
        let conn = c
            .await?
            .with_context(|| format!("member {i} could not connect"))?;
        conns.push(conn);
    }
    Ok(conns)
}

/// Waits (up to `--drain`) until every send is answered and every acknowledged message
/// arrived.
async fn drain(ctx: &Ctx, states: &[Shared], receivers: &[Vec<u32>]) {
    let outstanding = || -> bool {
        let mut expected = 0;
        let mut seen = 0;
        let mut pending = 0;
        for (i, s) in states.iter().enumerate() {
            let s = lock(s);
            pending += s.pending.len();
            expected += s.acked.len() * receivers[i].len() as u64;
        }
        for s in states {
            seen += lock(s).seen.values().map(SeqSet::len).sum::<u64>();
        }
        pending > 0 || seen < expected
    };
    let until = Instant::now() + ctx.drain;
    while outstanding() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Loss: acknowledged sends some expected recipient never saw; and duplicates.
fn account(states: &[Shared], receivers: &[Vec<u32>], measured_s: f64) -> Outcome {
    let mut lost = 0;
    let mut expected_deliveries = 0;
    for (sender, receivers) in receivers.iter().enumerate() {
        let acked = lock(&states[sender]).acked.clone();
        for r in receivers {
            expected_deliveries += acked.len();
            let s = lock(&states[*r as usize]);
            let empty = SeqSet::default();
            let seen = s.seen.get(&(sender as u32)).unwrap_or(&empty);
            lost += acked.missing_from(seen);
        }
    }
    let duplicates = states.iter().map(|s| lock(s).duplicates).sum();
    let gaps = states.iter().map(|s| lock(s).cursors.gaps).sum();
    Outcome {
        expected_deliveries,
        lost,
        duplicates,
        gaps,
        measured_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_carries_sender_sequence_and_time() {
        let c = content(7, 42, 123_456_789, 64);
        assert_eq!(c.len(), 64);
        assert_eq!(parse(&c), Some((7, 42, 123_456_789)));
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("lt|x|1|2|"), None);
    }
}
