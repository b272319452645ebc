// The chat page's state, kept outside React: one ParleyClient + RestClient, the conversation
// list, each open conversation's messages (by seq), typing, presence, read marks and the
// connection's state. Components read snapshots through `useSyncExternalStore`.

import { ParleyClient, type ConnectionState, type PendingSend, type StateChange } from "../sdk/client.js";
import { ErrorCode, ParleyError } from "../sdk/errors.js";
import { RestClient } from "../sdk/rest.js";
import type { Conversation, Message } from "../sdk/types.js";

export const PAGE = 50;

export interface Thread {
  /** Messages by seq, oldest first. */
  messages: Message[];
  /** The `before` of the next older page; "0": none older; undefined: not loaded yet. */
  nextBefore: string | undefined;
  loading: boolean;
  /** The newest message id the other side has read (ticks). */
  readByOthers: bigint;
}

/** A photo or file being uploaded and sent, shown until its message is there. */
export interface Upload {
  key: string;
  conversationId: string;
  name: string;
  /** A local `blob:` URL of the chosen image, for its preview. */
  preview: string | undefined;
}

export interface Notice {
  kind: "error" | "info";
  text: string;
}

export interface Snapshot {
  connection: StateChange;
  userId: string;
  conversations: Conversation[];
  threads: ReadonlyMap<string, Thread>;
  pending: PendingSend[];
  uploads: Upload[];
  /** Per conversation, who is typing. */
  typing: ReadonlyMap<string, ReadonlySet<string>>;
  online: ReadonlySet<string>;
  blocked: ReadonlySet<string>;
  notice: Notice | undefined;
  searchResults: Conversation[] | undefined;
}

export interface StoreOptions {
  url: string;
  baseUrl: string;
  token: string;
  userId: string;
  refreshToken?: () => Promise<string>;
}

export class ChatStore {
  readonly client: ParleyClient;
  readonly rest: RestClient;
  private snap: Snapshot;
  private readonly listeners = new Set<() => void>();
  private token: string;
  private readonly baseUrl: string;
  /** The conversation on screen (its messages are read as they arrive). */
  private openId: string | undefined;
  private readonly typingTimers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(options: StoreOptions) {
    this.token = options.token;
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    const refresh = options.refreshToken;
    const clientOptions: ConstructorParameters<typeof ParleyClient>[0] = { url: options.url, token: options.token };
    if (refresh) {
      clientOptions.refreshToken = async () => {
        this.token = await refresh();
        return this.token;
      };
    }
    this.client = new ParleyClient(clientOptions);
    this.rest = new RestClient({ baseUrl: options.baseUrl, token: () => this.token });
    this.snap = {
      connection: { state: "idle", attempt: 0 },
      userId: options.userId,
      conversations: [],
      threads: new Map(),
      pending: [],
      uploads: [],
      typing: new Map(),
      online: new Set(),
      blocked: new Set(),
      notice: undefined,
      searchResults: undefined,
    };
    this.wire();
  }

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  getSnapshot = (): Snapshot => this.snap;

  start(): void {
    this.client.connect().catch(() => {});
  }

  stop(): void {
    this.client.close();
  }

  /** Opens a conversation: joins it (presence), loads its newest page, marks it read. */
  async open(conversationId: string | undefined): Promise<void> {
    this.openId = conversationId;
    if (!conversationId) return;
    if (!this.snap.threads.get(conversationId)?.nextBefore) await this.loadOlder(conversationId, true);
    this.client.join(conversationId).catch(() => {});
    // Read ticks for what the others read before now (live receipts move them on).
    this.rest.reads(conversationId).then(
      ({ reads }) => {
        const t = this.thread(conversationId);
        const up = reads.filter((r) => r.userId !== this.snap.userId).reduce((m, r) => (BigInt(r.upTo) > m ? BigInt(r.upTo) : m), 0n);
        if (up > t.readByOthers) this.setThread(conversationId, { ...t, readByOthers: up });
      },
      () => {},
    );
    this.markRead(conversationId);
  }

