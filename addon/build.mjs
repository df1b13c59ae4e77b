#!/usr/bin/env node
// Writes the deployable add-on: the manifest template (appsscript.json) with this deployment's
// backend URL and logo URL filled in, plus the .gs files, into one directory to push as the
// Apps Script project (addon/README.md, "Build and deploy").
//
//   node addon/build.mjs --api-url https://PUBLIC_DOMAIN --logo-url https://PUBLIC_DOMAIN/static/logo.png
//
// Each value may come from the environment instead (CONFSYNC_API_URL, CONFSYNC_ADDON_LOGO_URL);
// a flag wins. --out DIR (default addon/dist, git-ignored) is where the project is written.
// It refuses, writing nothing, when a value is not a plain https URL on a real domain, or when
// any placeholder is left in the manifest. No dependencies: node's standard library only.
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ADDON_DIR = dirname(fileURLToPath(import.meta.url));
export const TEMPLATE = 'appsscript.json';
export const CONFERENCES_PATH = '/v1/conferences'; // CreateConf.gs posts here, and only here

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]*)\s*\}\}/g;
const MAX_API_URL = 1000; // CreateConf.gs adds paths; ConferenceError URLs stop at 1800
const MAX_LOGO_URL = 2000;
// Domains that are never a deployment's (RFC 2606, RFC 6761) and the quickstart's samples.
const PLACEHOLDER_HOSTS = [/^localhost$/, /\.localhost$/, /(^|\.)example\.(com|net|org)$/, /\.example$/,
  /\.test$/, /\.invalid$/, /\.local$/, /\.internal$/];

export class BuildError extends Error {}

/** The backend's base URL, checked: https, a real domain, no credentials, query, fragment or
 * dot segments; returned without a trailing slash. */
export function checkApiUrl(raw) {
  const url = checkHttpsUrl(raw, 'the backend URL (--api-url / CONFSYNC_API_URL)', MAX_API_URL, false);
  return (url.origin + url.pathname).replace(/\/+$/, '');
}

/** The logo's URL, checked like the backend's, and it must name a file (a non-empty path). */
export function checkLogoUrl(raw) {
  const url = checkHttpsUrl(raw, 'the logo URL (--logo-url / CONFSYNC_ADDON_LOGO_URL)', MAX_LOGO_URL, true);
  if (url.pathname === '/' || url.pathname.endsWith('/')) {
    throw new BuildError(`the logo URL must name an image, not a directory: ${raw}`);
  }
  return url.href;
}

