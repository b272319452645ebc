// Starts the real gateway binary for the SDK's end-to-end tests. The binary is
// PARLEY_GATEWAY_BIN, else ../target/debug/gateway (built by `cargo test` / `cargo build`);
// a missing binary fails the test run, it never skips.

import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const SECRET = "parley-web-test-secret-0123456789";

export function gatewayBinary(): string {
  const bin = process.env.PARLEY_GATEWAY_BIN ?? resolve(import.meta.dirname, "../../target/debug/gateway");
  if (!existsSync(bin)) {
    throw new Error(`no gateway binary at ${bin}: run cargo build -p gateway (or set PARLEY_GATEWAY_BIN)`);
  }
  return bin;
}

/** An HS256 token for `user`, as the marketplace's auth service would mint it. */
export function token(user: string, ttlSecs = 3600, nowMs = Date.now()): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(nowMs / 1000);
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, iat: now, exp: now + ttlSecs })}`;
  return `${head}.${createHmac("sha256", SECRET).update(head).digest("base64url")}`;
}

/** A port nobody listens on now (the gateway is restarted on the same one). */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => ok(port));
    });
  });
}

export class Gateway {
  private child: ChildProcess | undefined;
  readonly dir: string;
  private readonly ownDir: boolean;

  private constructor(
    readonly port: number,
    dir: string | undefined,
    private readonly args: string[],
    private readonly secret: boolean,
  ) {
    this.ownDir = dir === undefined;
    this.dir = dir ?? mkdtempSync(join(tmpdir(), "parley-web-"));
  }

  /** Starts a gateway on a fresh data dir (or `dir`) with the test secret, unless `devSecret`. */
  static async start(options: { args?: string[]; dir?: string; devSecret?: boolean } = {}): Promise<Gateway> {
    const g = new Gateway(await freePort(), options.dir, options.args ?? [], !options.devSecret);
    await g.spawn();
    return g;
  }

  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get ws(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** SIGTERM (the gateway sends Goaway and drains), waiting for the exit. */
  async terminate(): Promise<number | null> {
    return this.signal("SIGTERM");
  }

  /** SIGKILL: nothing flushed beyond what was acknowledged. */
  async kill9(): Promise<void> {
    await this.signal("SIGKILL");
  }

  /** Starts again on the same port and data directory. */
  async restart(): Promise<void> {
    if (this.child) await this.terminate();
    await this.spawn();
  }

  async stop(): Promise<void> {
    if (this.child) await this.signal("SIGKILL");
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }

  private signal(sig: NodeJS.Signals): Promise<number | null> {
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null) return Promise.resolve(c?.exitCode ?? null);
    return new Promise((ok) => {
      c.once("exit", (code) => ok(code));
      c.kill(sig);
    });
  }

  private spawn(): Promise<void> {
    const args = [
      "--port", String(this.port), "--bind", "127.0.0.1", "--shards", "2",
      "--data-dir", this.dir, "--log", process.env.PARLEY_TEST_LOG ?? "warn",
      "--rest-requests-per-sec", "1000000", "--rest-request-burst", "1000000",
      ...(this.secret ? ["--jwt-secret", SECRET] : []),
      ...this.args,
    ];
    const env = { ...process.env };
    delete env.JWT_SECRET;
    const child = spawn(gatewayBinary(), args, { stdio: ["ignore", "pipe", "inherit"], env });
    this.child = child;
    return new Promise((ok, fail) => {
      let buf = "";
      const timer = setTimeout(() => fail(new Error("the gateway did not report listening in 30 s")), 30_000);
      child.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        if (buf.includes("parley gateway listening on ")) {
          clearTimeout(timer);
          ok();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`the gateway exited with ${code} before listening`));
      });
    });
  }
}

/** Polls `cond` every 10 ms until it holds; rejects after `ms` with `what`. */
export async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