  async loadOlder(conversationId: string, newest = false): Promise<void> {
    const t = this.thread(conversationId);
    if (t.loading || (!newest && t.nextBefore === "0")) return;
    this.setThread(conversationId, { ...t, loading: true });
    try {
      const opts: { before?: string; limit: number } = { limit: PAGE };
      if (!newest && t.nextBefore) opts.before = t.nextBefore;
      const page = await this.client.history(conversationId, opts);
      const cur = this.thread(conversationId);
      const messages = merge(cur.messages, page.messages);
      const nextBefore = newest && cur.nextBefore !== undefined && cur.nextBefore !== "0" ? cur.nextBefore : page.nextBefore;
      this.setThread(conversationId, { ...cur, messages, nextBefore, loading: false });
    } catch (e) {
      this.setThread(conversationId, { ...this.thread(conversationId), loading: false });
      this.fail(e);
    }
  }

  async send(conversationId: string, text: string): Promise<void> {
    const content = text.trim();
    if (!content) return;
    try {
      await this.client.send(conversationId, content);
      this.setNotice(undefined);
    } catch (e) {
      this.fail(e);
    }
  }

  /** Uploads a photo or file, then sends it with `caption`. */
  async sendFile(conversationId: string, file: File, caption: string): Promise<void> {
    const image = file.type.startsWith("image/");
    const upload: Upload = {
      key: `${Date.now()}-${Math.random()}`,
      conversationId,
      name: file.name,
      preview: image && typeof URL.createObjectURL === "function" ? URL.createObjectURL(file) : undefined,
    };
    this.update({ uploads: [...this.snap.uploads, upload] });
    try {
      const up = await this.rest.upload(conversationId, file, file.name);
      const m = await this.client.send(conversationId, caption.trim(), { kind: up.type, mediaId: up.id });
      // The Ack carries no URLs: show one's own upload from its record.
      const media: NonNullable<Message["media"]> = { mediaId: up.id, url: up.url, mimeType: up.mimeType, sizeBytes: up.sizeBytes };
      if (up.name) media.name = up.name;
      if (up.thumbUrl) media.thumbnailUrl = up.thumbUrl;
      if (up.thumbWidth) media.thumbnailWidth = up.thumbWidth;
      if (up.thumbHeight) media.thumbnailHeight = up.thumbHeight;
      if (up.placeholder) media.placeholder = up.placeholder;
      const t = this.snap.threads.get(conversationId);
      if (t) this.setThread(conversationId, { ...t, messages: t.messages.map((x) => (x.id === m.id ? { ...x, media } : x)) });
    } catch (e) {
      this.fail(e);
    } finally {
      this.update({ uploads: this.snap.uploads.filter((u) => u.key !== upload.key) });
      if (upload.preview) URL.revokeObjectURL(upload.preview);
    }
  }

  typing(conversationId: string, active: boolean): void {
    if (active) this.client.typing(conversationId);
    else this.client.stopTyping(conversationId);
  }

  markRead(conversationId: string): void {
    const t = this.snap.threads.get(conversationId);
    const last = t?.messages[t.messages.length - 1];
    const c = this.snap.conversations.find((x) => x.id === conversationId);
    if (c && c.unreadCount > 0) this.setConversation({ ...c, unreadCount: 0 });
    const theirs = last !== undefined && last.senderId !== this.snap.userId && document.visibilityState !== "hidden";
    if (last && (theirs || (c && c.unreadCount > 0))) this.client.markRead(conversationId, last.id).catch(() => {});
  }

  async refreshConversations(): Promise<void> {
    try {
      const page = await this.client.conversations({ limit: 100 });
      this.update({ conversations: page.items });
    } catch (e) {
      this.fail(e);
    }
  }

