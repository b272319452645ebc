// Error codes of the protocol and the REST API (README "Error codes").

export const ErrorCode = {
  BadFrame: 1000,
  UnsupportedVersion: 1001,
  NotAuthenticated: 1002,
  FrameTooLarge: 1004,
  AuthFailed: 1100,
  TokenExpired: 1101,
  NotFound: 1200,
  Forbidden: 1201,
  Blocked: 1202,
  Banned: 1203,
  Muted: 1204,
  Moderated: 1205,
  Held: 1206,
  Invalid: 1300,
  MessageTooLong: 1301,
  RateLimited: 1400,
  TooManySessions: 1402,
  SlowConsumer: 1500,
  StorageUnavailable: 1600,
  Internal: 1601,
  Unsupported: 1602,
  ShuttingDown: 1700,
  Resync: 1701,
} as const;

/** A request the server refused, or one that could not be made. */
export class ParleyError extends Error {
  /** The protocol's error code (README), or 0 for a client-side failure (timeout, closed). */
  readonly code: number;
  /** The REST error name (`rate_limited`, …) or a client-side one (`timeout`, `closed`). */
  override readonly name: string;
  /** HTTP status of a REST error. */
  readonly status: number | undefined;
  /** REST `Retry-After`, in ms. */
  readonly retryAfterMs: number | undefined;

  constructor(code: number, name: string, message: string, extra: { status?: number; retryAfterMs?: number } = {}) {
    super(message);
    this.code = code;
    this.name = name;
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
  }
}

/** Whether a refused Send may be sent again later with the same client_msg_id and succeed. */
export function isRetryable(code: number): boolean {
  return (
    code === ErrorCode.RateLimited ||
    code === ErrorCode.StorageUnavailable ||
    code === ErrorCode.ShuttingDown ||
    code === ErrorCode.Internal
  );
}
