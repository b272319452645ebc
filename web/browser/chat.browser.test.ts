// The chat page in a real browser (Debian's Chromium driven by playwright-core) against the
// real gateway binary serving it: a buyer on a phone-sized page and a seller on a desktop-sized
// one chat, see typing, read receipts and presence, reload, go offline and come back, and a
// hostile message stays text. Screenshots go to web/screenshots/.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RestClient } from "../src/sdk/rest.js";
import { Gateway, token } from "../test/gateway.js";

const CHROMIUM = process.env.PARLEY_CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = resolve(import.meta.dirname, "../screenshots");
const PHOTO = resolve(import.meta.dirname, "../../gateway/tests/media/rocket.jpg");
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

let g: Gateway;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  g = await Gateway.start({ devSecret: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-background-networking"] });
});

afterAll(async () => {
  await browser?.close();
  await g?.stop();
});

async function signIn(ctx: BrowserContext, user: string): Promise<Page> {
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  (page as Page & { errors?: string[] }).errors = errors;
  await page.goto(g.http + "/");
  await page.getByLabel("User").fill(user);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Conversations" }).waitFor();
  await page.locator(".parley__me .parley__dot--on").waitFor(); // connected
  return page;
}

function composer(page: Page) {
  return page.getByRole("textbox", { name: "Message", exact: true });
}

function messages(page: Page) {
  return page.getByRole("log", { name: "Messages" }).locator(".parley__msg:not(.parley__msg--pending) .parley__text");
}