function checkHttpsUrl(raw, name, maxLength, allowQuery) {
  if (typeof raw !== 'string' || raw.trim() === '') throw new BuildError(`${name} is required`);
  const text = raw.trim();
  const refuse = (why) => new BuildError(`${name} ${why}: ${JSON.stringify(text)}`);
  if (text.length > maxLength) throw refuse(`is longer than ${maxLength} characters`);
  if (/[\s\x00-\x1f\x7f\\]/.test(text)) throw refuse('has whitespace, control characters or backslashes');
  if (/\{\{|\}\}|<|>|\$\{/.test(text)) throw refuse('is still a placeholder');
  if (!/^https:\/\//.test(text)) throw refuse('must start with https://');
  const afterScheme = text.slice('https://'.length);
  const slash = afterScheme.search(/[/?#]/);
  const authority = slash < 0 ? afterScheme : afterScheme.slice(0, slash);
  const rest = slash < 0 ? '' : afterScheme.slice(slash);
  const path = rest.split(/[?#]/)[0];
  if (authority.includes('@')) throw refuse('must not carry credentials');
  if (/(^|\/)\.{1,2}(\/|$)/.test(path) || /%(2e|2f|5c)/i.test(path)) {
    throw refuse('must not have dot segments or encoded dots and slashes in its path (no path traversal)');
  }
  if (text.includes('#')) throw refuse('must not have a fragment');
  if (!allowQuery && text.includes('?')) throw refuse('must not have a query');
  let url;
  try {
    url = new URL(text);
  } catch {
    throw refuse('is not a URL');
  }
  if (url.protocol !== 'https:' || url.username || url.password) throw refuse('must be a plain https URL');
  const host = url.hostname;
  if (/^\[|^[0-9.]+$/.test(host)) throw refuse('must name a domain, not an IP address');
  if (!host.includes('.') || !host.split('.').every((label) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(label))) {
    throw refuse('must name a full domain');
  }
  if (PLACEHOLDER_HOSTS.some((pattern) => pattern.test(host))) {
    throw refuse('names a placeholder domain, not this deployment\'s');
  }
  return url;
}

/** The deployable manifest: the template's {{NAME}} placeholders replaced by values (a map of
 * NAME to text), then checked for leftovers and placeholder URLs. */
export function renderManifest(templateText, values) {
  const missing = new Set();
  const filled = templateText.replace(PLACEHOLDER, (whole, key) => {
    if (!Object.prototype.hasOwnProperty.call(values, key)) {
      missing.add(key || '(empty)');
      return whole;
    }
    return JSON.stringify(values[key]).slice(1, -1); // as JSON string content
  });
  if (missing.size > 0) {
    throw new BuildError(`the template has placeholders this build does not fill: ${[...missing].join(', ')}`);
  }
  let manifest;
  try {
    manifest = JSON.parse(filled);
  } catch (err) {
    throw new BuildError(`the manifest is not JSON once filled in: ${err.message}`);
  }
  checkDeployable(manifest);
  return manifest;
}

/** Refuses a manifest that still has placeholders in what comes from the deployment. */
export function checkDeployable(manifest) {
  const whitelist = manifest.urlFetchWhitelist;
  if (!Array.isArray(whitelist) || whitelist.length === 0) {
    throw new BuildError('the manifest has no urlFetchWhitelist: every create would fail');
  }
  whitelist.forEach((prefix) => checkHttpsUrl(prefix, 'urlFetchWhitelist entry', MAX_API_URL + 100, false));
  const logos = [manifest.addOns?.common?.logoUrl,
    ...(manifest.addOns?.calendar?.conferenceSolution ?? []).map((solution) => solution.logoUrl)];
  logos.forEach((logo) => checkLogoUrl(logo));
  const leftover = JSON.stringify(manifest).match(PLACEHOLDER);
  if (leftover) throw new BuildError(`placeholders left in the manifest: ${leftover.join(', ')}`);
}

/** Reads flags (--api-url, --logo-url, --out; --name=value also works) over the environment. */
export function parseArgs(argv, env = {}) {
  const options = { apiUrl: env.CONFSYNC_API_URL, logoUrl: env.CONFSYNC_ADDON_LOGO_URL, out: undefined, help: false };
  const names = { '--api-url': 'apiUrl', '--logo-url': 'logoUrl', '--out': 'out' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      options.help = true;
      continue;
    }
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const key = names[flag];
    if (!key) throw new BuildError(`unknown argument: ${arg}`);
    const value = inline ?? argv[++i];
    if (value === undefined || value.startsWith('--')) throw new BuildError(`${flag} needs a value`);
    options[key] = value;
  }
  return options;
}

/** Builds the project into `out`; returns the manifest written and the files copied. */
export function build({ apiUrl, logoUrl, out, addonDir = ADDON_DIR }) {
  const api = checkApiUrl(apiUrl);
  const logo = checkLogoUrl(logoUrl);
  const source = resolve(addonDir);
  const target = resolve(out ?? join(source, 'dist'));
  if (target === source) throw new BuildError('--out must not be the add-on source directory (it holds the template)');
  const manifest = renderManifest(readFileSync(join(source, TEMPLATE), 'utf8'),
    { CONFSYNC_API_URL: api, CONFSYNC_ADDON_LOGO_URL: logo });
  const scripts = readdirSync(source).filter((name) => name.endsWith('.gs')).sort();
  mkdirSync(target, { recursive: true });
  for (const stale of readdirSync(target).filter((name) => name.endsWith('.gs'))) rmSync(join(target, stale));
  for (const name of scripts) copyFileSync(join(source, name), join(target, name));
  writeFileSync(join(target, TEMPLATE), `${JSON.stringify(manifest, null, 2)}\n`);
  return { manifest, files: [TEMPLATE, ...scripts], out: target };
}

const USAGE = `usage: node addon/build.mjs --api-url https://BACKEND --logo-url https://HOST/logo.png [--out DIR]

  --api-url   confsync's base URL, the same as the script property CONFSYNC_API_URL
              (env CONFSYNC_API_URL); it becomes the manifest's urlFetchWhitelist.
  --logo-url  the conference solution's logo, an https image URL (env CONFSYNC_ADDON_LOGO_URL).
  --out       where to write the Apps Script project (default addon/dist).
`;

function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2), process.env);
    if (options.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const { out, files, manifest } = build(options);
    process.stdout.write(`wrote ${files.join(', ')} to ${out}\n` +
      `  urlFetchWhitelist: ${manifest.urlFetchWhitelist.join(', ')}\n` +
      `  logoUrl: ${manifest.addOns.common.logoUrl}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof BuildError)) throw err;
    process.stderr.write(`build.mjs: refused: ${err.message}\n\n${USAGE}`);
    return 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main();
}
