// addon/build.mjs: the deployable manifest gets this deployment's backend URL and logo, and
// nothing is written while a value is missing, unsafe, or still a placeholder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuildError, build, checkApiUrl, checkLogoUrl, parseArgs, renderManifest } from '../build.mjs';

const ADDON_DIR = fileURLToPath(new URL('../', import.meta.url));
const SCRIPT = join(ADDON_DIR, 'build.mjs');
const TEMPLATE_TEXT = readFileSync(join(ADDON_DIR, 'appsscript.json'), 'utf8');
const TEMPLATE = JSON.parse(TEMPLATE_TEXT);
const API = 'https://confsync.acmecorp.dev';
const LOGO = 'https://static.acmecorp.dev/confsync/logo.png';

function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'confsync-addon-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function cli(args, env = {}) {
  const clean = { ...process.env };
  delete clean.CONFSYNC_API_URL;
  delete clean.CONFSYNC_ADDON_LOGO_URL;
  return spawnSync(process.execPath, [SCRIPT, ...args], { env: { ...clean, ...env }, encoding: 'utf8' });
}

test('a good build writes the manifest with the whitelist and logo, and the .gs files', (t) => {
  const out = join(tempDir(t), 'dist');
  const run = cli(['--api-url', `${API}/`, '--logo-url', LOGO, '--out', out]);
  assert.equal(run.status, 0, run.stderr);
  const manifest = JSON.parse(readFileSync(join(out, 'appsscript.json'), 'utf8'));
  assert.deepEqual(manifest.urlFetchWhitelist, [`${API}/v1/conferences`]);
  assert.equal(manifest.addOns.common.logoUrl, LOGO);
  assert.deepEqual(manifest.addOns.calendar.conferenceSolution.map((s) => s.logoUrl), [LOGO]);
  // Everything else is the template's, unchanged.
  const expected = structuredClone(TEMPLATE);
  expected.urlFetchWhitelist = [`${API}/v1/conferences`];
  expected.addOns.common.logoUrl = LOGO;
  expected.addOns.calendar.conferenceSolution[0].logoUrl = LOGO;
  assert.deepEqual(manifest, expected);
  assert.doesNotMatch(JSON.stringify(manifest), /\{\{|\$\{|PUBLIC_DOMAIN|example\.com|mywebconf\.test/);
  const scripts = readdirSync(ADDON_DIR).filter((name) => name.endsWith('.gs')).sort();
  assert.deepEqual(readdirSync(out).sort(), ['appsscript.json', ...scripts].sort());
  for (const name of scripts) {
    assert.equal(readFileSync(join(out, name), 'utf8'), readFileSync(join(ADDON_DIR, name), 'utf8'));
  }
});

test('the values may come from the environment; a flag wins over it', (t) => {
  const out = join(tempDir(t), 'dist');
  const run = cli(['--out', out, '--api-url=https://api.acmecorp.dev/confsync'],
    { CONFSYNC_API_URL: 'https://ignored.acmecorp.dev', CONFSYNC_ADDON_LOGO_URL: LOGO });
  assert.equal(run.status, 0, run.stderr);
  const manifest = JSON.parse(readFileSync(join(out, 'appsscript.json'), 'utf8'));
  assert.deepEqual(manifest.urlFetchWhitelist, ['https://api.acmecorp.dev/confsync/v1/conferences']);
  assert.equal(manifest.addOns.common.logoUrl, LOGO);
});

test('a build without its values, or with placeholders, is refused and writes nothing', (t) => {
  const dir = tempDir(t);
  const cases = [
    [],
    ['--api-url', API],
    ['--logo-url', LOGO],
    ['--api-url', 'https://confsync.example.com/', '--logo-url', LOGO], // the old template's
    ['--api-url', API, '--logo-url', 'https://mywebconf.test/icon.png'], // the quickstart's
    ['--api-url', 'https://{{CONFSYNC_API_URL}}', '--logo-url', LOGO],
    ['--api-url', 'https://PUBLIC_DOMAIN', '--logo-url', LOGO],
    ['--api-url', API, '--logo-url', 'https://${LOGO_HOST}/logo.png'],
    ['--api-url', 'https://confsync.localhost', '--logo-url', LOGO]
  ];
  for (const [i, args] of cases.entries()) {
    const out = join(dir, `out${i}`);
    const run = cli([...args, '--out', out]);
    assert.equal(run.status, 2, `${args.join(' ')}: ${run.stdout}`);
    assert.match(run.stderr, /refused: /);
    assert.equal(existsSync(out), false, args.join(' '));
  }
  assert.match(cli(['--api-url', 'https://confsync.example.com', '--logo-url', LOGO]).stderr, /placeholder domain/);
  assert.match(cli(['--logo-url', LOGO]).stderr, /backend URL .* is required/);
});

test('a template with a placeholder the build does not know is refused', () => {
  const values = { CONFSYNC_API_URL: API, CONFSYNC_ADDON_LOGO_URL: LOGO };
  assert.throws(() => renderManifest(TEMPLATE_TEXT.replace('"Etc/UTC"', '"{{TIME_ZONE}}"'), values),
    /placeholders this build does not fill: TIME_ZONE/);
  assert.throws(() => renderManifest(TEMPLATE_TEXT.replace('{{CONFSYNC_ADDON_LOGO_URL}}', 'https://mywebconf.test/icon.png'), values),
    /placeholder domain/);
  const noWhitelist = JSON.parse(TEMPLATE_TEXT);
  delete noWhitelist.urlFetchWhitelist;
  assert.throws(() => renderManifest(JSON.stringify(noWhitelist), values), /no urlFetchWhitelist/);
  assert.deepEqual(renderManifest(TEMPLATE_TEXT, values).urlFetchWhitelist, [`${API}/v1/conferences`]);
});

test('backend and logo URLs must be plain https URLs on a real domain, without path traversal', () => {
  const bad = [
    'http://confsync.acmecorp.dev', 'ftp://confsync.acmecorp.dev', 'confsync.acmecorp.dev', '//confsync.acmecorp.dev',
    'https://user:pass@confsync.acmecorp.dev', 'https://confsync.acmecorp.dev?x=1', 'https://confsync.acmecorp.dev/#x',
    'https://confsync.acmecorp.dev/a/../b', 'https://confsync.acmecorp.dev/..', 'https://confsync.acmecorp.dev/./x',
    'https://confsync.acmecorp.dev/%2e%2e/x', 'https://confsync.acmecorp.dev/a%2Fb', 'https://confsync.acmecorp.dev/a\\b',
    'https://confsync.acmecorp.dev/a b', 'https://10.0.0.1', 'https://[::1]', 'https://confsync', 'https://localhost',
    'https://confsync.example.org', 'https://confsync.internal', `https://confsync.acmecorp.dev/${'a'.repeat(1000)}`, '', '   '
  ];
  for (const url of bad) assert.throws(() => checkApiUrl(url), BuildError, url);
  assert.equal(checkApiUrl('https://Confsync.AcmeCorp.dev/'), 'https://confsync.acmecorp.dev');
  assert.equal(checkApiUrl('https://api.acmecorp.dev:8443/confsync/'), 'https://api.acmecorp.dev:8443/confsync');
  for (const url of [...bad.filter((u) => !u.includes('?') && u.length < 1000), 'https://static.acmecorp.dev/', 'https://static.acmecorp.dev',
    'https://static.acmecorp.dev/img/']) {
    assert.throws(() => checkLogoUrl(url), BuildError, url);
  }
  assert.equal(checkLogoUrl('https://static.acmecorp.dev/logo.png?v=2'), 'https://static.acmecorp.dev/logo.png?v=2');
});

test('the output directory is never the source directory', () => {
  assert.throws(() => build({ apiUrl: API, logoUrl: LOGO, out: ADDON_DIR }), /must not be the add-on source directory/);
});

test('a rebuild removes .gs files the source no longer has', (t) => {
  const out = join(tempDir(t), 'dist');
  build({ apiUrl: API, logoUrl: LOGO, out });
  writeFileSync(join(out, 'Old.gs'), 'function old() {}');
  const { files } = build({ apiUrl: API, logoUrl: LOGO, out });
  assert.deepEqual(readdirSync(out).sort(), [...files].sort());
});

test('arguments: unknown flags and flags without values are refused', () => {
  assert.throws(() => parseArgs(['--api'], {}), /unknown argument/);
  assert.throws(() => parseArgs(['--api-url'], {}), /needs a value/);
  assert.throws(() => parseArgs(['--api-url', '--logo-url', LOGO], {}), /needs a value/);
  assert.deepEqual(parseArgs(['--logo-url', LOGO], { CONFSYNC_API_URL: API }),
    { apiUrl: API, logoUrl: LOGO, out: undefined, help: false });
  const help = cli(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /usage: node addon\/build\.mjs/);
});
