// The manifest template declares what the add-on uses, and only that: its functions exist, its
// scopes match the services the .gs code calls, and what comes from the deployment is a
// placeholder that addon/build.mjs fills in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import vm from 'node:vm';

const ADDON = new URL('../', import.meta.url);
const MANIFEST = JSON.parse(readFileSync(new URL('appsscript.json', ADDON), 'utf8'));
const SOURCES = readdirSync(ADDON).filter((name) => name.endsWith('.gs')).sort()
  .map((name) => readFileSync(new URL(name, ADDON), 'utf8'));
const CODE = SOURCES.join('\n').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ''); // calls, not comments

const SCOPE = 'https://www.googleapis.com/auth/';

function definedFunctions() {
  const context = {};
  vm.createContext(context);
  for (const source of SOURCES) vm.runInContext(source, context); // top level only defines
  return context;
}

test('the calendar section declares createSettingsUrlFunction, and the function exists', () => {
  const calendar = MANIFEST.addOns.calendar;
  assert.equal(calendar.createSettingsUrlFunction, 'createSettingsUrl');
  const defined = definedFunctions();
  assert.equal(typeof defined[calendar.createSettingsUrlFunction], 'function');
  for (const solution of calendar.conferenceSolution) {
    assert.equal(typeof defined[solution.onCreateFunction], 'function', solution.onCreateFunction);
  }
});

test('no event access is declared: the add-on has no event triggers, and onCreateFunction gets its ids', () => {
  const calendar = MANIFEST.addOns.calendar;
  // currentEventAccess only governs event triggers (eventOpenTrigger, eventUpdateTrigger, ...).
  assert.equal(calendar.eventOpenTrigger, undefined);
  assert.equal(calendar.eventUpdateTrigger, undefined);
  assert.equal(calendar.eventAttachmentTrigger, undefined);
  assert.equal(calendar.currentEventAccess, undefined);
  // Were it ever declared, it would need its scopes.
  const access = calendar.currentEventAccess ?? '';
  if (/READ/.test(access)) assert.ok(MANIFEST.oauthScopes.includes(`${SCOPE}calendar.addons.current.event.read`));
  if (/WRITE/.test(access)) assert.ok(MANIFEST.oauthScopes.includes(`${SCOPE}calendar.addons.current.event.write`));
  // What CreateConf.gs reads of Calendar's argument: the ids, nothing else.
  const read = new Set([...CODE.matchAll(/eventData\.(\w+)/g)].map((m) => m[1]));
  assert.deepEqual([...read].sort(), ['calendarId', 'eventId']);
});

test('each scope is used by the code, and each service the code calls has its scope', () => {
  const uses = {
    [`${SCOPE}calendar.addons.execute`]: MANIFEST.addOns.calendar !== undefined, // runs as a Calendar add-on
    [`${SCOPE}calendar.events.readonly`]: /Calendar\.Events\.get\(/.test(CODE), // the event, read only
    [`${SCOPE}script.external_request`]: /UrlFetchApp\.fetch\(/.test(CODE),
    openid: /ScriptApp\.getIdentityToken\(/.test(CODE), // the ID token...
    [`${SCOPE}userinfo.email`]: /ScriptApp\.getIdentityToken\(/.test(CODE) // ...with the user's email in it
  };
  assert.deepEqual([...MANIFEST.oauthScopes].sort(), Object.keys(uses).sort());
  for (const [scope, used] of Object.entries(uses)) assert.ok(used, `${scope} is declared but not used`);
  // Nothing wider is needed: the code never writes Calendar nor uses another Google service.
  assert.doesNotMatch(CODE, /Calendar\.Events\.(insert|update|patch|delete|move|quickAdd|watch)\(/);
  assert.doesNotMatch(CODE, /CalendarApp\.|GmailApp\.|DriveApp\.|Session\.getActiveUser|ScriptApp\.getOAuthToken/);
  // The Calendar advanced service the code calls is enabled.
  assert.deepEqual(MANIFEST.dependencies.enabledAdvancedServices.map((s) => s.userSymbol), ['Calendar']);
});

test('what comes from the deployment is a placeholder for addon/build.mjs, nothing looks deployable', () => {
  assert.deepEqual(MANIFEST.urlFetchWhitelist, ['{{CONFSYNC_API_URL}}/v1/conferences']);
  assert.match(CODE, /CONFERENCES_PATH = '\/v1\/conferences'/); // the one URL the code fetches
  assert.equal(MANIFEST.addOns.common.logoUrl, '{{CONFSYNC_ADDON_LOGO_URL}}');
  for (const solution of MANIFEST.addOns.calendar.conferenceSolution) {
    assert.equal(solution.logoUrl, '{{CONFSYNC_ADDON_LOGO_URL}}');
  }
});
