// The SDK's view of the protocol: plain objects decoded from FlatBuffers frames. Message ids
// are decimal strings (they exceed 2^53, as in the REST API); seqs are numbers.

export type MessageKind = "text" | "image" | "file" | "hidden";

export interface Media {
  mediaId?: string;
  url?: string;
  mimeType?: string;
  sizeBytes?: number;
  name?: string;
  width?: number;
  height?: number;
  thumbnailUrl?: string;
  thumbnailWidth?: number;
  thumbnailHeight?: number;
  /** `#rrggbb` to show while the image loads. */
  placeholder?: string;
  durationMs?: number;
}

export interface Message {
  id: string;
  conversationId: string;
  senderId: string;
  kind: MessageKind;
  content: string;
  media?: Media;
  clientMsgId?: string;
  createdAt: number;
  /** Position in the conversation: 1, 2, 3, … with no gap (0 from servers before 1.1). */
  seq: number;
}

export interface Conversation {
  id: string;
  kind: "direct" | "group";
  title?: string;
  listingId?: string;
  buyerId?: string;
  sellerId?: string;
  participantIds: string[];
  participantCount: number;
  createdAt: number;
  lastActivityAt: number;
  lastMessage?: Message;
  unreadCount: number;
  lastSeq: number;
}

export interface Welcome {
  userId: string;
  sessionId: string;
  nodeId: number;
  heartbeatMs: number;
  idleTimeoutMs: number;
  protocolMajor: number;
  protocolMinor: number;
  maxFrameBytes: number;
  maxMessageChars: number;
  serverTimeMs: number;
  tokenExpiresMs: number;
}

export interface Ack {
  messageId: string;
  createdAt: number;
  duplicate: boolean;
  messageSeq: number;
}

export interface HistoryPage {
  conversationId: string;
  messages: Message[];
  /** Pass as `before` for the next, older page; "0": none older. */
  nextBefore: string;
}

export interface ConversationPage {
  items: Conversation[];
  nextCursor?: string;
}

export interface SearchHit {
  conversationId: string;
  messageId: string;
  seq: number;
  senderId: string;
  createdAt: number;
  snippet: string;
  /** Matched spans of `snippet` as [start, end) in characters (code points). */
  highlights: Array<[number, number]>;
}

export interface SearchResults {
  hits: SearchHit[];
  nextBefore: string;
  nextOffset: number;
}

export interface TypingEvent {
  conversationId: string;
  userId: string;
  active: boolean;
}

export interface ReadEvent {
  conversationId: string;
  readerId: string;
  upTo: string;
  readAt: number;
}

export interface PresenceEvent {
  userId: string;
  online: boolean;
  lastSeenMs: number;
}

export interface ServerError {
  code: number;
  message: string;
  fatal: boolean;
}

export interface Resumed {
  conversationId: string;
  replayed: number;
  complete: boolean;
  lastSeq: number;
}

/** One decoded server frame. `seq` is the request it answers (0: pushed by the server). */
export type ServerFrame = { seq: number } & (
  | { type: "welcome"; welcome: Welcome }
  | { type: "ack"; ack: Ack }
  | { type: "message"; message: Message }
  | { type: "typing"; typing: TypingEvent }
  | { type: "read"; read: ReadEvent }
  | { type: "history"; page: HistoryPage }
  | { type: "conversations"; page: ConversationPage }
  | { type: "presence"; presence: PresenceEvent }
  | { type: "error"; error: ServerError }
  | { type: "pong"; nonce: bigint; serverTimeMs: number }
  | { type: "resumed"; resumed: Resumed }
  | { type: "conversationDeleted"; conversationId: string; byUserId: string }
  | { type: "conversationUpdated"; conversation: Conversation }
  | { type: "goaway"; reason: string; reconnectAfterMs: number }
  | { type: "searchResults"; results: SearchResults }
  | { type: "unknown" }
);

/** Where a client resumes a conversation from: the last message it has with every earlier one. */
export interface Position {
  seq: number;
  id: string;
}

/** Frames a client sends (`seq` is assigned by the client). */
export type ClientRequest =
  | { type: "hello"; token: string; resume: Array<{ conversationId: string } & Position>; clientName?: string }
  | { type: "join"; conversationId: string }
  | { type: "leave"; conversationId: string }
  | { type: "send"; conversationId: string; clientMsgId: string; kind: "text" | "image" | "file"; content: string; mediaId?: string }
  | { type: "typing"; conversationId: string; active: boolean }
  | { type: "read"; conversationId: string; upTo: string }
  | { type: "history"; conversationId: string; before?: string; limit?: number }
  | { type: "conversations"; cursor?: string; limit?: number; query?: string }
  | { type: "ping"; nonce: bigint }
  | { type: "refresh"; token: string }
  | { type: "search"; query: string; conversationId?: string; before?: string; limit?: number; byRelevance?: boolean; offset?: number }
  | { type: "mute"; conversationId: string; muted: boolean; untilMs?: number };

/** The protocol version this SDK speaks. */
export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 5;
