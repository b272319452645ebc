// Encoding client frames and decoding server frames (FlatBuffers, `schema/chat.fbs`; the
// generated classes live in `../generated`, made by `schema/generate.sh`).

import * as flatbuffers from "flatbuffers";
import * as w from "../generated/parley/wire.js";
import { halvesToUuid, uuidToHalves } from "./uuid.js";
import {
  PROTOCOL_MAJOR,
  PROTOCOL_MINOR,
  type ClientRequest,
  type Conversation,
  type Media,
  type Message,
  type MessageKind,
  type ServerFrame,
} from "./types.js";

const KIND_NAMES: Record<number, MessageKind> = {
  [w.MessageKind.Text]: "text",
  [w.MessageKind.Image]: "image",
  [w.MessageKind.File]: "file",
  [w.MessageKind.Hidden]: "hidden",
};

const KIND_CODES: Record<"text" | "image" | "file", w.MessageKind> = {
  text: w.MessageKind.Text,
  image: w.MessageKind.Image,
  file: w.MessageKind.File,
};

function uuid(b: flatbuffers.Builder, id: string): flatbuffers.Offset {
  const [hi, lo] = uuidToHalves(id);
  return w.Uuid.createUuid(b, hi, lo);
}

function u64(s: string | undefined): bigint {
  if (s === undefined || s === "") return 0n;
  if (!/^\d{1,20}$/.test(s)) throw new TypeError(`not a message id: ${JSON.stringify(s)}`);
  const v = BigInt(s);
  if (v >= 1n << 64n) throw new TypeError(`not a message id: ${JSON.stringify(s)}`);
  return v;
}

