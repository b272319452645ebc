// The marketplace chat: a conversation list beside (desktop) or before (phone) a conversation
// view. `<Chat userId token conversationId />` is the public component a marketplace embeds.

import { useEffect, useLayoutEffect, useMemo, useRef, useState, useSyncExternalStore, type FormEvent, type KeyboardEvent } from "react";
import type { Conversation, Message } from "../sdk/types.js";
import { ChatStore, stateLabel, type Snapshot } from "./store.js";

export interface ChatProps {
  /** The signed-in user (the token's `sub`). */
  userId: string;
  /** A JWT for that user, minted by the marketplace's auth service. */
  token: string;
  /** Open this conversation first. */
  conversationId?: string;
  /** Called for a fresh token before this one expires. */
  refreshToken?: () => Promise<string>;
  /** The gateway's WebSocket URL (default: this page's origin + `/ws`). */
  url?: string;
  /** The gateway's HTTP base URL for REST (default: this page's origin). */
  baseUrl?: string;
  /** Shows a "Sign out" button that calls this. */
  onSignOut?: () => void;
}

function defaultWsUrl(): string {
  const { protocol, host } = window.location;
  return `${protocol === "https:" ? "wss:" : "ws:"}//${host}/ws`;
}

export function Chat(props: ChatProps) {
  const store = useMemo(
    () => {
      const options: ConstructorParameters<typeof ChatStore>[0] = {
        url: props.url ?? defaultWsUrl(),
        baseUrl: props.baseUrl ?? "",
        token: props.token,
        userId: props.userId,
      };
      if (props.refreshToken) options.refreshToken = props.refreshToken;
      return new ChatStore(options);
    },
    // A new user or server is a new store; a new token for the same user goes through refreshToken.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [props.userId, props.url, props.baseUrl],
  );
  useEffect(() => {
    store.start();
    return () => store.stop();
  }, [store]);
  const snap = useSyncExternalStore(store.subscribe, store.getSnapshot);
  const [openId, setOpenId] = useState<string | undefined>(props.conversationId);
  useEffect(() => {
    void store.open(openId);
  }, [store, openId, snap.connection.state === "open"]);
  useEffect(() => {
    const onVisible = () => openId && document.visibilityState === "visible" && store.markRead(openId);
    document.addEventListener("visibilitychange", onVisible);
    return () => document.removeEventListener("visibilitychange", onVisible);
  }, [store, openId]);

  const open = snap.conversations.find((c) => c.id === openId);
  return (
    <div className={`parley ${openId ? "parley--open" : ""}`}>
      <Banner snap={snap} onDismiss={() => store.setNotice(undefined)} />
      <div className="parley__panes">
        <ConversationList store={store} snap={snap} openId={openId} onOpen={setOpenId} onSignOut={props.onSignOut} />
        {openId ? (
          <ConversationView key={openId} store={store} snap={snap} conversationId={openId} conversation={open} onBack={() => setOpenId(undefined)} />
        ) : (
          <section className="parley__empty" aria-label="No conversation open">
            <p>Choose a conversation, or message a seller.</p>
          </section>
        )}
      </div>
    </div>
  );
}

/** The browser's idea of the network (`navigator.onLine`, kept current). */
function useOnline(): boolean {
  const [online, setOnline] = useState(() => typeof navigator === "undefined" || navigator.onLine !== false);
  useEffect(() => {
    const up = () => setOnline(true);
    const down = () => setOnline(false);
    window.addEventListener("online", up);
    window.addEventListener("offline", down);
    return () => {
      window.removeEventListener("online", up);
      window.removeEventListener("offline", down);
    };
  }, []);
  return online;
}

function Banner({ snap, onDismiss }: { snap: Snapshot; onDismiss: () => void }) {
  const online = useOnline();
  const s = snap.connection;
  let status: string | undefined;
  if (s.state === "reconnecting") status = `Reconnecting… (attempt ${s.attempt})`;
  else if (s.state === "connecting") status = s.attempt ? "Reconnecting…" : "Connecting…";
  else if (s.state === "closed") status = `Disconnected: ${s.error?.message ?? "signed out"}`;
  else if (s.state === "idle") status = "Offline";
  if (!online) status = "You're offline — messages will be sent when you're back.";
  return (
    <div className="parley__banners" aria-live="polite">
      {status && (
        <div className={`parley__banner parley__banner--${s.state}`} role="status" data-testid="connection">
          {status}
        </div>
      )}
      {snap.notice && (
        <div className={`parley__banner parley__banner--${snap.notice.kind}`} role={snap.notice.kind === "error" ? "alert" : "status"}>
          <span>{snap.notice.text}</span>
          <button type="button" className="parley__link" onClick={onDismiss} aria-label="Dismiss">
            ✕
          </button>
        </div>
      )}
    </div>
  );
}

