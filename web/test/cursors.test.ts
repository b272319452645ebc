import { describe, expect, it } from "vitest";
import { Cursors } from "../src/sdk/cursors.js";

describe("Cursors", () => {
  it("moves on each next seq and drops repeats", () => {
    const c = new Cursors();
    expect(c.saw("a", { seq: 5, id: "50" }).kind).toBe("new");
    expect(c.saw("a", { seq: 6, id: "60" }).kind).toBe("new");
    expect(c.saw("a", { seq: 6, id: "60" }).kind).toBe("repeat");
    expect(c.saw("a", { seq: 2, id: "20" }).kind).toBe("repeat");
    expect(c.get("a")).toEqual({ seq: 6, id: "60" });
  });

  it("keeps its position below a gap until the gap is filled", () => {
    const c = new Cursors();
    c.saw("a", { seq: 1, id: "1" });
    expect(c.saw("a", { seq: 3, id: "3" })).toEqual({ kind: "gap", missingFrom: 2 });
    expect(c.saw("a", { seq: 3, id: "3" }).kind).toBe("repeat");
    expect(c.get("a")!.seq).toBe(1);
    expect(c.saw("a", { seq: 2, id: "2" }).kind).toBe("new");
    expect(c.get("a")).toEqual({ seq: 3, id: "3" });
  });

  it("set never moves back and lists resume points", () => {
    const c = new Cursors();
    c.set("a", { seq: 10, id: "100" });
    c.set("a", { seq: 4, id: "40" });
    c.set("b", { seq: 1, id: "7" });
    expect(c.all()).toEqual([
      { conversationId: "a", seq: 10, id: "100" },
      { conversationId: "b", seq: 1, id: "7" },
    ]);
    c.forget("a");
    expect(c.get("a")).toBeUndefined();
  });
});