/** One client frame, ready for a WebSocket binary message. */
export function encodeClientFrame(seq: number, req: ClientRequest): Uint8Array {
  const b = new flatbuffers.Builder(128);
  let type: w.ClientBody;
  let body: flatbuffers.Offset;
  switch (req.type) {
    case "hello": {
      const token = b.createString(req.token);
      const name = req.clientName === undefined ? 0 : b.createString(req.clientName);
      const points = req.resume.map((r) => {
        w.ResumePoint.startResumePoint(b);
        w.ResumePoint.addConversation(b, uuid(b, r.conversationId));
        w.ResumePoint.addLastMessageId(b, u64(r.id));
        w.ResumePoint.addLastSeq(b, BigInt(r.seq));
        return w.ResumePoint.endResumePoint(b);
      });
      const resume = points.length ? w.Hello.createResumeVector(b, points) : 0;
      w.Hello.startHello(b);
      w.Hello.addToken(b, token);
      w.Hello.addProtocolMajor(b, PROTOCOL_MAJOR);
      w.Hello.addProtocolMinor(b, PROTOCOL_MINOR);
      if (resume) w.Hello.addResume(b, resume);
      if (name) w.Hello.addClientName(b, name);
      body = w.Hello.endHello(b);
      type = w.ClientBody.Hello;
      break;
    }
    case "join":
      w.Join.startJoin(b);
      w.Join.addConversation(b, uuid(b, req.conversationId));
      body = w.Join.endJoin(b);
      type = w.ClientBody.Join;
      break;
    case "leave":
      w.Leave.startLeave(b);
      w.Leave.addConversation(b, uuid(b, req.conversationId));
      body = w.Leave.endLeave(b);
      type = w.ClientBody.Leave;
      break;
    case "send": {
      const cmid = b.createString(req.clientMsgId);
      const content = b.createString(req.content);
      let media = 0;
      if (req.mediaId !== undefined) {
        const id = b.createString(req.mediaId);
        w.MediaRef.startMediaRef(b);
        w.MediaRef.addMediaId(b, id);
        media = w.MediaRef.endMediaRef(b);
      }
      w.Send.startSend(b);
      w.Send.addConversation(b, uuid(b, req.conversationId));
      w.Send.addClientMsgId(b, cmid);
      w.Send.addKind(b, KIND_CODES[req.kind]);
      w.Send.addContent(b, content);
      if (media) w.Send.addMedia(b, media);
      body = w.Send.endSend(b);
      type = w.ClientBody.Send;
      break;
    }
    case "typing":
      w.Typing.startTyping(b);
      w.Typing.addConversation(b, uuid(b, req.conversationId));
      w.Typing.addActive(b, req.active);
      body = w.Typing.endTyping(b);
      type = w.ClientBody.Typing;
      break;
    case "read":
      w.Read.startRead(b);
      w.Read.addConversation(b, uuid(b, req.conversationId));
      w.Read.addUpTo(b, u64(req.upTo));
      body = w.Read.endRead(b);
      type = w.ClientBody.Read;
      break;
    case "history":
      w.History.startHistory(b);
      w.History.addConversation(b, uuid(b, req.conversationId));
      w.History.addBefore(b, u64(req.before));
      w.History.addLimit(b, req.limit ?? 0);
      body = w.History.endHistory(b);
      type = w.ClientBody.History;
      break;
    case "conversations": {
      const cursor = req.cursor ? b.createString(req.cursor) : 0;
      const query = req.query ? b.createString(req.query) : 0;
      w.Conversations.startConversations(b);
      if (cursor) w.Conversations.addCursor(b, cursor);
      w.Conversations.addLimit(b, req.limit ?? 0);
      if (query) w.Conversations.addQuery(b, query);
      body = w.Conversations.endConversations(b);
      type = w.ClientBody.Conversations;
      break;
    }
    case "ping":
      body = w.Ping.createPing(b, req.nonce);
      type = w.ClientBody.Ping;
      break;
    case "refresh": {
      const token = b.createString(req.token);
      body = w.Refresh.createRefresh(b, token);
      type = w.ClientBody.Refresh;
      break;
    }
    case "search": {
      const query = b.createString(req.query);
      w.Search.startSearch(b);
      w.Search.addQuery(b, query);
      if (req.conversationId) w.Search.addConversation(b, uuid(b, req.conversationId));
      w.Search.addBefore(b, u64(req.before));
      w.Search.addLimit(b, req.limit ?? 0);
      w.Search.addByRelevance(b, req.byRelevance ?? false);
      w.Search.addOffset(b, req.offset ?? 0);
      body = w.Search.endSearch(b);
      type = w.ClientBody.Search;
      break;
    }
    case "mute":
      w.Mute.startMute(b);
      w.Mute.addConversation(b, uuid(b, req.conversationId));
      w.Mute.addMuted(b, req.muted);
      w.Mute.addUntilMs(b, BigInt(req.untilMs ?? 0));
      body = w.Mute.endMute(b);
      type = w.ClientBody.Mute;
      break;
  }
  b.finish(w.ClientFrame.createClientFrame(b, seq, type, body));
  return b.asUint8Array();
}

function str(s: string | null): string {
  return s ?? "";
}

function opt(s: string | null): string | undefined {
  return s === null || s === "" ? undefined : s;
}

function conv(u: w.Uuid | null): string {
  return u ? halvesToUuid(u.hi(), u.lo()) : "";
}

function media(m: w.MediaRef | null): Media | undefined {
  if (!m) return undefined;
  const out: Media = {};
  const set = <K extends keyof Media>(k: K, v: Media[K] | undefined) => {
    if (v !== undefined && v !== 0 && v !== "") out[k] = v;
  };
  set("mediaId", opt(m.mediaId()));
  set("url", opt(m.url()));
  set("mimeType", opt(m.mimeType()));
  set("sizeBytes", Number(m.sizeBytes()));
  set("name", opt(m.name()));
  set("width", m.width());
  set("height", m.height());
  set("thumbnailUrl", opt(m.thumbnailUrl()));
  set("thumbnailWidth", m.thumbnailWidth());
  set("thumbnailHeight", m.thumbnailHeight());
  set("placeholder", opt(m.placeholder()));
  set("durationMs", m.durationMs());
  return out;
}