/** Who a conversation is with, for its title. */
export function counterpart(c: Conversation | undefined, me: string): string {
  if (!c) return "";
  if (c.kind === "group") return c.title || c.participantIds.filter((p) => p !== me).join(", ");
  return (c.buyerId === me ? c.sellerId : c.buyerId) ?? c.participantIds.find((p) => p !== me) ?? "";
}

function preview(m: Message | undefined, me: string): string {
  if (!m) return "No messages yet";
  const who = m.senderId === me ? "You: " : "";
  if (m.kind === "hidden") return "Message from a blocked user";
  if (m.kind === "image") return `${who}Photo${m.content ? `: ${m.content}` : ""}`;
  if (m.kind === "file") return `${who}File: ${m.content || m.media?.name || ""}`;
  return who + m.content;
}

function ConversationList(props: {
  store: ChatStore;
  snap: Snapshot;
  openId: string | undefined;
  onOpen: (id: string) => void;
  onSignOut: (() => void) | undefined;
}) {
  const { store, snap } = props;
  const [query, setQuery] = useState("");
  const [seller, setSeller] = useState("");
  const [listing, setListing] = useState("");
  useEffect(() => {
    const t = setTimeout(() => void store.searchConversations(query), 200);
    return () => clearTimeout(t);
  }, [store, query]);
  const items = query.trim() && snap.searchResults ? snap.searchResults : snap.conversations;
  const start = async (e: FormEvent) => {
    e.preventDefault();
    if (!seller.trim() || !listing.trim()) return;
    const id = await store.startDirect(seller, listing);
    if (id) {
      setSeller("");
      setListing("");
      props.onOpen(id);
    }
  };
  return (
    <nav className="parley__list" aria-label="Conversations">
      <header className="parley__list-head">
        <h1>Messages</h1>
        <span className="parley__me" title={stateLabel(snap.connection.state)}>
          <span className={`parley__dot ${snap.connection.state === "open" ? "parley__dot--on" : ""}`} aria-hidden="true" />
          {snap.userId}
          {props.onSignOut && (
            <button type="button" className="parley__signout" onClick={props.onSignOut}>
              Sign out
            </button>
          )}
        </span>
      </header>
      <label className="parley__search">
        <span className="parley__sr">Search conversations</span>
        <input type="search" placeholder="Search conversations" value={query} onChange={(e) => setQuery(e.target.value)} />
      </label>
      <ul className="parley__items">
        {items.map((c) => {
          const who = counterpart(c, snap.userId);
          const online = c.kind === "direct" && snap.online.has(who);
          return (
            <li key={c.id}>
              <button
                type="button"
                className={`parley__item ${c.id === props.openId ? "parley__item--open" : ""}`}
                onClick={() => props.onOpen(c.id)}
                aria-current={c.id === props.openId ? "true" : undefined}
                data-conversation={c.id}
              >
                <span className="parley__avatar" aria-hidden="true">
                  {who.slice(0, 1).toUpperCase()}
                  {online && <span className="parley__dot parley__dot--on parley__avatar-dot" />}
                </span>
                <span className="parley__item-text">
                  <span className="parley__item-title">
                    {who}
                    {online && <span className="parley__sr"> (online)</span>}
                    {c.listingId && <span className="parley__listing"> · {c.listingId}</span>}
                  </span>
                  <span className="parley__item-last">{preview(c.lastMessage, snap.userId)}</span>
                </span>
                {c.unreadCount > 0 && (
                  <span className="parley__badge" aria-label={`${c.unreadCount} unread`}>
                    {c.unreadCount > 99 ? "99+" : c.unreadCount}
                  </span>
                )}
              </button>
            </li>
          );
        })}
        {items.length === 0 && <li className="parley__none">{query ? "Nothing matches." : "No conversations yet."}</li>}
      </ul>
      <form className="parley__new" onSubmit={start} aria-label="Message a seller">
        <label>
          <span className="parley__sr">Seller</span>
          <input placeholder="Seller id" value={seller} onChange={(e) => setSeller(e.target.value)} />
        </label>
        <label>
          <span className="parley__sr">Listing</span>
          <input placeholder="Listing id" value={listing} onChange={(e) => setListing(e.target.value)} />
        </label>
        <button type="submit">Message seller</button>
      </form>
    </nav>
  );
}

function dayLabel(ms: number): string {
  const d = new Date(ms);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86_400_000);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return d.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short", year: d.getFullYear() === today.getFullYear() ? undefined : "numeric" });
}