  async searchConversations(query: string): Promise<void> {
    const q = query.trim();
    if (!q) {
      this.update({ searchResults: undefined });
      return;
    }
    try {
      const page = await this.client.conversations({ query: q, limit: 50 });
      this.update({ searchResults: page.items });
    } catch (e) {
      this.fail(e);
    }
  }

  /** Opens (or finds) the direct conversation with a seller about a listing. */
  async startDirect(sellerId: string, listingId: string): Promise<string | undefined> {
    try {
      const c = await this.rest.createDirect(sellerId.trim(), listingId.trim());
      await this.refreshConversations();
      return c.id;
    } catch (e) {
      this.fail(e);
      return undefined;
    }
  }

  async block(userId: string): Promise<void> {
    try {
      await this.rest.block(userId);
      this.update({ blocked: new Set([...this.snap.blocked, userId]), notice: { kind: "info", text: `You blocked ${userId}.` } });
    } catch (e) {
      this.fail(e);
    }
  }

  async unblock(userId: string): Promise<void> {
    try {
      await this.rest.unblock(userId);
      const blocked = new Set(this.snap.blocked);
      blocked.delete(userId);
      this.update({ blocked, notice: { kind: "info", text: `You unblocked ${userId}.` } });
    } catch (e) {
      this.fail(e);
    }
  }

  async report(userId: string, conversationId: string, reason: string): Promise<void> {
    try {
      await this.rest.report({ userId, conversationId, reason });
      this.setNotice({ kind: "info", text: "Thanks — a moderator will look at it." });
    } catch (e) {
      this.fail(e);
    }
  }

  /** A media URL as the page can load it: the gateway's are relative unless it has a CDN base. */
  mediaUrl(url: string | undefined): string | undefined {
    return url?.startsWith("/") ? this.baseUrl + url : url;
  }

  setNotice(notice: Notice | undefined): void {
    this.update({ notice });
  }

  // ------------------------------------------------------------------ events

  private wire(): void {
    const c = this.client;
    c.on("state", (s) => {
      this.update({ connection: s });
      if (s.state === "open") {
        void this.refreshConversations();
        this.rest.blocks().then(
          (b) => this.update({ blocked: new Set(b.blocks.map((x) => x.userId)) }),
          () => {},
        );
        if (this.openId) void this.loadOlder(this.openId, true);
      }
    });
    c.on("message", (m) => this.onMessage(m));
    c.on("queue", (pending) => this.update({ pending }));
    c.on("typing", (t) => {
      if (t.userId !== this.snap.userId) this.setTyping(t.conversationId, t.userId, t.active);
    });
    c.on("read", (r) => {
      if (r.readerId === this.snap.userId) {
        const conv = this.snap.conversations.find((x) => x.id === r.conversationId);
        if (conv && conv.unreadCount) this.setConversation({ ...conv, unreadCount: 0 });
        return;
      }
      const t = this.thread(r.conversationId);
      const up = BigInt(r.upTo);
      if (up > t.readByOthers) this.setThread(r.conversationId, { ...t, readByOthers: up });
    });
    c.on("presence", (p) => {
      const online = new Set(this.snap.online);
      if (p.online) online.add(p.userId);
      else online.delete(p.userId);
      this.update({ online });
    });
    c.on("conversationUpdated", (conv) => this.setConversation(conv));
    c.on("conversationDeleted", ({ conversationId }) => {
      const threads = new Map(this.snap.threads);
      threads.delete(conversationId);
      this.update({ conversations: this.snap.conversations.filter((x) => x.id !== conversationId), threads });
    });
    c.on("resumed", (r) => {
      // More were missed than the server replays: reload the newest page.
      if (!r.complete) void this.loadOlder(r.conversationId, true);
    });
    c.on("gap", ({ conversationId }) => void this.loadOlder(conversationId, true));
  }

