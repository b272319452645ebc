// ParleyClient: one WebSocket session to a Parley gateway that reconnects by itself, resumes
// every conversation it has a position in, and keeps an outgoing queue of idempotent sends.

import { decodeServerFrame, encodeClientFrame } from "./codec.js";
import { Cursors } from "./cursors.js";
import { ErrorCode, ParleyError, isRetryable } from "./errors.js";
import { Emitter } from "./emitter.js";
import type {
  Ack,
  ClientRequest,
  ConversationPage,
  HistoryPage,
  Message,
  Position,
  PresenceEvent,
  ReadEvent,
  Resumed,
  SearchResults,
  ServerError,
  ServerFrame,
  TypingEvent,
  Welcome,
  Conversation,
} from "./types.js";

/** The part of the WebSocket API the client uses (the browser's, or npm `ws` in Node). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = new (url: string) => WebSocketLike;

export type ConnectionState =
  /** Not started, or stopped by `close()`. */
  | "idle"
  /** Opening a connection (the first, or again after a loss). */
  | "connecting"
  /** Welcomed: requests flow. */
  | "open"
  /** Lost; waiting `retryInMs` before the next attempt. */
  | "reconnecting"
  /** Given up: the server refused us for good (`error` says why: a bad token, a ban). */
  | "closed";

export interface StateChange {
  state: ConnectionState;
  /** The server's reason, when it gave one. */
  error?: ServerError;
  /** With "reconnecting": when the next attempt starts. */
  retryInMs?: number;
  /** Connection attempts since the last Welcome. */
  attempt: number;
}

export interface ParleyClientOptions {
  /** The gateway's WebSocket URL, e.g. `wss://chat.example.com/ws` (a function: asked at every connection attempt). */
  url: string | (() => string);
  /** A JWT for the user (its `sub`). */
  token: string;
  /**
   * Gives a fresh token: called before the current one expires (the session then sends
   * `Refresh`) and when the server refused one as expired. Without it a session ends at its
   * token's expiry.
   */
  refreshToken?: () => Promise<string>;
  /** WebSocket implementation (default: `globalThis.WebSocket`; in Node pass npm `ws`). */
  WebSocket?: WebSocketFactory;
  /** How long a request waits for its answer, connecting included (default 10 s). */
  requestTimeoutMs?: number;
  /** Reconnect delays: exponential from `initialMs`, capped at `maxMs`, with full jitter. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Sent in Hello for the server's logs. */
  clientName?: string;
  /** Source of randomness for jitter (tests pass a fixed one). */
  random?: () => number;
}

/** A message this client sent that the server has not acknowledged yet. */
export interface PendingSend {
  clientMsgId: string;
  conversationId: string;
  kind: "text" | "image" | "file";
  content: string;
  mediaId?: string;
  /** Times it was sent (0 while it waits for a connection, or for the sends before it in its conversation). */
  attempts: number;
  /** The last retryable refusal (rate limited, storage unavailable, shutting down). */
  lastError?: ServerError;
}

export interface SendOptions {
  kind?: "text" | "image" | "file";
  mediaId?: string;
  /** Idempotency key (default: a random one). A retry with the same one stores nothing new. */
  clientMsgId?: string;
}

export interface ParleyEvents {
  state: StateChange;
  welcome: Welcome;
  /** Every message once, in seq order per conversation: others', and this client's own once acknowledged. */
  message: Message;
  typing: TypingEvent;
  read: ReadEvent;
  presence: PresenceEvent;
  conversationUpdated: Conversation;
  conversationDeleted: { conversationId: string; byUserId: string };
  /** The end of a resume replay. `complete: false`: page History for what came before `lastSeq`. */
  resumed: Resumed;
  /** A message arrived above the next expected seq: something below it is missing. */
  gap: { conversationId: string; missingFrom: number; message: Message };
  /** The outgoing queue changed (a send queued, retried, acknowledged or refused). */
  queue: PendingSend[];
  goaway: { reason: string; reconnectAfterMs: number };
  /** A server error not tied to a request. */
  error: ServerError;
}

