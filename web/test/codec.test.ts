import * as flatbuffers from "flatbuffers";
import { describe, expect, it } from "vitest";
import * as w from "../src/generated/parley/wire.js";
import { decodeServerFrame, encodeClientFrame } from "../src/sdk/codec.js";
import { halvesToUuid, uuidToHalves } from "../src/sdk/uuid.js";

const CONV = "0190f5a2-7c3e-7abc-8def-0123456789ab";

function clientFrame(bytes: Uint8Array): w.ClientFrame {
  return w.ClientFrame.getRootAsClientFrame(new flatbuffers.ByteBuffer(bytes));
}

function server(build: (b: flatbuffers.Builder) => [w.ServerBody, flatbuffers.Offset], seq = 0): Uint8Array {
  const b = new flatbuffers.Builder(256);
  const [type, body] = build(b);
  b.finish(w.ServerFrame.createServerFrame(b, seq, type, body));
  return b.asUint8Array();
}

function message(b: flatbuffers.Builder, id: bigint, seq: bigint, content: string): flatbuffers.Offset {
  const [hi, lo] = uuidToHalves(CONV);
  const sender = b.createString("bob");
  const text = b.createString(content);
  w.Message.startMessage(b);
  w.Message.addId(b, id);
  w.Message.addConversation(b, w.Uuid.createUuid(b, hi, lo));
  w.Message.addSenderId(b, sender);
  w.Message.addContent(b, text);
  w.Message.addCreatedAtMs(b, 1_700_000_000_000n);
  w.Message.addSeq(b, seq);
  return w.Message.endMessage(b);
}

describe("uuid", () => {
  it("round-trips through its halves", () => {
    const [hi, lo] = uuidToHalves(CONV.toUpperCase());
    expect(halvesToUuid(hi, lo)).toBe(CONV);
    expect(halvesToUuid(0n, 1n)).toBe("00000000-0000-0000-0000-000000000001");
  });
  it("refuses what is not a uuid", () => {
    for (const bad of ["", "x", CONV + "0", CONV.replace(/-/g, "")]) expect(() => uuidToHalves(bad)).toThrow(TypeError);
  });
});

describe("client frames", () => {
  it("encodes a Hello with resume points and the protocol version", () => {
    const f = clientFrame(
      encodeClientFrame(7, { type: "hello", token: "tok", resume: [{ conversationId: CONV, seq: 12, id: "18446744073709551615" }], clientName: "t" }),
    );
    expect(f.seq()).toBe(7);
    expect(f.bodyType()).toBe(w.ClientBody.Hello);
    const h = f.body(new w.Hello()) as w.Hello;
    expect([h.token(), h.protocolMajor(), h.protocolMinor(), h.clientName()]).toEqual(["tok", 1, 5, "t"]);
    const r = h.resume(0)!;
    expect(halvesToUuid(r.conversation()!.hi(), r.conversation()!.lo())).toBe(CONV);
    expect(r.lastSeq()).toBe(12n);
    expect(r.lastMessageId()).toBe(18446744073709551615n);
  });

  it("encodes a Send with its idempotency key and media id", () => {
    const f = clientFrame(encodeClientFrame(3, { type: "send", conversationId: CONV, clientMsgId: "c1", kind: "image", content: "hi", mediaId: "m1" }));
    const s = f.body(new w.Send()) as w.Send;
    expect([s.clientMsgId(), s.kind(), s.content(), s.media()!.mediaId()]).toEqual(["c1", w.MessageKind.Image, "hi", "m1"]);
  });

  it("encodes History, Read, Search, Conversations and Mute", () => {
    const h = clientFrame(encodeClientFrame(1, { type: "history", conversationId: CONV, before: "99", limit: 50 })).body(new w.History()) as w.History;
    expect([h.before(), h.limit()]).toEqual([99n, 50]);
    const r = clientFrame(encodeClientFrame(1, { type: "read", conversationId: CONV, upTo: "5" })).body(new w.Read()) as w.Read;
    expect(r.upTo()).toBe(5n);
    const s = clientFrame(encodeClientFrame(1, { type: "search", query: "lego", byRelevance: true, offset: 20 })).body(new w.Search()) as w.Search;
    expect([s.query(), s.byRelevance(), s.offset(), s.conversation()]).toEqual(["lego", true, 20, null]);
    const c = clientFrame(encodeClientFrame(1, { type: "conversations", cursor: "abc", query: "bob" })).body(new w.Conversations()) as w.Conversations;
    expect([c.cursor(), c.query()]).toEqual(["abc", "bob"]);
    const m = clientFrame(encodeClientFrame(1, { type: "mute", conversationId: CONV, muted: true, untilMs: 1_790_000_000_000 })).body(new w.Mute()) as w.Mute;
    expect([m.muted(), m.untilMs()]).toEqual([true, 1_790_000_000_000n]);
    const u = clientFrame(encodeClientFrame(1, { type: "mute", conversationId: CONV, muted: false })).body(new w.Mute()) as w.Mute;
    expect([u.muted(), u.untilMs()]).toEqual([false, 0n]);
  });

  it("refuses bad ids before anything is sent", () => {
    expect(() => encodeClientFrame(1, { type: "join", conversationId: "nope" })).toThrow(TypeError);
    expect(() => encodeClientFrame(1, { type: "read", conversationId: CONV, upTo: "-1" })).toThrow(TypeError);
    expect(() => encodeClientFrame(1, { type: "read", conversationId: CONV, upTo: "18446744073709551616" })).toThrow(TypeError);
  });
});

