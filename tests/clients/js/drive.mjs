// Drives headless Chromium through the pages' flows and prints what each page observed
// as one JSON object. Argument: a JSON object {chromium, endpoints: {api, ws}, runs:
// [{name, url, flow}]}. Run by tests/clients/test_browser.py.
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const browser = await chromium.launch({ executablePath: config.chromium, headless: true });
const results = {};
try {
  for (const run of config.runs) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const console = [];
    page.on("console", (message) => console.push(`${message.type()}: ${message.text()}`));
    let observed;
    try {
      await page.goto(run.url);
      await page.waitForFunction(() => window.flows !== undefined);
      observed = await page.evaluate(
        ({ flow, endpoints }) => window.flows[flow](endpoints),
        { flow: run.flow, endpoints: config.endpoints },
      );
      observed.origin = await page.evaluate(() => self.origin);
      observed.cookies = await context.cookies(config.endpoints.api);
    } catch (error) {
      // One page's failure is reported with that page; the others still run.
      observed = { failure: String(error) };
    }
    observed.console = console;
    results[run.name] = observed;
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results));
