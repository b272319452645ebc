// Conversation ids are UUIDs on the wire as two big-endian 64-bit halves (`struct Uuid`).

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `s` is a UUID in its usual text form (any case). */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** The two halves of a UUID string; throws on anything that is not one. */
export function uuidToHalves(s: string): [bigint, bigint] {
  if (!isUuid(s)) throw new TypeError(`not a conversation id: ${JSON.stringify(s)}`);
  const hex = s.replace(/-/g, "");
  return [BigInt("0x" + hex.slice(0, 16)), BigInt("0x" + hex.slice(16))];
}

/** The lowercase UUID string of two halves. */
export function halvesToUuid(hi: bigint, lo: bigint): string {
  const hex = hi.toString(16).padStart(16, "0") + lo.toString(16).padStart(16, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