interface Waiter {
  resolve: (f: ServerFrame) => void;
  reject: (e: ParleyError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface QueuedSend extends PendingSend {
  resolve: (m: Message) => void;
  reject: (e: ParleyError) => void;
  /** The seq of the frame in flight on the current connection (0: not in flight). */
  inFlight: number;
  retryTimer?: ReturnType<typeof setTimeout>;
}

const OPEN = 1;
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 5000;

/** Fatal codes after which reconnecting cannot help. */
const FINAL: ReadonlySet<number> = new Set([ErrorCode.UnsupportedVersion, ErrorCode.Banned]);

function randomId(): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ParleyClient extends Emitter<ParleyEvents> {
  /** Per conversation, where this client resumes from. */
  readonly cursors = new Cursors();

  private readonly opts: Required<Omit<ParleyClientOptions, "refreshToken" | "clientName">> &
    Pick<ParleyClientOptions, "refreshToken" | "clientName">;
  private token: string;
  private ws: WebSocketLike | undefined;
  private stateNow: ConnectionState = "idle";
  private welcomeNow: Welcome | undefined;
  private seq = 0;
  private attempt = 0;
  private readonly waiters = new Map<number, Waiter>();
  private readonly openWaiters = new Set<() => void>();
  private readonly queue: QueuedSend[] = [];
  private readonly typingState = new Map<string, { sentAt: number; idle: ReturnType<typeof setTimeout> }>();
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private lastHeard = 0;
  /** A fatal error the server sent before closing. */
  private fatal: ServerError | undefined;
  private goawayDelay: number | undefined;

  constructor(options: ParleyClientOptions) {
    super();
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!WS) throw new TypeError("no WebSocket implementation: pass options.WebSocket (npm ws in Node)");
    this.opts = {
      url: options.url,
      token: options.token,
      WebSocket: WS,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      backoff: { initialMs: options.backoff?.initialMs ?? 250, maxMs: options.backoff?.maxMs ?? 30_000 },
      random: options.random ?? Math.random,
      refreshToken: options.refreshToken,
      clientName: options.clientName ?? "parley-web",
    };
    this.token = options.token;
  }

  /** The connection's state. */
  get state(): ConnectionState {
    return this.stateNow;
  }

  /** The current session's Welcome (undefined while not open). */
  get welcome(): Welcome | undefined {
    return this.welcomeNow;
  }

  /** The signed-in user (from the last Welcome). */
  get userId(): string | undefined {
    return this.welcomeNow?.userId;
  }

  /** Sends that wait for their Ack. */
  get pending(): PendingSend[] {
    return this.queue.map((q) => this.view(q));
  }

  /** Starts connecting (and reconnecting after losses) until `close()`. Resolves at the first Welcome. */
  connect(): Promise<Welcome> {
    if (this.stateNow === "idle" || this.stateNow === "closed") {
      this.fatal = undefined;
      this.attempt = 0;
      this.open();
    }
    return this.whenOpen(Number.POSITIVE_INFINITY).then(() => this.welcomeNow!);
  }

  /** Stops: closes the socket, rejects requests in flight and queued sends. */
  close(): void {
    this.stop("idle");
    const err = new ParleyError(0, "closed", "the client was closed");
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.retryTimer);
      q.reject(err);
    }
    this.emit("queue", []);
  }

  /**
   * Sends a message: queued, sent when connected, retried with the same `clientMsgId` after a
   * reconnect or a retryable refusal; resolves with the stored message at its Ack, rejects with
   * the server's refusal (blocked, muted, moderated, held, invalid, …).
   */
  send(conversationId: string, content: string, options: SendOptions = {}): Promise<Message> {
    this.stopTyping(conversationId);
    const kind = options.kind ?? "text";
    // Validate now (throws on a bad id) rather than in a later flush.
    encodeClientFrame(0, { type: "send", conversationId, clientMsgId: "x", kind, content, mediaId: options.mediaId });
    return new Promise<Message>((resolve, reject) => {
      const q: QueuedSend = {
        clientMsgId: options.clientMsgId ?? randomId(),
        conversationId,
        kind,
        content,
        attempts: 0,
        resolve,
        reject,
        inFlight: 0,
      };
      if (options.mediaId !== undefined) q.mediaId = options.mediaId;
      this.queue.push(q);
      this.emitQueue();
      if (this.stateNow === "open") this.transmit(q);
    });
  }

  /** Says "typing" in a conversation: at most one frame per 3 s; stops by itself after 5 s of silence. */
  typing(conversationId: string): void {
    const now = Date.now();
    const t = this.typingState.get(conversationId);
    if (t) clearTimeout(t.idle);
    const idle = setTimeout(() => this.stopTyping(conversationId), TYPING_IDLE_MS);
    if (!t || now - t.sentAt >= TYPING_REFRESH_MS) {
      this.fire({ type: "typing", conversationId, active: true });
      this.typingState.set(conversationId, { sentAt: now, idle });
    } else {
      t.idle = idle;
    }
  }

  /** Ends "typing" (on send, on blur, on an empty composer). */
  stopTyping(conversationId: string): void {
    const t = this.typingState.get(conversationId);
    if (!t) return;
    clearTimeout(t.idle);
    this.typingState.delete(conversationId);
    this.fire({ type: "typing", conversationId, active: false });
  }

  /** Opens a conversation on this session: presence of its participants follows. */
  async join(conversationId: string): Promise<void> {
    await this.request({ type: "join", conversationId });
  }

  async leave(conversationId: string): Promise<void> {
    await this.request({ type: "leave", conversationId });
  }

  /** Marks everything up to and including message `upTo` as read. */
  async markRead(conversationId: string, upTo: string): Promise<Ack> {
    const f = await this.request({ type: "read", conversationId, upTo });
    return (f as Extract<ServerFrame, { type: "ack" }>).ack;
  }

  /**
   * A page of history, newest first, older than message `before` (absent: the newest). The
   * newest page sets this client's position in the conversation.
   */
  async history(conversationId: string, options: { before?: string; limit?: number } = {}): Promise<HistoryPage> {
    const req: ClientRequest = { type: "history", conversationId };
    if (options.before !== undefined) req.before = options.before;
    if (options.limit !== undefined) req.limit = options.limit;
    const f = await this.request(req);
    const page = (f as Extract<ServerFrame, { type: "history" }>).page;
    const newest = page.messages[0];
    if ((options.before === undefined || options.before === "0") && newest) {
      this.cursors.set(conversationId, { seq: newest.seq, id: newest.id });
    }
    return page;
  }

  /** My conversations by last activity (with `query`: those it matches). */
  async conversations(options: { cursor?: string; limit?: number; query?: string } = {}): Promise<ConversationPage> {
    const f = await this.request({ type: "conversations", ...options });
    return (f as Extract<ServerFrame, { type: "conversations" }>).page;
  }

  /** Full-text search over my messages. */
  async search(
    query: string,
    options: { conversationId?: string; before?: string; limit?: number; byRelevance?: boolean; offset?: number } = {},
  ): Promise<SearchResults> {
    const f = await this.request({ type: "search", query, ...options });
    return (f as Extract<ServerFrame, { type: "searchResults" }>).results;
  }

  /**
   * No push notifications of this conversation for me (live messages still arrive): until
   * `untilMs` (Unix ms), or until unmuted when absent. Rejects with `unsupported` on a node
   * that sends no pushes.
   */
  async mute(conversationId: string, untilMs?: number): Promise<void> {
    const req: ClientRequest = { type: "mute", conversationId, muted: true };
    if (untilMs !== undefined) req.untilMs = untilMs;
    await this.request(req);
  }

  /** Push notifications of this conversation again. */
  async unmute(conversationId: string): Promise<void> {
    await this.request({ type: "mute", conversationId, muted: false });
  }

  /** Round trip to the server; resolves with its clock. */
  async ping(): Promise<number> {
    const f = await this.request({ type: "ping", nonce: BigInt(Date.now()) });
    return (f as Extract<ServerFrame, { type: "pong" }>).serverTimeMs;
  }

  /**
   * Sends a request and waits for its answer (an Ack, a page, …): waits for the connection
   * first when it is down; rejects with the server's Error or a timeout.
   */
  async request(req: ClientRequest, timeoutMs = this.opts.requestTimeoutMs): Promise<ServerFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.whenOpen(deadline - Date.now());
      try {
        return await this.exchange(req, deadline - Date.now());
      } catch (e) {
        // Lost with the connection or refused while the node shuts down: ask the next one.
        if (e instanceof ParleyError && (e.name === "disconnected" || e.code === ErrorCode.ShuttingDown)) {
          if (Date.now() < deadline) continue;
        }
        throw e;
      }
    }
  }

  // ------------------------------------------------------------------ connection

  private open(): void {
    this.setState("connecting");
    let ws: WebSocketLike;
    try {
      ws = new this.opts.WebSocket(typeof this.opts.url === "function" ? this.opts.url() : this.opts.url);
    } catch {
      this.lost();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      const hello: ClientRequest = { type: "hello", token: this.token, resume: this.cursors.all() };
      if (this.opts.clientName) hello.clientName = this.opts.clientName;
      this.lastHeard = Date.now();
      ws.send(encodeClientFrame(this.nextSeq(), hello));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const data = ev.data;
      let bytes: Uint8Array;
      if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
      else if (data instanceof Uint8Array) bytes = data;
      else return; // text frames are not part of the protocol
      let frame: ServerFrame;
      try {
        frame = decodeServerFrame(bytes);
      } catch {
        ws.close(4000, "undecodable frame");
        return;
      }
      this.lastHeard = Date.now();
      this.onFrame(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.lost();
    };
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  /** The socket is gone: fail what was in flight, then reconnect or give up. */
  private lost(): void {
    this.teardown();
    const fatal = this.fatal;
    this.fatal = undefined;
    if (this.stateNow === "idle") return;
    if (fatal && FINAL.has(fatal.code)) {
      this.setState("closed", { error: fatal });
      this.failQueue(new ParleyError(fatal.code, "closed", fatal.message));
      return;
    }
    if (fatal && (fatal.code === ErrorCode.AuthFailed || fatal.code === ErrorCode.TokenExpired)) {
      if (!this.opts.refreshToken) {
        this.setState("closed", { error: fatal });
        this.failQueue(new ParleyError(fatal.code, "closed", fatal.message));
        return;
      }
      // Ask for a fresh token, then connect with it.
      const refresh = this.opts.refreshToken;
      this.scheduleReconnect(fatal, async () => {
        this.token = await refresh();
      });
      return;
    }
    this.scheduleReconnect(fatal);
  }

  private scheduleReconnect(error?: ServerError, before?: () => Promise<void>): void {
    const { initialMs, maxMs } = this.opts.backoff as { initialMs: number; maxMs: number };
    let delay: number;
    if (this.goawayDelay !== undefined) {
      // The server said when: spread the reconnects of its sessions over as long again.
      delay = this.goawayDelay + this.opts.random() * Math.max(this.goawayDelay, 250);
      this.goawayDelay = undefined;
    } else {
      const cap = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempt, 20));
      delay = this.opts.random() * cap;
    }
    this.attempt += 1;
    const change: Omit<StateChange, "state" | "attempt"> = { retryInMs: Math.round(delay) };
    if (error) change.error = error;
    this.setState("reconnecting", change);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stateNow !== "reconnecting") return;
      const go = () => {
        if (this.stateNow === "reconnecting") this.open();
      };
      if (before) before().then(go, () => this.scheduleReconnect(error, before));
      else go();
    }, delay);
  }

  private teardown(): void {
    const ws = this.ws;
    this.ws = undefined;
    this.welcomeNow = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.refreshTimer);
    this.heartbeatTimer = this.refreshTimer = undefined;
    const err = new ParleyError(0, "disconnected", "the connection was lost");
    for (const [, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.waiters.clear();
    for (const q of this.queue) q.inFlight = 0;
    for (const [, t] of this.typingState) clearTimeout(t.idle);
    this.typingState.clear();
  }

  private stop(state: "idle"): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.setState(state);
    this.teardown();
    for (const wake of this.openWaiters) wake();
  }

  private setState(state: ConnectionState, extra: Omit<StateChange, "state" | "attempt"> = {}): void {
    this.stateNow = state;
    this.emit("state", { state, attempt: this.attempt, ...extra });
    if (state === "open" || state === "closed" || state === "idle") {
      for (const wake of [...this.openWaiters]) wake();
    }
  }

  /** Resolves when the connection is open; rejects after `ms`, or when the client is closed or gives up. */
  private whenOpen(ms: number): Promise<void> {
    if (this.stateNow === "open") return Promise.resolve();
    if (this.stateNow === "closed" || this.stateNow === "idle") {
      return Promise.reject(new ParleyError(0, "closed", "the client is not connected"));
    }
    return new Promise((resolve, reject) => {
      const timer = Number.isFinite(ms)
        ? setTimeout(() => {
            this.openWaiters.delete(wake);
            reject(new ParleyError(0, "timeout", "no connection to the server in time"));
          }, Math.max(0, ms))
        : undefined;
      const wake = () => {
        if (this.stateNow === "connecting" || this.stateNow === "reconnecting") return;
        this.openWaiters.delete(wake);
        clearTimeout(timer);
        if (this.stateNow === "open") resolve();
        else reject(new ParleyError(0, "closed", "the client is not connected"));
      };
      this.openWaiters.add(wake);
    });
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffff_fff0 ? 1 : this.seq + 1;
    return this.seq;
  }

  private exchange(req: ClientRequest, ms: number): Promise<ServerFrame> {
    const ws = this.ws;
    if (!ws || this.stateNow !== "open") {
      return Promise.reject(new ParleyError(0, "disconnected", "not connected"));
    }
    const seq = this.nextSeq();
    const bytes = encodeClientFrame(seq, req);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(seq);
        reject(new ParleyError(0, "timeout", `no answer to ${req.type} in time`));
      }, Math.max(0, ms));
      this.waiters.set(seq, { resolve, reject, timer });
      ws.send(bytes);
    });
  }

  /** A frame without an answer to wait for (typing): dropped when not connected. */
  private fire(req: ClientRequest): void {
    if (this.ws && this.stateNow === "open" && this.ws.readyState === OPEN) {
      this.ws.send(encodeClientFrame(this.nextSeq(), req));
    }
  }

  // ------------------------------------------------------------------ frames

  private onFrame(f: ServerFrame): void {
    if (f.type === "welcome") {
      this.welcomed(f.welcome);
      return;
    }
    // Kept for `lost()`, which decides from it whether and how to reconnect.
    if (f.type === "error" && f.error.fatal) this.fatal = f.error;
    if (f.seq !== 0) {
      const w = this.waiters.get(f.seq);
      if (w) {
        this.waiters.delete(f.seq);
        clearTimeout(w.timer);
        if (f.type === "error") w.reject(new ParleyError(f.error.code, "server", f.error.message));
        else w.resolve(f);
        return;
      }
      const q = this.queue.find((x) => x.inFlight === f.seq);
      if (q) {
        this.sendAnswered(q, f);
        return;
      }
    }
    switch (f.type) {
      case "message":
        this.incoming(f.message);
        break;
      case "typing":
        this.emit("typing", f.typing);
        break;
      case "read":
        this.emit("read", f.read);
        break;
      case "presence":
        this.emit("presence", f.presence);
        break;
      case "resumed":
        this.emit("resumed", f.resumed);
        break;
      case "conversationUpdated":
        this.emit("conversationUpdated", f.conversation);
        break;
      case "conversationDeleted":
        this.cursors.forget(f.conversationId);
        this.emit("conversationDeleted", { conversationId: f.conversationId, byUserId: f.byUserId });
        break;
      case "goaway":
        this.goawayDelay = f.reconnectAfterMs;
        this.emit("goaway", { reason: f.reason, reconnectAfterMs: f.reconnectAfterMs });
        // Reconnect now rather than wait for the server to close: frames sent here would be refused.
        this.ws?.close(1000, "goaway");
        this.lost();
        break;
      case "error":
        if (!f.error.fatal) this.emit("error", f.error);
        break;
      default:
        break;
    }
  }

  private welcomed(welcome: Welcome): void {
    this.welcomeNow = welcome;
    this.attempt = 0;
    this.setState("open");
    this.emit("welcome", welcome);
    // Heartbeat: a Ping well within the server's heartbeat; a server silent past its own idle
    // timeout is taken for gone.
    const every = Math.max(1000, Math.floor((welcome.heartbeatMs || 25_000) * 0.8));
    const deadAfter = Math.max(every * 2, welcome.idleTimeoutMs || 60_000);
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > deadAfter) {
        this.ws?.close(4000, "server silent");
        this.lost();
        return;
      }
      this.fire({ type: "ping", nonce: BigInt(Date.now()) });
    }, every);
    this.scheduleRefresh(welcome);
    for (const q of this.queue) this.transmit(q);
  }

  private scheduleRefresh(welcome: Welcome): void {
    const refresh = this.opts.refreshToken;
    if (!refresh || !welcome.tokenExpiresMs) return;
    // Relative to the server's clock: a skewed local clock does not matter.
    const left = welcome.tokenExpiresMs - welcome.serverTimeMs;
    const margin = Math.min(60_000, Math.max(1000, left / 5));
    this.refreshTimer = setTimeout(
      async () => {
        try {
          const token = await refresh();
          const f = await this.request({ type: "refresh", token });
          this.token = token;
          const ack = (f as Extract<ServerFrame, { type: "ack" }>).ack;
          if (this.welcomeNow) this.scheduleRefresh({ ...this.welcomeNow, tokenExpiresMs: ack.createdAt, serverTimeMs: Date.now() });
        } catch {
          // The session ends at the expiry; reconnecting asks for a token again.
        }
      },
      Math.max(0, left - margin),
    );
  }

  private incoming(m: Message): void {
    const seen = this.cursors.saw(m.conversationId, { seq: m.seq, id: m.id });
    if (seen.kind === "repeat") return;
    if (seen.kind === "gap") this.emit("gap", { conversationId: m.conversationId, missingFrom: seen.missingFrom, message: m });
    // A message of ours that reached us before its Ack (stored, then delivered from storage).
    this.emit("message", m);
  }

  // ------------------------------------------------------------------ outgoing queue

  /**
   * Sends `q` if it is the oldest unacknowledged send of its conversation: one send in flight
   * per conversation, so a send refused for now (rate limited, a node shutting down) and sent
   * again is never overtaken by a later one — the conversation keeps the order they were
   * written in.
   */
  private transmit(q: QueuedSend): void {
    if (!this.ws || this.stateNow !== "open" || q.inFlight !== 0 || q.retryTimer !== undefined) return;
    if (this.queue.find((x) => x.conversationId === q.conversationId) !== q) return;
    q.inFlight = this.nextSeq();
    q.attempts += 1;
    const req: ClientRequest = {
      type: "send",
      conversationId: q.conversationId,
      clientMsgId: q.clientMsgId,
      kind: q.kind,
      content: q.content,
    };
    if (q.mediaId !== undefined) req.mediaId = q.mediaId;
    this.ws.send(encodeClientFrame(q.inFlight, req));
    this.emitQueue();
  }

  private sendAnswered(q: QueuedSend, f: ServerFrame): void {
    q.inFlight = 0;
    if (f.type === "ack") {
      this.queue.splice(this.queue.indexOf(q), 1);
      const m: Message = {
        id: f.ack.messageId,
        conversationId: q.conversationId,
        senderId: this.welcomeNow?.userId ?? "",
        kind: q.kind,
        content: q.content,
        clientMsgId: q.clientMsgId,
        createdAt: f.ack.createdAt,
        seq: f.ack.messageSeq,
      };
      if (q.mediaId !== undefined) m.media = { mediaId: q.mediaId };
      const seen = this.cursors.saw(q.conversationId, { seq: m.seq, id: m.id });
      if (seen.kind === "gap") this.emit("gap", { conversationId: m.conversationId, missingFrom: seen.missingFrom, message: m });
      if (seen.kind !== "repeat") this.emit("message", m);
      this.emitQueue();
      q.resolve(m);
      this.transmitNext(q.conversationId);
      return;
    }
    if (f.type === "error" && isRetryable(f.error.code)) {
      q.lastError = f.error;
      if (f.error.code !== ErrorCode.ShuttingDown) {
        // Rate limited / storage unavailable: try again on this connection after a while.
        const wait = Math.min(10_000, 500 * 2 ** Math.min(q.attempts, 5)) * (0.5 + this.opts.random() / 2);
        q.retryTimer = setTimeout(() => {
          q.retryTimer = undefined;
          this.transmit(q);
        }, wait);
      }
      this.emitQueue();
      return;
    }
    this.queue.splice(this.queue.indexOf(q), 1);
    this.emitQueue();
    const e = f.type === "error" ? f.error : { code: 0, message: `unexpected answer ${f.type}`, fatal: false };
    q.reject(new ParleyError(e.code, "server", e.message));
    this.transmitNext(q.conversationId);
  }

  private transmitNext(conversationId: string): void {
    const next = this.queue.find((x) => x.conversationId === conversationId);
    if (next) this.transmit(next);
  }

  private failQueue(err: ParleyError): void {
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.retryTimer);
      q.reject(err);
    }
    this.emitQueue();
  }

  private view(q: QueuedSend): PendingSend {
    const v: PendingSend = {
      clientMsgId: q.clientMsgId,
      conversationId: q.conversationId,
      kind: q.kind,
      content: q.content,
      attempts: q.attempts,
    };
    if (q.mediaId !== undefined) v.mediaId = q.mediaId;
    if (q.lastError) v.lastError = q.lastError;
    return v;
  }

  private emitQueue(): void {
    this.emit("queue", this.queue.map((q) => this.view(q)));
  }
}

export type { Position };