function time(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function ConversationView(props: { store: ChatStore; snap: Snapshot; conversationId: string; conversation: Conversation | undefined; onBack: () => void }) {
  const { store, snap, conversationId: id, conversation: c } = props;
  const me = snap.userId;
  const thread = snap.threads.get(id);
  const messages = thread?.messages ?? [];
  const pending = snap.pending.filter((p) => p.conversationId === id);
  const who = counterpart(c, me);
  const isDirect = c?.kind !== "group";
  const blocked = isDirect && snap.blocked.has(who);
  const typing = [...(snap.typing.get(id) ?? [])];
  const scroller = useRef<HTMLDivElement>(null);
  const keep = useRef<{ height: number; top: number } | undefined>(undefined);
  const atBottom = useRef(true);
  const [text, setText] = useState("");
  const [menu, setMenu] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);

  // Older pages go on top: keep what the reader looks at where it was.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (keep.current) {
      el.scrollTop = el.scrollHeight - keep.current.height + keep.current.top;
      keep.current = undefined;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [messages.length, pending.length, typing.length, snap.uploads.length]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 80 && thread && thread.nextBefore !== "0" && !thread.loading) {
      keep.current = { height: el.scrollHeight, top: el.scrollTop };
      void store.loadOlder(id);
    }
  };

  const submit = () => {
    const t = text;
    if (!t.trim()) return;
    setText("");
    atBottom.current = true;
    void store.send(id, t);
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  let lastDay = "";
  return (
    <section className="parley__view" aria-label={`Conversation with ${who}`}>
      <header className="parley__view-head">
        <button type="button" className="parley__back" onClick={props.onBack} aria-label="Back to conversations">
          ‹
        </button>
        <div className="parley__view-title">
          <h2>{who}</h2>
          <span className="parley__sub">
            {isDirect && snap.connection.state === "open" && (snap.online.has(who) ? "online" : "offline")}
            {c?.listingId && ` · listing ${c.listingId}`}
          </span>
        </div>
        {isDirect && who && (
          <div className="parley__menu">
            <button type="button" aria-haspopup="menu" aria-expanded={menu} onClick={() => setMenu(!menu)} aria-label="More actions">
              ⋯
            </button>
            {menu && (
              <ul role="menu" className="parley__menu-items">
                <li role="none">
                  <button
                    role="menuitem"
                    type="button"
                    onClick={() => {
                      setMenu(false);
                      void (blocked ? store.unblock(who) : store.block(who));
                    }}
                  >
                    {blocked ? `Unblock ${who}` : `Block ${who}`}
                  </button>
                </li>
                <li role="none">
                  <button
                    role="menuitem"
                    type="button"
                    onClick={() => {
                      setMenu(false);
                      const reason = window.prompt(`Why are you reporting ${who}?`, "scam");
                      if (reason) void store.report(who, id, reason);
                    }}
                  >
                    Report {who}
                  </button>
                </li>
              </ul>
            )}
          </div>
        )}
      </header>
      <div className="parley__messages" ref={scroller} onScroll={onScroll} role="log" aria-label="Messages" aria-live="polite" tabIndex={0}>
        {thread?.loading && <p className="parley__loading">Loading…</p>}
        {thread?.nextBefore === "0" && messages.length > 0 && <p className="parley__start">Start of the conversation</p>}
        {messages.map((m) => {
          const day = dayLabel(m.createdAt);
          const sep = day !== lastDay;
          lastDay = day;
          const mine = m.senderId === me;
          const read = mine && thread !== undefined && BigInt(m.id) <= thread.readByOthers;
          return (
            <div key={m.seq || m.id}>
              {sep && (
                <div className="parley__day" role="separator">
                  {day}
                </div>
              )}
              <div className={`parley__msg ${mine ? "parley__msg--mine" : ""} ${m.kind === "hidden" ? "parley__msg--hidden" : ""}`} data-seq={m.seq}>
                {!mine && c?.kind === "group" && <span className="parley__from">{m.senderId}</span>}
                <Body m={m} url={(u) => store.mediaUrl(u)} />
                <span className="parley__meta">
                  <time dateTime={new Date(m.createdAt).toISOString()}>{time(m.createdAt)}</time>
                  {mine && (
                    <span className={`parley__tick ${read ? "parley__tick--read" : ""}`} aria-label={read ? "Read" : "Sent"} data-tick={read ? "read" : "sent"}>
                      {read ? "✓✓" : "✓"}
                    </span>
                  )}
                </span>
              </div>
            </div>
          );
        })}
        {pending.map((p) => (
          <div key={p.clientMsgId} className="parley__msg parley__msg--mine parley__msg--pending">
            <span className="parley__text">{p.content}</span>
            <span className="parley__meta">
              <span className="parley__tick" aria-label={p.lastError ? "Waiting to retry" : "Sending"} data-tick="pending">
                <Icon name={p.lastError ? "retry" : "clock"} />
              </span>
            </span>
          </div>
        ))}
        {snap.uploads
          .filter((u) => u.conversationId === id)
          .map((u) => (
            <div key={u.key} className="parley__msg parley__msg--mine parley__msg--pending" data-testid="upload">
              {u.preview ? <img className="parley__preview" src={u.preview} alt={`Uploading ${u.name}`} /> : <span className="parley__text">{u.name}</span>}
              <span className="parley__meta">Uploading…</span>
            </div>
          ))}
        {typing.length > 0 && (
          <p className="parley__typing" aria-live="polite">
            {typing.join(", ")} {typing.length > 1 ? "are" : "is"} typing…
          </p>
        )}
      </div>
      <form
        className="parley__composer"
        onSubmit={(e) => {
          e.preventDefault();
          submit();
        }}
      >
        <input
          ref={fileInput}
          type="file"
          hidden
          accept="image/jpeg,image/png,image/webp,image/gif,application/pdf,text/plain"
          onChange={(e) => {
            const f = e.target.files?.[0];
            if (f) void store.sendFile(id, f, text);
            setText("");
            e.target.value = "";
          }}
        />
        <button type="button" className="parley__attach" onClick={() => fileInput.current?.click()} aria-label="Attach a photo or file" disabled={blocked}>
          <Icon name="clip" />
        </button>
        <label className="parley__field">
          <span className="parley__sr">Message</span>
          <textarea
            rows={1}
            value={text}
            placeholder={blocked ? `You blocked ${who}` : "Write a message"}
            disabled={blocked}
            maxLength={snap.connection.state === "open" ? (props.store.client.welcome?.maxMessageChars ?? 4000) : 4000}
            onChange={(e) => {
              setText(e.target.value);
              store.typing(id, e.target.value.length > 0);
            }}
            onKeyDown={onKey}
            onBlur={() => store.typing(id, false)}
            enterKeyHint="send"
          />
        </label>
        <button type="submit" className="parley__send" disabled={blocked || !text.trim()}>
          Send
        </button>
      </form>
    </section>
  );
}

