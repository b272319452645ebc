// Parley's web SDK: a WebSocket client for the Parley chat gateway (browsers and Node).

export { ParleyClient } from "./client.js";
export type {
  ConnectionState,
  ParleyClientOptions,
  ParleyEvents,
  PendingSend,
  SendOptions,
  StateChange,
  WebSocketFactory,
  WebSocketLike,
} from "./client.js";
export { Cursors } from "./cursors.js";
export { Emitter, type Listener } from "./emitter.js";
export type { Seen } from "./cursors.js";
export { ErrorCode, ParleyError, isRetryable } from "./errors.js";
export { RestClient, devToken } from "./rest.js";
export type { RestConversation, RestOptions, Upload } from "./rest.js";
export { decodeServerFrame, encodeClientFrame } from "./codec.js";
export { isUuid } from "./uuid.js";
export * from "./types.js";
