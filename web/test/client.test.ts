// ParleyClient's own logic (backoff, the outgoing queue, typing throttle) against an
// in-process socket the test drives frame by frame; the real gateway is in e2e.test.ts.
import * as flatbuffers from "flatbuffers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import * as w from "../src/generated/parley/wire.js";
import { ParleyClient, type WebSocketLike } from "../src/sdk/client.js";
import type { Message } from "../src/sdk/types.js";

const CONV = "0190f5a2-7c3e-7abc-8def-0123456789ab";

class Socket implements WebSocketLike {
  static all: Socket[] = [];
  binaryType = "blob";
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: w.ClientFrame[] = [];
  constructor(readonly url: string) {
    Socket.all.push(this);
  }
  send(data: Uint8Array): void {
    this.sent.push(w.ClientFrame.getRootAsClientFrame(new flatbuffers.ByteBuffer(data.slice())));
  }
  close(): void {
    this.readyState = 3;
  }
  accept(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(build: (b: flatbuffers.Builder) => [w.ServerBody, flatbuffers.Offset], seq = 0): void {
    const b = new flatbuffers.Builder(128);
    const [type, body] = build(b);
    b.finish(w.ServerFrame.createServerFrame(b, seq, type, body));
    const bytes = b.asUint8Array();
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  welcome(): void {
    this.deliver((b) => {
      const user = b.createString("alice");
      w.Welcome.startWelcome(b);
      w.Welcome.addUserId(b, user);
      w.Welcome.addHeartbeatMs(b, 25_000);
      w.Welcome.addIdleTimeoutMs(b, 60_000);
      return [w.ServerBody.Welcome, w.Welcome.endWelcome(b)];
    }, 1);
  }
  drop(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
  sends(): w.Send[] {
    return this.sent.filter((f) => f.bodyType() === w.ClientBody.Send).map((f) => f.body(new w.Send()) as w.Send);
  }
  seqOf(clientMsgId: string): number {
    return this.sent.find((f) => f.bodyType() === w.ClientBody.Send && (f.body(new w.Send()) as w.Send).clientMsgId() === clientMsgId)!.seq();
  }
  typing(): boolean[] {
    return this.sent.filter((f) => f.bodyType() === w.ClientBody.Typing).map((f) => (f.body(new w.Typing()) as w.Typing).active());
  }
}

function last(): Socket {
  return Socket.all[Socket.all.length - 1]!;
}

function client(random = () => 1): ParleyClient {
  return new ParleyClient({ url: "ws://test/ws", token: "t", WebSocket: Socket, random, backoff: { initialMs: 100, maxMs: 1000 } });
}

beforeEach(() => {
  Socket.all = [];
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("ParleyClient", () => {
  it("reconnects with exponential, capped, jittered delays and starts over after a Welcome", async () => {
    const c = client();
    const delays: number[] = [];
    c.on("state", (s) => {
      if (s.state === "reconnecting") delays.push(s.retryInMs!);
    });
    c.connect().catch(() => {});
    for (let i = 0; i < 6; i++) {
      last().drop();
      await vi.advanceTimersByTimeAsync(delays[delays.length - 1]!);
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    last().accept();
    last().welcome();
    expect(c.state).toBe("open");
    last().drop();
    expect(delays[delays.length - 1]).toBe(100);
    c.close();
  });

  it("full jitter: a random 0 reconnects at once", async () => {
    const c = client(() => 0);
    const delays: number[] = [];
    c.on("state", (s) => s.state === "reconnecting" && delays.push(s.retryInMs!));
    c.connect().catch(() => {});
    last().drop();
    expect(delays).toEqual([0]);
    c.close();
  });

  it("queues sends while offline and resends them with the same client_msg_id after a loss", async () => {
    const c = client();
    const got: Message[] = [];
    c.on("message", (m) => got.push(m));
    c.connect().catch(() => {});
    const sent = c.send(CONV, "hello", { clientMsgId: "m1" });
    expect(c.pending.map((p) => p.clientMsgId)).toEqual(["m1"]);
    last().accept();
    expect(last().sends()).toHaveLength(0); // not before the Welcome
    last().welcome();
    expect(last().sends().map((s) => s.clientMsgId())).toEqual(["m1"]);
    last().drop(); // lost before its Ack
    await vi.advanceTimersByTimeAsync(100);
    last().accept();
    last().welcome();
    expect(last().sends().map((s) => [s.clientMsgId(), s.content()])).toEqual([["m1", "hello"]]);
    const seq = last().seqOf("m1");
    last().deliver((b) => [w.ServerBody.Ack, w.Ack.createAck(b, 77n, 5n, true, 1n)], seq);
    const m = await sent;
    expect([m.id, m.seq, m.senderId, m.clientMsgId]).toEqual(["77", 1, "alice", "m1"]);
    expect(got.map((g) => g.id)).toEqual(["77"]);
    expect(c.pending).toEqual([]);
    c.close();
  });

  it("keeps a conversation's order: one send in flight, a rate-limited one retried before the next, a refused one skipped", async () => {
    const c = client();
    c.connect().catch(() => {});
    last().accept();
    last().welcome();
    const a = c.send(CONV, "a", { clientMsgId: "a" });
    const b = c.send(CONV, "b", { clientMsgId: "b" });
    const d = c.send(CONV, "d", { clientMsgId: "d" });
    const other = c.send("0190f5a2-7c3e-7abc-8def-0123456789ff", "x", { clientMsgId: "x" });
    const ids = () => last().sends().map((s) => s.clientMsgId());
    expect(ids()).toEqual(["a", "x"]); // the head of each conversation
    const err = (code: number) => (bb: flatbuffers.Builder): [w.ServerBody, flatbuffers.Offset] => {
      const msg = bb.createString("no");
      return [w.ServerBody.Error, w.Error.createError(bb, code, msg, false)];
    };
    const ack = (id: bigint, seq: bigint) => (bb: flatbuffers.Builder): [w.ServerBody, flatbuffers.Offset] => [
      w.ServerBody.Ack,
      w.Ack.createAck(bb, id, 1n, false, seq),
    ];
    const lastSeq = () => last().sent.filter((f) => f.bodyType() === w.ClientBody.Send).at(-1)!.seq();
    last().deliver(err(1400), last().seqOf("a"));
    expect(c.pending.map((p) => [p.clientMsgId, p.lastError?.code])).toEqual([
      ["a", 1400],
      ["b", undefined],
      ["d", undefined],
      ["x", undefined],
    ]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ids()).toEqual(["a", "x", "a"]); // a again, b still waits
    last().deliver(ack(5n, 1n), lastSeq());
    await expect(a).resolves.toMatchObject({ id: "5", seq: 1 });
    expect(ids()).toEqual(["a", "x", "a", "b"]);
    last().deliver(err(1202), lastSeq());
    await expect(b).rejects.toMatchObject({ code: 1202 });
    expect(ids()).toEqual(["a", "x", "a", "b", "d"]);
    last().deliver(ack(6n, 2n), lastSeq());
    await expect(d).resolves.toMatchObject({ id: "6", seq: 2 });
    last().deliver(ack(7n, 1n), last().seqOf("x"));
    await expect(other).resolves.toMatchObject({ id: "7" });
    c.close();
  });

  it("throttles typing: one start per 3 s, a stop after 5 s of silence or on send", async () => {
    const c = client();
    c.connect().catch(() => {});
    last().accept();
    last().welcome();
    for (let i = 0; i < 10; i++) {
      c.typing(CONV);
      await vi.advanceTimersByTimeAsync(200);
    }
    expect(last().typing()).toEqual([true]);
    await vi.advanceTimersByTimeAsync(1100); // 3.1 s after the first
    c.typing(CONV);
    expect(last().typing()).toEqual([true, true]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(last().typing()).toEqual([true, true, false]);
    c.typing(CONV);
    void c.send(CONV, "x").catch(() => {});
    expect(last().typing()).toEqual([true, true, false, true, false]);
    c.close();
  });

  it("drops repeats of messages it has, by seq", () => {
    const c = client();
    const got: string[] = [];
    c.on("message", (m) => got.push(m.content));
    c.connect().catch(() => {});
    last().accept();
    last().welcome();
    const msg = (seq: bigint, text: string) => (b: flatbuffers.Builder): [w.ServerBody, flatbuffers.Offset] => {
      const content = b.createString(text);
      w.Message.startMessage(b);
      w.Message.addId(b, 100n + seq);
      w.Message.addConversation(b, w.Uuid.createUuid(b, 1n, 2n));
      w.Message.addContent(b, content);
      w.Message.addSeq(b, seq);
      const m = w.Message.endMessage(b);
      return [w.ServerBody.MessageNew, w.MessageNew.createMessageNew(b, m)];
    };
    for (const [s, t] of [[1n, "a"], [2n, "b"], [2n, "b"], [1n, "a"], [3n, "c"]] as const) last().deliver(msg(s, t));
    expect(got).toEqual(["a", "b", "c"]);
    c.close();
  });
});
