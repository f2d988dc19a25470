// Headless-Chromium test of examples/chat.rs, run by scripts/browser-test.sh.
//
// Two browsers (separate contexts, so separate sessions) join the chat page
// as alice and bob; alice's message must reach both pages, bob's join must
// be announced to alice, bob's rename and departure too; when bob's
// connection drops, his page reconnects with `since` and shows the lines
// said meanwhile, each once. A screenshot of
// alice's page is saved for a person to look at.
//
// Env: BASE_URL (required), BROWSER_TEST_DIR (where playwright-core is
// installed; default target/browser-test), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT (default BROWSER_TEST_DIR/chat.png).
// Exits 0 when every check passed, 1 with a message saying which failed.

import { createRequire } from "node:module";
import path from "node:path";

const baseUrl = process.env.BASE_URL;
const installDir = path.resolve(process.env.BROWSER_TEST_DIR ?? "target/browser-test");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const screenshot = path.resolve(process.env.SCREENSHOT ?? path.join(installDir, "chat.png"));
const TIMEOUT = 10_000;

if (!baseUrl) {
  console.error("chat.test.mjs: BASE_URL is not set (scripts/browser-test.sh sets it)");
  process.exit(2);
}

// playwright-core lives under target/, not next to this file.
const require = createRequire(path.join(installDir, "package.json"));
const { chromium } = require("playwright-core");

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Waits until the page's log holds a line that reads exactly `line` (a string or a RegExp). */
async function expectLine(page, who, line) {
  const pattern = line instanceof RegExp ? line : new RegExp(`^${escape(line)}$`);
  const item = page.locator("#log li").filter({ hasText: pattern });
  try {
    await item.first().waitFor({ state: "visible", timeout: TIMEOUT });
  } catch {
    const seen = await page.locator("#log li").allTextContents();
    throw new Error(
      `${who}'s page never showed ${line instanceof RegExp ? line : JSON.stringify(line)}; it shows:\n` +
        seen.map((l) => `    ${l}`).join("\n"),
    );
  }
}

async function joinAs(context, name) {
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error") console.error(`[${name} console] ${msg.text()}`);
  });
  page.on("pageerror", (error) => console.error(`[${name} page error] ${error.message}`));
  // The page joins on load; ?name= picks the name (the Rename field and
  // `/name NEW` change it later).
  await page.goto(`${baseUrl}?name=${encodeURIComponent(name)}`, { timeout: TIMEOUT });
  await expectLine(page, name, `* welcome, ${name} (${name === "alice" ? 1 : 2} online)`);
  await page.locator("#message").waitFor({ state: "visible", timeout: TIMEOUT });
  return page;
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.press("#message", "Enter");
}

let browser;
let step = "launch chromium";
try {
  // launch() gives the browser a fresh temporary profile (user-data-dir)
  // and deletes it on close; each context below is a separate session.
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const aliceContext = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const bobContext = await browser.newContext({ viewport: { width: 800, height: 600 } });

  step = "alice joins";
  const alice = await joinAs(aliceContext, "alice");

  step = "bob joins and alice sees the announcement";
  const bob = await joinAs(bobContext, "bob");
  await expectLine(alice, "alice", "* bob joined");

  step = "alice's message reaches bob and alice";
  await say(alice, "hello from alice");
  await expectLine(bob, "bob", "alice: hello from alice");
  await expectLine(alice, "alice", "alice: hello from alice");

  step = "chromium negotiated permessage-deflate and long lines go through compressed";
  const extensions = await alice.evaluate(() => socket.extensions);
  if (!extensions.includes("permessage-deflate")) {
    throw new Error(`expected permessage-deflate to be negotiated, got ${JSON.stringify(extensions)}`);
  }
  const long = "a long line that the server compresses ".repeat(8).trim();
  await say(alice, long);
  await expectLine(bob, "bob", `alice: ${long}`);

  step = "markup in a message is shown as text";
  await say(bob, "<b>not bold</b> & fine");
  await expectLine(alice, "alice", "bob: <b>not bold</b> & fine");
  if ((await alice.locator("#log li b", { hasText: "not bold" }).count()) !== 0) {
    throw new Error("a message's markup was rendered as HTML");
  }

  step = "bob renames himself with /name";
  await say(bob, "/name carol");
  await expectLine(bob, "bob", "* you are now carol");
  await expectLine(alice, "alice", "* bob is now carol");
  await say(bob, "hi, I am carol now");
  await expectLine(alice, "alice", "carol: hi, I am carol now");

  step = "carol's connection drops: her page reconnects and shows what was said meanwhile, once";
  // Closed under the page's feet, as a network drop or a server restart would.
  await bob.evaluate(() => socket.close());
  await expectLine(bob, "bob", /^\* disconnected \(\d+\); reconnecting in 1 s$/);
  await say(alice, "said while carol was away");
  await say(alice, "and this too");
  await expectLine(alice, "alice", "alice: and this too");
  await expectLine(bob, "bob", /^\* welcome, carol \(\d+ online\)$/);
  await expectLine(bob, "bob", "alice: and this too");
  for (const line of ["alice: said while carol was away", "alice: and this too", "alice: hello from alice"]) {
    const shown = (await bob.locator("#log li").allTextContents()).filter((text) => text === line).length;
    if (shown !== 1) throw new Error(`carol's page shows ${JSON.stringify(line)} ${shown} times, not once`);
  }
  await say(alice, "live again");
  await expectLine(bob, "bob", "alice: live again");

  step = "carol leaves and alice sees it";
  await bobContext.close();
  await expectLine(alice, "alice", "* carol left");

  step = "a guest types at once into the first input, then renames with the form";
  const guestContext = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const guest = await guestContext.newPage();
  await guest.goto(baseUrl, { timeout: TIMEOUT });
  // Typed before the connection is open: the page sends it once it is.
  await guest.locator("input").first().fill("typed straight away");
  await guest.locator("input").first().press("Enter");
  await expectLine(alice, "alice", /^guest-\d+: typed straight away$/);
  await guest.fill("#name", "dave");
  await guest.click("#join");
  await expectLine(alice, "alice", /^\* guest-\d+ is now dave$/);
  await guestContext.close();

  step = "screenshot";
  await alice.screenshot({ path: screenshot });
  console.log(`chat.test.mjs: all checks passed; screenshot: ${screenshot}`);
} catch (error) {
  console.error(`chat.test.mjs: FAILED at step "${step}": ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser?.close().catch(() => {});
}
