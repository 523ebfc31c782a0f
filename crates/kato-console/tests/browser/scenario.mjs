// The console, start to finish, through its pages only, in Debian's chromium (playwright-core
// drives it; no browser is downloaded). Every page visited is checked with axe-core (no serious or
// critical violation) and at 390 px wide (nothing wider than the screen).
//
// Run by `cargo test -p kato --test console_browser`, which starts `kato serve` and gives:
//   KATO_URL      the server, e.g. http://127.0.0.1:7070
//   KATO_TOKEN    the admin token
//   KATO_REPO     a git repo with a Dockerfile: a plug-in that follows its discovery document,
//                 logs `greeting <value> revision <n>` and acks each revision it applied
//   KATO_IMAGE    an image the component runs (with a shell)
//   KATO_SHOTS    where screenshots go (docs/console to refresh the docs)
//   CHROMIUM      the browser (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const env = (k, d) => process.env[k] ?? d ?? (() => { throw new Error(`${k} is not set`); })();
const URL_ = env("KATO_URL"), TOKEN = env("KATO_TOKEN"), REPO = env("KATO_REPO"), IMAGE = env("KATO_IMAGE");
const SHOTS = env("KATO_SHOTS"), TEAM = "shop";
mkdirSync(SHOTS, { recursive: true });

const SHORT = 15_000, BUILD = 240_000, DEPLOY = 180_000;
const problems = [];
const checked = new Set();

function step(name) { console.log(`--- ${name}`); }

