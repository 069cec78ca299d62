// One engine, one build: loads the default model with the SDK, streams a greedy reply and
// prints {engine, memory64, wasm, text, tokens} as JSON. Run by tests/test_wasm32_engines.py:
//   node test/engine_check.mjs MODEL [auto|wasm32|wasm64|default]    (any Node, e.g. Debian's 20;
//        default: no wasm option, so $REALM_WASM decides)
//   node test/engine_check.mjs --firefox URL [auto|wasm32|wasm64]    (Firefox over WebDriver BiDi,
//        puppeteer-core, Debian's firefox-esr; URL serves the repository as `realm web` does)
//   node test/engine_check.mjs --firefox-chat URL                     (the chat page, host/index.html, in
//        Firefox: load the default model, ask, print {status, device, finish, reply, arch})
import { PAGE_CHECK } from './engine_page.mjs';

const args = process.argv.slice(2);
// a page in Firefox (puppeteer-core over WebDriver BiDi): fn(page) -> result, printed with the page's errors
async function inFirefox(url, fn) {
  const puppeteer = (await import('puppeteer-core')).default;
  const browser = await puppeteer.launch({
    browser: 'firefox', executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr', headless: true,
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url);
    console.log(JSON.stringify({ ...(await fn(page)), errors }));
  } finally {
    await browser.close();
  }
}

if (args[0] === '--firefox-chat') {
  await inFirefox(args[1], async (page) => {
    await page.waitForFunction(() => !!(window.chatApp && window.chatApp.sdk), { timeout: 60000 });
    await page.click('#load');
    await page.waitForFunction(() => !document.querySelector('#send').disabled ||
      document.querySelector('#status').classList.contains('error'), { timeout: 180000 });
    await page.evaluate(() => {
      document.querySelector('#temperature').value = '0';
      document.querySelector('#max-tokens').value = '12';
    });
    await page.type('#input', 'What is the capital of France?');
    await page.click('#send');
    await page.waitForFunction(() => !!document.querySelector('.msg.assistant')?.dataset.finish, { timeout: 180000 });
    return page.evaluate(() => {
      const e = document.querySelector('.msg.assistant');
      return {
        status: document.querySelector('#status').textContent, device: document.querySelector('#stat-device').textContent,
        finish: e.dataset.finish, reply: e.firstChild.data, arch: window.chatApp.realm.wasm.arch,
      };
    });
  });
} else if (args[0] === '--firefox') {
  await inFirefox(`${args[1]}/js-sdk/test/browser/index.html`, (page) =>
    page.evaluate(`(${PAGE_CHECK})('/models/default.gguf', ${JSON.stringify(args[2] || 'auto')})`));
} else {
  const { Realm, memory64Supported } = await import('../src/index.js');
  globalThis.realm = { Realm, memory64Supported };
  const run = new Function(`return (${PAGE_CHECK})`)();
  const out = await run(args[0], args[1] && args[1] !== 'default' ? args[1] : undefined, `node ${process.version}`);
  console.log(JSON.stringify(out));
}
