// The SDK against the real gateway binary: two users chat, and a send load survives a
// restart (Goaway) and a kill -9 with nothing lost or doubled.
import { afterEach, describe, expect, it } from "vitest";
import WS from "ws";
import { ParleyClient, type WebSocketFactory } from "../src/sdk/client.js";
import { RestClient } from "../src/sdk/rest.js";
import type { Message } from "../src/sdk/types.js";
import { Gateway, token, until } from "./gateway.js";

const started: Gateway[] = [];
const clients: ParleyClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const g of started.splice(0)) await g.stop();
});

async function gateway(args: string[] = []): Promise<Gateway> {
  const g = await Gateway.start({ args });
  started.push(g);
  return g;
}

function connect(g: Gateway, user: string): ParleyClient {
  const c = new ParleyClient({
    url: g.ws,
    token: token(user),
    WebSocket: WS as unknown as WebSocketFactory,
    backoff: { initialMs: 50, maxMs: 500 },
    clientName: "sdk-e2e",
  });
  clients.push(c);
  return c;
}

function rest(g: Gateway, user: string): RestClient {
  const t = token(user);
  return new RestClient({ baseUrl: g.http, token: () => t });
}

/** Collects one user's messages of a conversation. */
function inbox(c: ParleyClient, conversationId: string): Message[] {
  const got: Message[] = [];
  c.on("message", (m) => m.conversationId === conversationId && got.push(m));
  return got;
}