function message(m: w.Message): Message {
  const out: Message = {
    id: m.id().toString(),
    conversationId: conv(m.conversation()),
    senderId: str(m.senderId()),
    kind: KIND_NAMES[m.kind()] ?? "text",
    content: str(m.content()),
    createdAt: Number(m.createdAtMs()),
    seq: Number(m.seq()),
  };
  const md = media(m.media());
  if (md) out.media = md;
  const cmid = opt(m.clientMsgId());
  if (cmid) out.clientMsgId = cmid;
  return out;
}

function conversation(c: w.ConversationItem): Conversation {
  const ids: string[] = [];
  for (let i = 0; i < c.participantIdsLength(); i++) ids.push(str(c.participantIds(i)));
  const last = c.lastMessage();
  const out: Conversation = {
    id: conv(c.id()),
    kind: c.kind() === w.ConversationKind.Group ? "group" : "direct",
    participantIds: ids,
    participantCount: c.participantCount() || ids.length,
    createdAt: Number(c.createdAtMs()),
    lastActivityAt: Number(c.lastActivityMs()),
    unreadCount: c.unreadCount(),
    lastSeq: Number(c.lastSeq()),
  };
  const title = opt(c.title());
  if (title) out.title = title;
  const listing = opt(c.listingId());
  if (listing) out.listingId = listing;
  const buyer = opt(c.buyerId());
  if (buyer) out.buyerId = buyer;
  const seller = opt(c.sellerId());
  if (seller) out.sellerId = seller;
  if (last) out.lastMessage = message(last);
  return out;
}

/**
 * One server frame decoded into plain objects. Throws on bytes that are not a frame (the
 * client treats that as a broken connection).
 */