describe("server frames", () => {
  it("decodes a MessageNew with ids above 2^53 as strings", () => {
    const f = decodeServerFrame(
      server((b) => {
        const m = message(b, 9_007_199_254_740_993n, 3n, "Lego castle?");
        return [w.ServerBody.MessageNew, w.MessageNew.createMessageNew(b, m)];
      }),
    );
    expect(f).toEqual({
      seq: 0,
      type: "message",
      message: { id: "9007199254740993", conversationId: CONV, senderId: "bob", kind: "text", content: "Lego castle?", createdAt: 1_700_000_000_000, seq: 3 },
    });
  });

  it("decodes an Ack, an Error and a HistoryPage", () => {
    const ack = decodeServerFrame(server((b) => [w.ServerBody.Ack, w.Ack.createAck(b, 42n, 5n, true, 2n)], 9));
    expect(ack).toEqual({ seq: 9, type: "ack", ack: { messageId: "42", createdAt: 5, duplicate: true, messageSeq: 2 } });
    const err = decodeServerFrame(
      server((b) => {
        const msg = b.createString("slow down");
        return [w.ServerBody.Error, w.Error.createError(b, 1400, msg, false)];
      }, 4),
    );
    expect(err).toEqual({ seq: 4, type: "error", error: { code: 1400, message: "slow down", fatal: false } });
    const page = decodeServerFrame(
      server((b) => {
        const ms = [message(b, 2n, 2n, "b"), message(b, 1n, 1n, "a")];
        const vec = w.HistoryPage.createMessagesVector(b, ms);
        const [hi, lo] = uuidToHalves(CONV);
        w.HistoryPage.startHistoryPage(b);
        w.HistoryPage.addConversation(b, w.Uuid.createUuid(b, hi, lo));
        w.HistoryPage.addMessages(b, vec);
        w.HistoryPage.addNextBefore(b, 1n);
        return [w.ServerBody.HistoryPage, w.HistoryPage.endHistoryPage(b)];
      }),
    );
    expect(page.type === "history" && page.page.messages.map((m) => m.content)).toEqual(["b", "a"]);
    expect(page.type === "history" && page.page.nextBefore).toBe("1");
  });

  it("decodes search hits with highlight pairs", () => {
    const f = decodeServerFrame(
      server((b) => {
        const snippet = b.createString("the Lego castle");
        const hl = w.SearchHit.createHighlightsVector(b, [4, 8, 9, 15]);
        const [hi, lo] = uuidToHalves(CONV);
        w.SearchHit.startSearchHit(b);
        w.SearchHit.addConversation(b, w.Uuid.createUuid(b, hi, lo));
        w.SearchHit.addMessageId(b, 77n);
        w.SearchHit.addSnippet(b, snippet);
        w.SearchHit.addHighlights(b, hl);
        const hit = w.SearchHit.endSearchHit(b);
        const hits = w.SearchResults.createHitsVector(b, [hit]);
        return [w.ServerBody.SearchResults, w.SearchResults.createSearchResults(b, hits, 0n, 0)];
      }),
    );
    expect(f.type === "searchResults" && f.results.hits[0]!.highlights).toEqual([
      [4, 8],
      [9, 15],
    ]);
  });

  it("throws on bytes that are not a frame, and passes unknown bodies as unknown", () => {
    expect(() => decodeServerFrame(new Uint8Array([1, 2]))).toThrow();
    const f = decodeServerFrame(server((b) => [99 as w.ServerBody, w.Ping.createPing(b, 1n)]));
    expect(f.type).toBe("unknown");
  });
});