describe("SDK against a real gateway", () => {
  it("two users chat: messages, typing, read receipts, history, conversations, search", async () => {
    const g = await gateway();
    const conv = await rest(g, "alice").createDirect("bob", "lego-42");
    const alice = connect(g, "alice");
    const bob = connect(g, "bob");
    await Promise.all([alice.connect(), bob.connect()]);
    const bobGot = inbox(bob, conv.id);
    const typing: boolean[] = [];
    bob.on("typing", (t) => t.userId === "alice" && typing.push(t.active));
    const reads: string[] = [];
    alice.on("read", (r) => reads.push(r.upTo));

    alice.typing(conv.id);
    await until(() => typing.length === 1, "bob sees alice typing");
    const sent = await alice.send(conv.id, "Is the Lego castle still available?");
    expect(sent.seq).toBe(1);
    await until(() => bobGot.length === 1, "bob gets the message");
    expect(bobGot[0]).toMatchObject({ id: sent.id, senderId: "alice", content: "Is the Lego castle still available?", seq: 1 });
    expect(typing).toEqual([true, false]); // the send ended alice's typing

    await bob.markRead(conv.id, sent.id);
    await until(() => reads.length === 1, "alice gets bob's read receipt");
    expect(reads).toEqual([sent.id]);

    const reply = await bob.send(conv.id, "Yes! Pick-up on Saturday?");
    const page = await alice.history(conv.id);
    expect(page.messages.map((m) => m.content)).toEqual(["Yes! Pick-up on Saturday?", "Is the Lego castle still available?"]);
    expect(alice.cursors.get(conv.id)).toEqual({ seq: 2, id: reply.id });

    const list = await bob.conversations();
    expect(list.items.map((c) => [c.id, c.listingId, c.lastMessage?.content, c.unreadCount])).toEqual([
      [conv.id, "lego-42", "Yes! Pick-up on Saturday?", 0],
    ]);
    // Searchable once the indexer committed (about a second): poll.
    let hits = 0;
    for (let i = 0; i < 200 && hits === 0; i++) {
      hits = (await alice.search("lego cas")).hits.length;
      if (!hits) await new Promise((r) => setTimeout(r, 50));
    }
    expect(hits).toBe(1);

    // Mute over the protocol (1.5): the REST view agrees.
    const muteState = () => rest(g, "bob").call<{ muted: boolean; until: string | null }>("GET", `/api/conversations/${conv.id}/mute`);
    const hour = Date.now() + 3_600_000;
    await bob.mute(conv.id, hour);
    expect((await muteState()).muted).toBe(true);
    expect(Date.parse((await muteState()).until ?? "")).toBe(hour);
    await bob.unmute(conv.id);
    expect(await muteState()).toEqual({ muted: false, until: null });
    await expect(bob.mute(conv.id, Date.now() - 1000)).rejects.toThrow();
  });

  it("a retried send with the same client_msg_id is stored once", async () => {
    const g = await gateway();
    const conv = await rest(g, "alice").createDirect("bob", "l1");
    const alice = connect(g, "alice");
    await alice.connect();
    const a = await alice.send(conv.id, "once", { clientMsgId: "order-1" });
    const b = await alice.send(conv.id, "once", { clientMsgId: "order-1" });
    expect(b.id).toBe(a.id);
    expect(b.seq).toBe(a.seq);
    const page = await rest(g, "bob").call<{ messages: unknown[] }>("GET", `/api/conversations/${conv.id}/messages`);
    expect(page.messages).toHaveLength(1);
  });

  for (const how of ["restart (Goaway)", "kill -9"] as const) {
    it(`a send load across a gateway ${how}: every message once, in order, on both sides`, async () => {
      const g = await gateway(["--user-messages-per-sec", "1000000", "--user-message-burst", "1000000"]);
      const conv = await rest(g, "alice").createDirect("bob", "l2");
      const alice = connect(g, "alice");
      const bob = connect(g, "bob");
      await Promise.all([alice.connect(), bob.connect()]);
      const bobGot = inbox(bob, conv.id);
      const aliceGot = inbox(alice, conv.id);
      const goaways: string[] = [];
      bob.on("goaway", (x) => goaways.push(x.reason));
      const N = 300;
      const acks: Promise<Message>[] = [];
      let crashed: Promise<void> | undefined;
      for (let i = 1; i <= N; i++) {
        acks.push(alice.send(conv.id, `m${i}`, { clientMsgId: `k${i}` }));
        if (i === N / 3) {
          crashed = how === "kill -9" ? g.kill9().then(() => g.restart()) : g.restart();
        }
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      await crashed;
      const stored = await Promise.all(acks);
      expect(stored.map((m) => m.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      expect(new Set(stored.map((m) => m.id)).size).toBe(N);
      await until(() => bobGot.length >= N, `bob's ${N} messages`);
      expect(bobGot.map((m) => m.content)).toEqual(Array.from({ length: N }, (_, i) => `m${i + 1}`));
      expect(bobGot.map((m) => m.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      expect(aliceGot.map((m) => m.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      if (how === "restart (Goaway)") expect(goaways.length).toBeGreaterThan(0);
      const total = (await rest(g, "bob").call<{ conversations: Array<{ lastMessage?: { seq: number } }> }>("GET", "/api/conversations"))
        .conversations[0]?.lastMessage?.seq;
      expect(total).toBe(N);
    });
  }

  it("a token refreshed before it expires keeps the session; an invalid one closes it", async () => {
    const g = await gateway(["--jwt-leeway-s", "0"]);
    let refreshed = 0;
    const c = new ParleyClient({
      url: g.ws,
      token: token("carol", 3),
      refreshToken: async () => {
        refreshed += 1;
        return token("carol", 3600);
      },
      WebSocket: WS as unknown as WebSocketFactory,
      backoff: { initialMs: 50, maxMs: 500 },
    });
    clients.push(c);
    const states: string[] = [];
    c.on("state", (s) => states.push(s.state));
    await c.connect();
    await until(() => refreshed === 1, "the refresh callback");
    const firstExpiry = c.welcome!.tokenExpiresMs;
    await until(() => Date.now() > firstExpiry + 500, "past the first token's expiry");
    expect(c.state).toBe("open");
    expect(states.filter((s) => s === "reconnecting")).toEqual([]);
    await c.ping();

    const bad = new ParleyClient({ url: g.ws, token: "not-a-token", WebSocket: WS as unknown as WebSocketFactory });
    clients.push(bad);
    const why: number[] = [];
    bad.on("state", (s) => s.state === "closed" && why.push(s.error?.code ?? 0));
    await expect(bad.connect()).rejects.toMatchObject({ name: "closed" });
    expect(why).toEqual([1100]);
  });
});
