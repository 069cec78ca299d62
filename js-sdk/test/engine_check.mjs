// One engine, one build: loads the default model with the SDK, streams a greedy reply and
// prints {engine, memory64, wasm, text, tokens} as JSON. Run by tests/test_wasm32_engines.py:
//   node test/engine_check.mjs MODEL [auto|wasm32|wasm64|default]    (any Node, e.g. Debian's 20;
//        default: no wasm option, so $REALM_WASM decides)
//   node test/engine_check.mjs --firefox URL [auto|wasm32|wasm64]    (Firefox over WebDriver BiDi,
//        puppeteer-core, Debian's firefox-esr; URL serves the repository as `realm web` does)
import { PAGE_CHECK } from './engine_page.mjs';

const args = process.argv.slice(2);
if (args[0] === '--firefox') {
  const puppeteer = (await import('puppeteer-core')).default;
  const browser = await puppeteer.launch({
    browser: 'firefox', executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr', headless: true,
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${args[1]}/js-sdk/test/browser/index.html`);
    const out = await page.evaluate(`(${PAGE_CHECK})('/models/default.gguf', ${JSON.stringify(args[2] || 'auto')})`);
    console.log(JSON.stringify({ ...out, errors }));
  } finally {
    await browser.close();
  }
} else {
  const { Realm, memory64Supported } = await import('../src/index.js');
  globalThis.realm = { Realm, memory64Supported };
  const run = new Function(`return (${PAGE_CHECK})`)();
  const out = await run(args[0], args[1] && args[1] !== 'default' ? args[1] : undefined, `node ${process.version}`);
  console.log(JSON.stringify(out));
}