/// axe-core on the page as it is now, and the 390 px check; each page once per path.
async function audit(page, what) {
  const path = new URL(page.url()).pathname;
  if (checked.has(`${path}#${what}`)) return;
  checked.add(`${path}#${what}`);
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () =>
    await window.axe.run(document, { resultTypes: ["violations"] }));
  for (const v of result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")) {
    problems.push(`axe ${v.impact} on ${path} (${what}): ${v.id} — ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
  }
  const size = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 391) problems.push(`${path} (${what}) is ${wide} px wide at 390 px`);
  await page.setViewportSize(size);
}

async function shot(page, name, narrow = false) {
  if (narrow) await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  if (narrow) await page.setViewportSize({ width: 1280, height: 900 });
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
context.setDefaultTimeout(SHORT);
const page = await context.newPage();
page.on("pageerror", (e) => problems.push(`script error on ${page.url()}: ${e.message}`));
// A refused form answers its page with 422, which the browser logs as a failed load: expected.
page.on("console", (m) => {
  if (m.type() === "error" && !/status of 422/.test(m.text())) problems.push(`console error on ${page.url()}: ${m.text()}`);
});

try {
  // 1. Sign in, with the keyboard only.
  step("sign in");
  await page.goto(URL_);
  await page.waitForURL(/\/login/);
  await audit(page, "sign in");
  await shot(page, "sign-in");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.id);
  if (focused !== "token") await page.getByLabel("Token", { exact: true }).focus();
  await page.keyboard.type(TOKEN);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/teams$/);
  await audit(page, "teams");
  await page.getByLabel("Name", { exact: true }).fill(TEAM);
  await page.getByRole("button", { name: "Create team" }).click();
  await page.waitForURL(new RegExp(`/teams/${TEAM}/plugins`));

  // 2. A plug-in from a Dockerfile repo, with an env group and a discovery group.
  step("create a plug-in from a Dockerfile repo");
  await audit(page, "plug-in list, empty");
  await page.getByRole("link", { name: /New plug-in|Create a plug-in/ }).click();
  await audit(page, "new plug-in");
  await page.getByLabel("Name", { exact: true }).fill("greeter");
  await page.getByLabel("Kind", { exact: true }).selectOption("general");
  await page.getByLabel("Dockerfile in a git repo", { exact: true }).check();
  await page.getByLabel("Git repo", { exact: true }).fill(REPO);
  await page.getByLabel("Minimum memory (MiB)", { exact: true }).fill("64");
  await shot(page, "plugin-new");
  await page.getByRole("button", { name: "Create plug-in" }).click();
  await page.waitForURL(new RegExp(`/teams/${TEAM}/plugins/greeter$`));

  step("config groups");
  // A new group comes with one empty item; fields are found by their label within the group.
  const group = (i) => page.locator("fieldset").filter({ has: page.locator(`[name="config_groups[${i}].name"]`) }).last();
  await page.getByRole("button", { name: "Add config group" }).click();
  await group(0).getByLabel("Group name", { exact: true }).fill("settings");
  await group(0).getByLabel("Meta type", { exact: true }).selectOption("none");
  await group(0).getByLabel("Injection type", { exact: true }).selectOption("env");
  await group(0).getByLabel("Item name", { exact: true }).fill("PREFIX");
  await group(0).getByLabel("Default", { exact: true }).fill("says");
  await page.getByRole("button", { name: "Add config group" }).click();
  await group(1).getByLabel("Group name", { exact: true }).fill("greeting");
  await group(1).getByLabel("Meta type", { exact: true }).selectOption("component-port");
  await group(1).getByLabel("Injection type", { exact: true }).selectOption("discovery");
  await group(1).getByLabel("Item name", { exact: true }).fill("GREETING");
  await group(1).getByLabel("Default", { exact: true }).fill("hello");
  await page.getByRole("button", { name: "Save draft" }).click();
  await page.waitForLoadState();
  if ((await page.getByLabel("Item name", { exact: true }).count()) !== 2) throw new Error("the draft's two items were not saved");
  await audit(page, "plug-in draft");
  await shot(page, "plugin-draft");

  // 3. Build, and watch the log arrive line by line.
  step("build");
  await page.getByRole("button", { name: "Build version" }).click();
  await page.waitForURL(/\/versions\/1$/);
  await page.evaluate(() => {
    window.__lineTimes = [];
    const lines = document.querySelector("[data-log] [data-lines]");
    new MutationObserver((records) => {
      for (const r of records) for (const _ of r.addedNodes) window.__lineTimes.push(performance.now());
    }).observe(lines, { childList: true });
  });
  const status = page.locator("[data-log] [data-status]");
  await status.filter({ hasText: /^Build (succeeded|failed|cancelled)/ }).waitFor({ timeout: BUILD });
  const outcome = await status.textContent();
  if (!outcome.startsWith("Build succeeded")) {
    throw new Error(`the build did not succeed: ${outcome}\n${await page.locator("[data-log] [data-lines]").textContent()}`);
  }
  const times = await page.evaluate(() => window.__lineTimes);
  if (times.length < 2 || times[times.length - 1] - times[0] < 50) {
    problems.push(`the build log did not arrive line by line: ${times.length} lines within ${times.length ? times[times.length - 1] - times[0] : 0} ms`);
  }
  await audit(page, "version, built");
  await shot(page, "build-log");
  await page.goto(`${URL_}/teams/${TEAM}/plugins/greeter`);
  await page.getByText("is fixed").first().waitFor();
  await page.goto(`${URL_}/teams/${TEAM}/plugins`);
  await page.getByRole("link", { name: "greeter" }).waitFor();
  await audit(page, "plug-in list");
  await shot(page, "plugins");

  // 4. A component with the plug-in installed and its values set.
  step("create a component and install the plug-in");
  await page.getByRole("link", { name: "Components" }).click();
  await page.getByRole("link", { name: /New component|Create a component/ }).click();
  await audit(page, "new component");
  await page.getByLabel("Name", { exact: true }).fill("web");
  await page.getByLabel("Image", { exact: true }).fill(IMAGE);
  await page.getByLabel("Command", { exact: true }).fill("/bin/sh\n-c\ntrap 'exit 0' TERM; while true; do echo web is up; sleep 2 & wait $!; done");
  await page.getByLabel("Ports", { exact: true }).fill("8080 http");
  await page.getByLabel("Memory (MiB)", { exact: true }).fill("64");
  await page.getByRole("button", { name: "Create component" }).click();
  await page.waitForURL(new RegExp(`/teams/${TEAM}/components/web$`));
  await audit(page, "component overview");
  await page.getByRole("link", { name: "Plug-ins" }).last().click();
  await page.waitForURL(/\/components\/web\/plugins$/);
  const versions = page.getByLabel("Plug-in version", { exact: true });
  await versions.selectOption(await versions.locator("option", { hasText: "greeter" }).first().getAttribute("value"));
  await page.getByRole("button", { name: "Install" }).click();
  await page.waitForURL(/\/components\/web\/plugins/);
  const greeting = page.locator('input[name$=".GREETING"]').first();
  await greeting.fill("hello from the console");
  await page.locator("[data-effect-notice]").first().filter({ hasText: "applies live" }).waitFor();
  await page.getByRole("button", { name: "Save" }).first().click();
  await page.waitForLoadState();
  await audit(page, "component plug-ins");

  // 5. Deploy on podman; the plug-in runs, and its log lines reach the viewer.
  step("deploy");
  await page.goto(`${URL_}/teams/${TEAM}/components/web`);
  await page.getByRole("button", { name: "Deploy" }).click();
  await page.waitForLoadState();
  await page.goto(`${URL_}/teams/${TEAM}/components/web/status`);
  const deadline = Date.now() + DEPLOY;
  while (!(await page.locator("tr", { hasText: "plugin-greeter" }).filter({ hasText: "running" }).count())) {
    if (Date.now() > deadline) throw new Error(`the plug-in's container never ran:\n${await page.locator("main").textContent()}`);
    await page.waitForTimeout(1000);
    await page.reload();
  }
  await page.getByLabel("Container", { exact: true }).selectOption("plugin-greeter");
  await page.getByRole("button", { name: "Show log" }).click();
  await page.waitForURL(/container=plugin-greeter/);
  await page.locator("[data-log] [data-lines]").filter({ hasText: "greeting hello from the console" }).waitFor({ timeout: DEPLOY });
  await audit(page, "status and logs");
  await shot(page, "status-and-logs");
  await shot(page, "status-and-logs-narrow", true);
  await page.getByLabel("Search the log", { exact: true }).fill("revision");
  await page.getByRole("button", { name: "Pause" }).click();
  await page.getByRole("button", { name: "Resume" }).click();
  const download = page.waitForEvent("download");
  await page.getByRole("button", { name: "Download" }).click();
  if (!(await download).suggestedFilename()) problems.push("the log download has no file name");

  // 6. A discovery value changed in one tab shows its revision and the pod's ack in another,
  // which is not reloaded.
  step("live discovery change");
  const watcher = await context.newPage();
  await watcher.goto(`${URL_}/teams/${TEAM}/components/web/plugins`);
  await watcher.evaluate(() => { window.__notReloaded = true; });
  const live = watcher.locator("[data-live]").first();
  await live.filter({ hasText: "applied" }).waitFor({ timeout: DEPLOY });
  const before = await live.textContent();
  await page.goto(`${URL_}/teams/${TEAM}/components/web/plugins`);
  await page.locator('input[name$=".GREETING"]').first().fill("bonjour");
  await page.getByRole("button", { name: "Save" }).first().click();
  await page.waitForLoadState();
  await watcher.waitForFunction((old) => {
    const box = document.querySelector("[data-live]");
    return box && box.textContent !== old && /applied/.test(box.textContent);
  }, before, { timeout: 60_000 });
  await watcher.locator("[data-live]").first().filter({ hasText: "greeting=bonjour" }).waitFor({ timeout: 60_000 });
  if (!(await watcher.evaluate(() => window.__notReloaded === true))) problems.push("the watching tab was reloaded");
  await shot(watcher, "component-plugins");
  await watcher.close();

  // 7. Disabled, the plug-in leaves the pod.
  step("disable");
  await page.getByLabel("Enabled", { exact: true }).first().uncheck();
  await page.locator("[data-effect-notice]").first().filter({ hasText: "restarts the pod" }).waitFor();
  await page.getByRole("button", { name: "Save" }).first().click();
  await page.waitForLoadState();
  await page.goto(`${URL_}/teams/${TEAM}/components/web/status`);
  const gone = Date.now() + DEPLOY;
  while ((await page.locator("tr", { hasText: "plugin-greeter" }).count()) > 0
    || !(await page.locator("tr", { hasText: "running" }).count())) {
    if (Date.now() > gone) throw new Error(`the plug-in did not leave the pod:\n${await page.locator("main").textContent()}`);
    await page.waitForTimeout(1000);
    await page.reload();
  }

  // Manifests: the rendered YAML, with copy.
  step("manifests");
  await page.goto(`${URL_}/teams/${TEAM}/components/web/manifests`);
  await page.locator("#manifest").filter({ hasText: "kind: Deployment" }).waitFor();
  await audit(page, "manifests");
  await shot(page, "manifests");

  // The pages the scenario does not pass through on its way: each checked the same way (the
  // delete pages are the confirmations, left without confirming).
  step("other pages");
  for (const [path, what] of [
    [`/teams`, "teams"],
    [`/teams/${TEAM}/settings`, "team settings"],
    [`/teams/${TEAM}/components`, "component list"],
    [`/teams/${TEAM}/components/new`, "new component"],
    [`/teams/${TEAM}/plugins/new`, "new plug-in"],
    [`/teams/${TEAM}/components/web/delete`, "confirm deleting a component"],
    [`/teams/${TEAM}/plugins/greeter/delete`, "confirm deleting a plug-in"],
  ]) {
    await page.goto(`${URL_}${path}`);
    await page.locator("main").waitFor();
    await audit(page, what);
  }

  // 8. A rule broken as the user types shows next to its field; saving keeps the input.
  step("validation");
  await page.goto(`${URL_}/teams/${TEAM}/plugins/greeter`);
  const item = page.getByLabel("Item name", { exact: true }).nth(0);
  await item.fill("NOT AN ENV NAME");
  const describedBy = await item.getAttribute("aria-describedby");
  const slot = page.locator(`[data-error-for="${await item.getAttribute("name")}"]`);
  await slot.filter({ hasText: /./ }).waitFor();
  if ((await item.getAttribute("aria-invalid")) !== "true") problems.push("the invalid item name is not marked aria-invalid");
  if (!describedBy || !(await slot.getAttribute("id")) || !describedBy.includes(await slot.getAttribute("id"))) {
    problems.push("the item name's error is not tied to it with aria-describedby");
  }
  await page.getByRole("button", { name: "Save draft" }).click();
  await page.waitForLoadState();
  if ((await page.getByLabel("Item name", { exact: true }).nth(0).inputValue()) !== "NOT AN ENV NAME") problems.push("the refused draft lost what was typed");
  await page.locator(`[data-error-for="${await item.getAttribute("name")}"]`).filter({ hasText: /./ }).waitFor();
  await audit(page, "refused draft");
  await shot(page, "validation");
} catch (e) {
  await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
  console.error(`FAILED at ${page.url()}: ${e.stack || e}`);
  await browser.close();
  process.exit(1);
}

await browser.close();
if (problems.length) {
  console.error(`${problems.length} problems:\n${problems.join("\n")}`);
  process.exit(1);
}
console.log(`the scenario passed: ${checked.size} pages checked with axe-core and at 390 px`);
