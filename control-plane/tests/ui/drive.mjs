// Drives Debian's chromium (playwright-core) through /ui/approvals as the
// operator, with the operator's client certificate. Prints one JSON object
// with what it saw; the Rust test (control-plane/tests/it/web.rs) asserts.
//
//   node drive.mjs CONFIG.json
//   CONFIG: {base, cert, key, approve_id, deny_id, own_id, shots}
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = {};
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    clientCertificates: [{ origin: cfg.base, certPath: cfg.cert, keyPath: cfg.key }],
    viewport: { width: 1280, height: 720 },
  });
  const page = await context.newPage();
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/.test(m.text())) violations.push(m.text()); });

  // The list shows every held request.
  let resp = await page.goto(`${cfg.base}/ui/approvals`);
  out.list_status = resp.status();
  out.list_csp = resp.headers()['content-security-policy'] || '';
  out.list_ids = await page.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.id));
  out.list_text = await page.locator('main').innerText();
  await page.screenshot({ path: `${cfg.shots}/approvals-list.png`, fullPage: true });

  // Deny one, with a reason; keep its form token for the forged-POST checks.
  await page.goto(`${cfg.base}/ui/approvals/${cfg.deny_id}`);
  const token = await page.inputValue('input[name=csrf]');
  await page.fill('#reason', 'not during the freeze');
  await page.click('#deny');
  out.denied_text = await page.locator('dl').innerText();

  // Approve another; the detail view after the decision says who and how.
  await page.goto(`${cfg.base}/ui/approvals/${cfg.approve_id}`);
  await page.screenshot({ path: `${cfg.shots}/approval-detail.png`, fullPage: true });
  await page.fill('#reason', 'checked the ticket');
  await page.click('#approve');
  out.approved_text = await page.locator('dl').innerText();

  // The operator's own request: no buttons.
  await page.goto(`${cfg.base}/ui/approvals/${cfg.own_id}`);
  out.own_buttons = await page.locator('#approve, #deny').count();
  out.own_text = await page.locator('main').innerText();

  // Forged POSTs: no token, a wrong token, then the right token on the
  // operator's own request (refused server-side like the CLI).
  const post = async (csrf) => {
    const form = { decision: 'approve', reason: 'forged' };
    if (csrf !== null) form.csrf = csrf;
    const r = await context.request.post(`${cfg.base}/ui/approvals/${cfg.own_id}`,
      { form, maxRedirects: 0 });
    return { status: r.status(), text: await r.text() };
  };
  out.forged_missing = await post(null);
  out.forged_wrong = await post('0'.repeat(64));
  out.own_direct = await post(token);
  out.csp_violations = violations;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
