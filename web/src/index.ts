// @parley/web: the SDK (`ParleyClient`, `RestClient`, …) and the React chat (`<Chat />`).
export * from "./sdk/index.js";
export { Chat, counterpart, type ChatProps } from "./react/Chat.js";
export { ChatStore, describe, type Notice, type Snapshot, type Thread, type StoreOptions, type Upload as PageUpload } from "./react/store.js";