describe("chat page in Chromium", () => {
  it("buyer and seller chat: typing, read ticks, presence, reload, offline and back", async () => {
    const buyerCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const sellerCtx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const alice = await signIn(buyerCtx, "alice");
    const bob = await signIn(sellerCtx, "bob");

    // The buyer opens a conversation about a listing.
    await alice.getByPlaceholder("Seller id").fill("bob");
    await alice.getByPlaceholder("Listing id").fill("lego-castle");
    await alice.getByRole("button", { name: "Message seller" }).click();
    const view = alice.getByRole("region", { name: "Conversation with bob" });
    await view.waitFor();
    await expect.poll(() => view.locator(".parley__sub").textContent()).toContain("online");

    await composer(alice).fill("Is the castle complete?");
    await composer(alice).press("Enter");
    await expect.poll(() => messages(alice).allTextContents()).toEqual(["Is the castle complete?"]);

    // The seller sees it arrive unread, opens it: the buyer's tick turns to read.
    const item = bob.locator(".parley__item", { hasText: "alice" });
    await expect.poll(() => item.locator(".parley__badge").textContent()).toBe("1");
    await item.click();
    await expect.poll(() => messages(bob).allTextContents()).toEqual(["Is the castle complete?"]);
    await expect.poll(() => alice.locator("[data-tick]").last().getAttribute("data-tick")).toBe("read");
    await expect.poll(() => item.locator(".parley__badge").count()).toBe(0);

    // Typing shows while the seller writes, and goes with the send.
    await composer(bob).pressSequentially("Yes, all 1,400 pieces", { delay: 5 });
    await alice.getByText("bob is typing…").waitFor();
    await composer(bob).press("Enter");
    await expect.poll(() => messages(alice).allTextContents()).toEqual(["Is the castle complete?", "Yes, all 1,400 pieces"]);
    await expect.poll(() => alice.getByText("bob is typing…").count()).toBe(0);

    // A photo: uploaded, sent, shown to both as its thumbnail through a signed URL.
    // The upload is held until the preview was seen (a route that waits), then let through.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await alice.route("**/api/media?**", async (route) => {
      await held;
      await route.continue();
    });
    await alice.locator('input[type="file"]').setInputFiles(PHOTO);
    const preview = alice.getByTestId("upload").locator("img");
    await expect.poll(() => preview.evaluate((i) => (i as HTMLImageElement).naturalWidth)).toBeGreaterThan(0);
    expect(await preview.getAttribute("src")).toMatch(/^blob:/);
    release();
    // Image work runs at a lower CPU priority (nice 10): under load it may take a while.
    await expect.poll(() => alice.getByTestId("upload").count(), { timeout: 60_000 }).toBe(0);
    const loaded = (p: Page) =>
      p.locator(".parley__media img").evaluateAll((imgs) => imgs.filter((i) => (i as HTMLImageElement).naturalWidth > 0).length);
    await expect.poll(() => loaded(bob), { timeout: 60_000 }).toBe(1);
    await expect.poll(() => loaded(alice), { timeout: 60_000 }).toBe(1);
    expect(await bob.locator(".parley__media img").getAttribute("src")).toMatch(/\/media\/[^/]+\/thumb\?ex=/);

    await alice.screenshot({ path: `${SHOTS}/conversation-390x844.png` });
    await bob.screenshot({ path: `${SHOTS}/conversation-1280x800.png` });

    // A reload finds the history, and the read tick of what bob read before it.
    await alice.reload();
    await alice.locator(".parley__item", { hasText: "bob" }).click();
    await expect.poll(() => messages(alice).allTextContents()).toEqual(["Is the castle complete?", "Yes, all 1,400 pieces"]);
    await expect.poll(() => alice.locator("[data-tick]").first().getAttribute("data-tick")).toBe("read");

    // Offline: what the buyer writes waits, then goes once the network is back; nothing doubles.
    await buyerCtx.setOffline(true);
    await alice.evaluate(() => window.dispatchEvent(new Event("offline")));
    for (const t of ["one", "two", "three"]) {
      await composer(alice).fill(t);
      await composer(alice).press("Enter");
    }
    await expect.poll(() => alice.locator(".parley__msg--pending").count()).toBe(3);
    await alice.screenshot({ path: `${SHOTS}/offline-390x844.png` });
    await buyerCtx.setOffline(false);
    const want = ["Is the castle complete?", "Yes, all 1,400 pieces", "one", "two", "three"];
    await expect.poll(() => messages(bob).allTextContents(), { timeout: 30_000 }).toEqual(want);
    await expect.poll(() => messages(alice).allTextContents(), { timeout: 30_000 }).toEqual(want);
    await expect.poll(() => alice.locator(".parley__msg--pending").count()).toBe(0);

    // The gateway restarts (Goaway): both pages reconnect and resume; a message sent meanwhile arrives once.
    await g.restart();
    await composer(bob).fill("after the restart");
    await composer(bob).press("Enter");
    await expect.poll(() => messages(alice).allTextContents(), { timeout: 30_000 }).toEqual([...want, "after the restart"]);
    await expect.poll(() => messages(bob).allTextContents(), { timeout: 30_000 }).toEqual([...want, "after the restart"]);

    // The seller leaves: the buyer sees them go offline.
    await sellerCtx.close();
    await expect.poll(() => view.locator(".parley__sub").textContent(), { timeout: 30_000 }).toContain("offline");
    await alice.screenshot({ path: `${SHOTS}/after-offline-390x844.png` });
    expect((alice as Page & { errors?: string[] }).errors).toEqual([]);
    await buyerCtx.close();
  });

  it("message text is text: markup never runs; report and block from the menu; a blocked send says why", async () => {
    const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const ctxB = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const mallory = await signIn(ctxA, "mallory");
    const carol = await signIn(ctxB, "carol");
    await mallory.getByPlaceholder("Seller id").fill("carol");
    await mallory.getByPlaceholder("Listing id").fill("bike");
    await mallory.getByRole("button", { name: "Message seller" }).click();
    const attack = `<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2</script>`;
    await composer(mallory).fill(attack);
    await composer(mallory).press("Enter");
    await carol.locator(".parley__item", { hasText: "mallory" }).click();
    await expect.poll(() => messages(carol).allTextContents()).toEqual([attack]);
    expect(await carol.evaluate(() => (window as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await carol.locator(".parley__messages img").count()).toBe(0);

    // The seller reports the sender, then blocks them: the sender's next message is refused with a clear error.
    const dialogs: string[] = [];
    carol.on("dialog", (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      void (d.type() === "prompt" ? d.accept("scam attempt") : d.dismiss());
    });
    await carol.getByRole("button", { name: "More actions" }).click();
    await carol.getByRole("menuitem", { name: "Report mallory" }).click();
    await carol.getByText("Thanks — a moderator will look at it.").waitFor();
    expect(dialogs).toEqual(["prompt: Why are you reporting mallory?"]); // no alert() from the message
    await carol.getByRole("button", { name: "More actions" }).click();
    await carol.getByRole("menuitem", { name: "Block mallory" }).click();
    await carol.getByText("You blocked mallory.").waitFor();
    expect(await composer(carol).isDisabled()).toBe(true);
    await composer(mallory).fill("hello?");
    await composer(mallory).press("Enter");
    await expect.poll(() => mallory.getByRole("alert").textContent()).toContain("one of you blocked the other");
    await expect.poll(() => messages(carol).allTextContents()).toEqual([attack]);
    await ctxA.close();
    await ctxB.close();
  });

  it("passes an axe-core accessibility check on the list and the conversation", async () => {
    // axe is injected as a script, which the page's CSP forbids: this context bypasses it.
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
    const page = await signIn(ctx, "dora");
    await page.getByPlaceholder("Seller id").fill("erin");
    await page.getByPlaceholder("Listing id").fill("lamp");
    await page.getByRole("button", { name: "Message seller" }).click();
    await composer(page).fill("Hello! Is the lamp still there?");
    await composer(page).press("Enter");
    await expect.poll(() => messages(page).count()).toBe(1);
    await page.addScriptTag({ path: AXE });
    const violations = await page.evaluate(async () => {
      const axe = (window as unknown as { axe: { run: (ctx: Document, opts: object) => Promise<{ violations: Array<{ id: string; impact: string; nodes: unknown[] }> }> } }).axe;
      const r = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
      return r.violations.map((v) => `${v.id} (${v.impact}, ${v.nodes.length} nodes)`);
    });
    expect(violations).toEqual([]);
    await ctx.close();
  });

  it("scrolls back through history 50 at a time and keeps the reader's place", async () => {
    const gw = await Gateway.start({ args: ["--user-messages-per-sec", "100000", "--user-message-burst", "100000"] });
    try {
      const t = token("gina");
      const rest = new RestClient({ baseUrl: gw.http, token: () => t });
      const conv = await rest.createDirect("hank", "piano");
      for (let i = 1; i <= 120; i++) {
        await rest.call("POST", `/api/conversations/${conv.id}/messages`, { content: `message ${i}` });
      }
      // Production mode: no dev sign-in; the embedding site passes the token in the fragment.
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await ctx.newPage();
      await page.goto(`${gw.http}/?conversation=${conv.id}#token=${t}`);
      const log = page.getByRole("log", { name: "Messages" });
      await expect.poll(() => messages(page).count()).toBe(50);
      expect(await messages(page).last().textContent()).toBe("message 120");
      for (const want of [100, 120]) {
        const first = messages(page).first();
        const before = await first.textContent();
        // Where that message shows once the reader scrolled to the top: the top of the list
        // plus its offset in the content.
        const topBefore = await first.evaluate((el) => {
          const list = el.closest(".parley__messages")!;
          return el.getBoundingClientRect().top + list.scrollTop;
        });
        await log.evaluate((el) => el.scrollTo({ top: 0 }));
        await expect.poll(() => messages(page).count()).toBe(want);
        // The message that was at the top has not jumped: it is where it was, give or take a line.
        const same = page.locator(".parley__text", { hasText: new RegExp(`^${before}$`) });
        const topAfter = await same.evaluate((el) => el.getBoundingClientRect().top);
        expect(Math.abs(topAfter - topBefore)).toBeLessThan(80);
      }
      await page.getByText("Start of the conversation").waitFor();
      expect(await messages(page).first().textContent()).toBe("message 1");
      expect(await page.evaluate(() => fetch("/api/dev/token").then((r) => r.status))).toBe(404);
      await ctx.close();
    } finally {
      await gw.stop();
    }
  });
});