export function decodeServerFrame(bytes: Uint8Array): ServerFrame {
  // FlatBuffers' TypeScript reader does not verify: check the root offset at least, so a
  // truncated frame is an error instead of zeros read past its end.
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (bytes.length < 12 || bb.readUint32(0) + 4 > bytes.length) throw new Error("not a ServerFrame");
  const f = w.ServerFrame.getRootAsServerFrame(bb);
  const seq = f.seq();
  switch (f.bodyType()) {
    case w.ServerBody.Welcome: {
      const x = f.body(new w.Welcome()) as w.Welcome;
      return {
        seq,
        type: "welcome",
        welcome: {
          userId: str(x.userId()),
          sessionId: x.sessionId().toString(),
          nodeId: x.nodeId(),
          heartbeatMs: x.heartbeatMs(),
          idleTimeoutMs: x.idleTimeoutMs(),
          protocolMajor: x.protocolMajor(),
          protocolMinor: x.protocolMinor(),
          maxFrameBytes: x.maxFrameBytes(),
          maxMessageChars: x.maxMessageChars(),
          serverTimeMs: Number(x.serverTimeMs()),
          tokenExpiresMs: Number(x.tokenExpiresMs()),
        },
      };
    }
    case w.ServerBody.Ack: {
      const x = f.body(new w.Ack()) as w.Ack;
      return {
        seq,
        type: "ack",
        ack: {
          messageId: x.messageId().toString(),
          createdAt: Number(x.createdAtMs()),
          duplicate: x.duplicate(),
          messageSeq: Number(x.messageSeq()),
        },
      };
    }
    case w.ServerBody.MessageNew: {
      const x = f.body(new w.MessageNew()) as w.MessageNew;
      const m = x.message();
      if (!m) throw new Error("MessageNew without a message");
      return { seq, type: "message", message: message(m) };
    }
    case w.ServerBody.TypingEvent: {
      const x = f.body(new w.TypingEvent()) as w.TypingEvent;
      return {
        seq,
        type: "typing",
        typing: { conversationId: conv(x.conversation()), userId: str(x.userId()), active: x.active() },
      };
    }
    case w.ServerBody.MessageRead: {
      const x = f.body(new w.MessageRead()) as w.MessageRead;
      return {
        seq,
        type: "read",
        read: {
          conversationId: conv(x.conversation()),
          readerId: str(x.readerId()),
          upTo: x.upTo().toString(),
          readAt: Number(x.readAtMs()),
        },
      };
    }
    case w.ServerBody.HistoryPage: {
      const x = f.body(new w.HistoryPage()) as w.HistoryPage;
      const messages: Message[] = [];
      for (let i = 0; i < x.messagesLength(); i++) {
        const m = x.messages(i);
        if (m) messages.push(message(m));
      }
      return {
        seq,
        type: "history",
        page: { conversationId: conv(x.conversation()), messages, nextBefore: x.nextBefore().toString() },
      };
    }
    case w.ServerBody.ConversationPage: {
      const x = f.body(new w.ConversationPage()) as w.ConversationPage;
      const items: Conversation[] = [];
      for (let i = 0; i < x.itemsLength(); i++) {
        const c = x.items(i);
        if (c) items.push(conversation(c));
      }
      const next = opt(x.nextCursor());
      return { seq, type: "conversations", page: next ? { items, nextCursor: next } : { items } };
    }
    case w.ServerBody.Presence: {
      const x = f.body(new w.Presence()) as w.Presence;
      return {
        seq,
        type: "presence",
        presence: { userId: str(x.userId()), online: x.online(), lastSeenMs: Number(x.lastSeenMs()) },
      };
    }
    case w.ServerBody.Error: {
      const x = f.body(new w.Error()) as w.Error;
      return { seq, type: "error", error: { code: x.code(), message: str(x.message()), fatal: x.fatal() } };
    }
    case w.ServerBody.Pong: {
      const x = f.body(new w.Pong()) as w.Pong;
      return { seq, type: "pong", nonce: x.nonce(), serverTimeMs: Number(x.serverTimeMs()) };
    }
    case w.ServerBody.Resumed: {
      const x = f.body(new w.Resumed()) as w.Resumed;
      return {
        seq,
        type: "resumed",
        resumed: {
          conversationId: conv(x.conversation()),
          replayed: x.replayed(),
          complete: x.complete(),
          lastSeq: Number(x.lastSeq()),
        },
      };
    }
    case w.ServerBody.ConversationDeleted: {
      const x = f.body(new w.ConversationDeleted()) as w.ConversationDeleted;
      return { seq, type: "conversationDeleted", conversationId: conv(x.conversation()), byUserId: str(x.byUserId()) };
    }
    case w.ServerBody.ConversationUpdated: {
      const x = f.body(new w.ConversationUpdated()) as w.ConversationUpdated;
      const c = x.conversation();
      if (!c) throw new Error("ConversationUpdated without a conversation");
      return { seq, type: "conversationUpdated", conversation: conversation(c) };
    }
    case w.ServerBody.Goaway: {
      const x = f.body(new w.Goaway()) as w.Goaway;
      return { seq, type: "goaway", reason: str(x.reason()), reconnectAfterMs: x.reconnectAfterMs() };
    }
    case w.ServerBody.SearchResults: {
      const x = f.body(new w.SearchResults()) as w.SearchResults;
      const hits = [];
      for (let i = 0; i < x.hitsLength(); i++) {
        const h = x.hits(i);
        if (!h) continue;
        const flat = h.highlightsArray() ?? new Uint32Array();
        const highlights: Array<[number, number]> = [];
        for (let j = 0; j + 1 < flat.length; j += 2) highlights.push([flat[j]!, flat[j + 1]!]);
        hits.push({
          conversationId: conv(h.conversation()),
          messageId: h.messageId().toString(),
          seq: Number(h.seq()),
          senderId: str(h.senderId()),
          createdAt: Number(h.createdAtMs()),
          snippet: str(h.snippet()),
          highlights,
        });
      }
      return {
        seq,
        type: "searchResults",
        results: { hits, nextBefore: x.nextBefore().toString(), nextOffset: x.nextOffset() },
      };
    }
    default:
      return { seq, type: "unknown" };
  }
}
