// Per conversation, the client's position: the seq and id of the last message it has with
// every earlier one (README "Protocol", "What a client keeps"; the Rust `parley-client`'s
// `Cursors` does the same).

import type { Position } from "./types.js";

/** What `Cursors.saw` made of a message. */
export type Seen = { kind: "new" } | { kind: "repeat" } | { kind: "gap"; missingFrom: number };

interface Line {
  at: Position;
  /** Messages seen above a gap, by seq. */
  ahead: Map<number, string>;
}

export class Cursors {
  private readonly lines = new Map<string, Line>();

  /** Records message `at` of `conversationId` (a MessageNew, or the Ack of one's own Send). */
  saw(conversationId: string, at: Position): Seen {
    const line = this.lines.get(conversationId);
    if (at.seq === 0) {
      // A server before protocol 1.1: ids only, no order to check.
      if (!line) this.lines.set(conversationId, { at, ahead: new Map() });
      else if (BigInt(at.id) > BigInt(line.at.id)) line.at = at;
      return { kind: "new" };
    }
    if (!line) {
      this.lines.set(conversationId, { at, ahead: new Map() });
      return { kind: "new" };
    }
    if (at.seq <= line.at.seq || line.ahead.has(at.seq)) return { kind: "repeat" };
    if (at.seq > line.at.seq + 1) {
      line.ahead.set(at.seq, at.id);
      return { kind: "gap", missingFrom: line.at.seq + 1 };
    }
    line.at = at;
    this.advance(line);
    return { kind: "new" };
  }

  /** Sets the position (a saved one, or the newest message of a freshly loaded history); never moves it back. */
  set(conversationId: string, at: Position): void {
    let line = this.lines.get(conversationId);
    if (!line) {
      line = { at: { seq: 0, id: "0" }, ahead: new Map() };
      this.lines.set(conversationId, line);
    }
    if (at.seq > line.at.seq) {
      line.at = at;
      for (const seq of [...line.ahead.keys()]) if (seq <= at.seq) line.ahead.delete(seq);
      this.advance(line);
    }
  }

  /** The position in a conversation (undefined: nothing yet). */
  get(conversationId: string): Position | undefined {
    return this.lines.get(conversationId)?.at;
  }

  /** Forgets a conversation (deleted, left). */
  forget(conversationId: string): void {
    this.lines.delete(conversationId);
  }

  /** Every position, for `Hello.resume`. */
  all(): Array<{ conversationId: string } & Position> {
    const out = [];
    for (const [conversationId, line] of this.lines) {
      if (line.at.seq > 0 || line.at.id !== "0") out.push({ conversationId, ...line.at });
    }
    return out;
  }

  private advance(line: Line): void {
    for (;;) {
      const id = line.ahead.get(line.at.seq + 1);
      if (id === undefined) return;
      line.ahead.delete(line.at.seq + 1);
      line.at = { seq: line.at.seq + 1, id };
    }
  }
}
