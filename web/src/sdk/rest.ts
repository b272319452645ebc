// REST helpers for what the socket protocol does not carry (creating conversations, uploads,
// blocks, reports) or where plain HTTP is handier. JSON as in README "REST API".

import { ParleyError } from "./errors.js";

/** A conversation as the REST API shows it. */
export interface RestConversation {
  id: string;
  type: string;
  listingId?: string;
  buyerId?: string;
  sellerId?: string;
  title?: string;
  participantIds: string[];
  participantCount: number;
  createdAt: string;
  lastActivityAt?: string;
  [key: string]: unknown;
}

/** An upload's record (`POST /api/media`). */
export interface Upload {
  id: string;
  type: "image" | "file";
  mimeType: string;
  sizeBytes: number;
  name?: string;
  width?: number;
  height?: number;
  url: string;
  thumbUrl?: string;
  thumbWidth?: number;
  thumbHeight?: number;
  placeholder?: string;
  durationMs?: number;
  [key: string]: unknown;
}

export interface RestOptions {
  /** The gateway's base URL (`https://chat.example.com`); "" for the page's own origin. */
  baseUrl: string;
  /** The current token (called for every request, so a refreshed token is used at once). */
  token: () => string;
  fetch?: typeof fetch;
}

export class RestClient {
  private readonly base: string;
  private readonly token: () => string;
  private readonly fetchFn: typeof fetch;

  constructor(options: RestOptions) {
    this.base = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** A direct conversation with a seller about a listing (the caller is the buyer); existing one if any. */
  createDirect(sellerId: string, listingId: string): Promise<RestConversation> {
    return this.call("POST", "/api/conversations", { sellerId, listingId });
  }

  /** A group of participants (the caller included). */
  createGroup(participantIds: string[], title: string): Promise<RestConversation> {
    return this.call("POST", "/api/conversations", { participantIds, title });
  }

  conversation(id: string): Promise<RestConversation> {
    return this.call("GET", `/api/conversations/${encodeURIComponent(id)}`);
  }

  deleteConversation(id: string): Promise<void> {
    return this.call("DELETE", `/api/conversations/${encodeURIComponent(id)}`);
  }

  /** How far the other participants have read (for read ticks before any live receipt). */
  reads(conversationId: string): Promise<{ reads: Array<{ userId: string; upTo: string; seq: number; readAt: string }> }> {
    return this.call("GET", `/api/conversations/${encodeURIComponent(conversationId)}/reads`);
  }

  unread(): Promise<{ total: number; conversations: Array<{ conversationId: string; unreadCount: number }> }> {
    return this.call("GET", "/api/unread");
  }

  /** Uploads a photo or file for `conversationId`; send it with `client.send(conv, caption, {kind, mediaId})`. */
  upload(conversationId: string, body: Blob | Uint8Array, name: string): Promise<Upload> {
    const q = `conversation=${encodeURIComponent(conversationId)}&name=${encodeURIComponent(name)}`;
    return this.call("POST", `/api/media?${q}`, undefined, body);
  }

  search(
    q: string,
    options: { conversation?: string; before?: string; sort?: "newest" | "relevance"; offset?: number; limit?: number } = {},
  ): Promise<{
    results: Array<{ conversationId: string; messageId: string; seq: number; senderId: string; createdAt: string; snippet: string; highlights: Array<[number, number]> }>;
    nextBefore?: string;
    nextOffset?: number;
  }> {
    const params = new URLSearchParams({ q });
    for (const [k, v] of Object.entries(options)) if (v !== undefined) params.set(k, String(v));
    return this.call("GET", `/api/search?${params}`);
  }

  blocks(): Promise<{ blocks: Array<{ userId: string; blockedAt: string }> }> {
    return this.call("GET", "/api/blocks");
  }

  block(userId: string): Promise<unknown> {
    return this.call("POST", "/api/blocks", { userId });
  }

  unblock(userId: string): Promise<unknown> {
    return this.call("DELETE", `/api/blocks/${encodeURIComponent(userId)}`);
  }

  report(report: { userId: string; conversationId?: string; messageId?: string; reason: string }): Promise<{ id: string }> {
    return this.call("POST", "/api/reports", report);
  }

  standing(): Promise<{ userId: string; banned: boolean; shadowed: boolean; mutedUntil?: string; warnings: number }> {
    return this.call("GET", "/api/standing");
  }

  /** One request; a non-2xx answer rejects with the server's error code and message. */
  async call<T>(method: string, path: string, json?: unknown, raw?: Blob | Uint8Array): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token()}` };
    let body: BodyInit | undefined;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (raw !== undefined) {
      headers["Content-Type"] = "application/octet-stream";
      body = raw as BodyInit;
    }
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = body;
    const resp = await this.fetchFn(this.base + path, init);
    const text = await resp.text();
    if (!resp.ok) {
      let name = "http_error";
      let message = `${resp.status} ${resp.statusText}`;
      try {
        const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
        if (e?.code) name = e.code;
        if (e?.message) message = e.message;
      } catch {
        /* not JSON */
      }
      const retry = resp.headers.get("Retry-After");
      const extra: { status: number; retryAfterMs?: number } = { status: resp.status };
      if (retry && /^\d+$/.test(retry)) extra.retryAfterMs = Number(retry) * 1000;
      throw new ParleyError(0, name, message, extra);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** A development token (`POST /api/dev/token`): only a gateway on its generated development secret has it. */
export async function devToken(baseUrl: string, userId: string, fetchFn: typeof fetch = globalThis.fetch): Promise<string> {
  const resp = await fetchFn(`${baseUrl.replace(/\/+$/, "")}/api/dev/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId }),
  });
  if (!resp.ok) throw new ParleyError(0, resp.status === 404 ? "not_found" : "http_error", `dev sign-in: ${resp.status}`, { status: resp.status });
  return ((await resp.json()) as { token: string }).token;
}