  private onMessage(m: Message): void {
    const t = this.snap.threads.get(m.conversationId);
    if (t) this.setThread(m.conversationId, { ...t, messages: merge(t.messages, [m]) });
    const conv = this.snap.conversations.find((x) => x.id === m.conversationId);
    if (!conv) {
      void this.refreshConversations();
      return;
    }
    const mine = m.senderId === this.snap.userId;
    const visible = this.openId === m.conversationId && document.visibilityState !== "hidden";
    const unreadCount = mine || visible ? 0 : conv.unreadCount + 1;
    const updated: Conversation = { ...conv, lastMessage: m, lastActivityAt: m.createdAt, lastSeq: Math.max(conv.lastSeq, m.seq), unreadCount };
    const rest = this.snap.conversations.filter((x) => x.id !== m.conversationId);
    this.update({ conversations: [updated, ...rest] });
    if (visible && !mine) this.client.markRead(m.conversationId, m.id).catch(() => {});
  }

  private setTyping(conversationId: string, userId: string, active: boolean): void {
    const key = `${conversationId} ${userId}`;
    clearTimeout(this.typingTimers.get(key));
    this.typingTimers.delete(key);
    // A start lasts 5 s unless refreshed; the server sends the stop, this is in case it is lost.
    if (active) this.typingTimers.set(key, setTimeout(() => this.setTyping(conversationId, userId, false), 6000));
    const typing = new Map(this.snap.typing);
    const set = new Set(typing.get(conversationId) ?? []);
    if (active) set.add(userId);
    else set.delete(userId);
    typing.set(conversationId, set);
    this.update({ typing });
  }

  private fail(e: unknown): void {
    this.setNotice({ kind: "error", text: describe(e) });
  }

  private thread(id: string): Thread {
    return this.snap.threads.get(id) ?? { messages: [], nextBefore: undefined, loading: false, readByOthers: 0n };
  }

  private setThread(id: string, t: Thread): void {
    const threads = new Map(this.snap.threads);
    threads.set(id, t);
    this.update({ threads });
  }

  private setConversation(c: Conversation): void {
    const list = this.snap.conversations;
    const i = list.findIndex((x) => x.id === c.id);
    const conversations = i < 0 ? [c, ...list] : list.map((x) => (x.id === c.id ? c : x));
    this.update({ conversations });
  }

  private update(part: Partial<Snapshot>): void {
    this.snap = { ...this.snap, ...part };
    for (const fn of this.listeners) fn();
  }
}

/** Messages by seq (id when seq is 0), each once. */
function merge(a: Message[], b: Message[]): Message[] {
  const by = new Map<string, Message>();
  for (const m of [...a, ...b]) by.set(m.seq ? `s${m.seq}` : `i${m.id}`, m);
  return [...by.values()].sort((x, y) => x.seq - y.seq || (BigInt(x.id) < BigInt(y.id) ? -1 : 1));
}

/** A sentence for a failure, as the page shows it. */
export function describe(e: unknown): string {
  if (e instanceof ParleyError) {
    switch (e.code || e.name) {
      case ErrorCode.Blocked:
      case "blocked":
        return "You can't message this person: one of you blocked the other.";
      case ErrorCode.RateLimited:
      case "rate_limited":
        return "You're sending too fast — wait a moment.";
      case ErrorCode.Muted:
      case "muted":
        return `You're muted: ${e.message}`;
      case ErrorCode.Moderated:
      case "moderated":
        return `Not sent: ${e.message}`;
      case ErrorCode.Held:
        return `Held for review: ${e.message}`;
      case ErrorCode.MessageTooLong:
        return "That message is too long.";
      case "timeout":
      case "disconnected":
        return "No connection to the server.";
      default:
        return e.message || e.name;
    }
  }
  return e instanceof Error ? e.message : String(e);
}

export function stateLabel(s: ConnectionState): string {
  return { idle: "Offline", connecting: "Connecting…", open: "Online", reconnecting: "Reconnecting…", closed: "Signed out" }[s];
}