/** Icons as inline SVG (emoji fonts are not everywhere). */
function Icon({ name }: { name: "clip" | "clock" | "retry" }) {
  const paths = {
    clip: "M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5",
    clock: "M12 7v5l3 2M21 12a9 9 0 1 1-18 0 9 9 0 0 1 18 0z",
    retry: "M4 4v6h6M20 20v-6h-6M5.5 15a7 7 0 0 0 12.3 2M18.5 9A7 7 0 0 0 6.2 7",
  };
  return (
    <svg className="parley__icon" viewBox="0 0 24 24" width="1em" height="1em" aria-hidden="true" focusable="false">
      <path d={paths[name]} fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" />
    </svg>
  );
}

function Body({ m, url }: { m: Message; url: (u: string | undefined) => string | undefined }) {
  if (m.kind === "hidden") return <span className="parley__text">Message from a blocked user</span>;
  const md = m.media;
  if (m.kind === "image" && md) {
    const src = url(md.thumbnailUrl ?? md.url);
    return (
      <span className="parley__media">
        {src ? (
          <a href={url(md.url) ?? src} target="_blank" rel="noopener noreferrer">
            <img
              src={src}
              alt={m.content || md.name || "Photo"}
              width={md.thumbnailWidth ?? md.width}
              height={md.thumbnailHeight ?? md.height}
              style={{ backgroundColor: md.placeholder }}
              loading="lazy"
            />
          </a>
        ) : (
          <span className="parley__text">Photo</span>
        )}
        {m.content && <span className="parley__text">{m.content}</span>}
      </span>
    );
  }
  if (m.kind === "file" && md) {
    return (
      <span className="parley__media">
        {md.url ? (
          <a className="parley__file" href={url(md.url)} rel="noopener noreferrer" download={md.name}>
            <Icon name="clip" /> {md.name ?? "file"} {md.sizeBytes ? `(${Math.ceil(md.sizeBytes / 1024)} KB)` : ""}
          </a>
        ) : (
          <span className="parley__text">
            <Icon name="clip" /> {md.name ?? "File"}
          </span>
        )}
        {m.content && <span className="parley__text">{m.content}</span>}
      </span>
    );
  }
  // Always as text: React escapes it, nothing in a message is ever markup.
  return <span className="parley__text">{m.content}</span>;
}
