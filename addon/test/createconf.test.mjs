// The add-on, run under node's test runner with small stand-ins for the Apps Script globals.
// Each test asserts the exact ConferenceData (or ConferenceError) the add-on builds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import vm from 'node:vm';

// Every .gs file, in one global scope, as Apps Script loads a project.
const ADDON = new URL('../', import.meta.url);
const SOURCES = readdirSync(ADDON).filter((name) => name.endsWith('.gs')).sort()
  .map((name) => readFileSync(new URL(name, ADDON), 'utf8'));

function makeBuilder() {
  const built = { entryPoints: [], parameters: [] };
  const builder = {
    setConferenceId(id) { built.conferenceId = id; return builder; },
    addEntryPoint(point) { built.entryPoints.push({ ...point }); return builder; },
    addConferenceParameter(param) { built.parameters.push({ ...param }); return builder; },
    setNotes(notes) { built.notes = notes; return builder; },
    setError(error) { built.error = { ...error }; return builder; },
    build() { return built; }
  };
  return builder;
}

function fluent(kind) {
  const target = { kind };
  const self = new Proxy(target, {
    get(obj, name) {
      if (typeof name === 'string' && name.startsWith('set')) {
        return (value) => { obj[name[3].toLowerCase() + name.slice(4)] = value; return self; };
      }
      return obj[name];
    },
    ownKeys(obj) { return Reflect.ownKeys(obj); },
    getOwnPropertyDescriptor(obj, name) { return Reflect.getOwnPropertyDescriptor(obj, name); }
  });
  return self;
}

function sandbox({ status = 200, body = null, raw, throws = false, unreadable = false, eventMissing = false,
                  url = 'https://confsync.example.com', token = 'id-token-123', entryPoint = fluent } = {}) {
  const calls = [];
  const logs = [];
  const context = {
    console: { warn: (...parts) => logs.push(parts.join(' ')), log() {}, error: (...parts) => logs.push(parts.join(' ')) },
    Calendar: { Events: { get(cal, id) {
      if (eventMissing) throw new Error('Not Found');
      return { id, summary: 'Planning', start: { dateTime: '2026-12-01T10:00:00Z' } };
    } } },
    UrlFetchApp: { fetch(target, options) {
      calls.push({ target, options });
      if (throws) throw new Error('DNS error');
      return {
        getResponseCode: () => status,
        getContentText: () => {
          if (unreadable) throw new Error('Malformed input');
          return raw !== undefined ? raw : JSON.stringify(body);
        }
      };
    } },
    ScriptApp: { getIdentityToken: () => token },
    PropertiesService: { getScriptProperties: () => ({ getProperty: (name) => (name === 'CONFSYNC_API_URL' ? url : null) }) },
    Utilities: { getUuid: () => 'uuid-1' },
    ConferenceDataService: {
      newConferenceDataBuilder: makeBuilder,
      newEntryPoint: () => entryPoint('entryPoint'),
      newConferenceParameter: () => fluent('parameter'),
      newConferenceError: () => fluent('error'),
      EntryPointType: { VIDEO: 'VIDEO', PHONE: 'PHONE', SIP: 'SIP', MORE: 'MORE' },
      ConferenceErrorType: { AUTHENTICATION: 'AUTHENTICATION', TEMPORARY: 'TEMPORARY', PERMANENT: 'PERMANENT' }
    }
  };
  vm.createContext(context);
  for (const source of SOURCES) vm.runInContext(source, context);
  return { context, calls, logs };
}

function run(options = {}, ...args) {
  const { context, calls, logs } = sandbox(options);
  const arg = args.length ? args[0] : { eventData: { calendarId: 'alice@example.com', eventId: 'evt1' } };
  const result = context.createConference(arg);
  return { result: JSON.parse(JSON.stringify(result)), calls, logs };
}

const SUCCESS = {
  conferenceId: 'cnf_1',
  conferenceSolution: { key: { type: 'addOn' }, name: 'My Web Conference' },
  entryPoints: [
    { entryPointType: 'video', uri: 'https://mywebconf.test/j/cnf_1', passcode: '123456' },
    { entryPointType: 'phone', uri: 'tel:+15555550100', pin: '87654321' }
  ],
  parameters: { addOnParameters: { parameters: { adminEmail: 'admin@mywebconf.test' } } },
  notes: 'Calls may be recorded.'
};

test('a created conference becomes ConferenceData with video, phone, admin email and notes', () => {
  const { result, calls } = run({ body: SUCCESS });
  assert.deepEqual(result, {
    entryPoints: [
      { kind: 'entryPoint', uri: 'https://mywebconf.test/j/cnf_1', entryPointType: 'VIDEO', passcode: '123456' },
      { kind: 'entryPoint', uri: 'tel:+15555550100', entryPointType: 'PHONE', pin: '87654321' }
    ],
    parameters: [{ kind: 'parameter', key: 'adminEmail', value: 'admin@mywebconf.test' }],
    conferenceId: 'cnf_1',
    notes: 'Calls may be recorded.'
  });
  assert.equal(calls.length, 1);
  assert.equal(calls[0].target, 'https://confsync.example.com/v1/conferences');
  assert.equal(calls[0].options.headers.Authorization, 'Bearer id-token-123');
  const sent = JSON.parse(calls[0].options.payload);
  assert.deepEqual(Object.keys(sent).sort(), ['calendarId', 'event', 'eventId', 'requestId']);
  assert.equal(sent.event.summary, 'Planning');
});

test('an AUTHENTICATION answer becomes a ConferenceError with the authentication URL', () => {
  const { result } = run({
    status: 403,
    body: { error: { type: 'AUTHENTICATION', message: 'Sign in', authenticationUrl: 'https://mywebconf.test/oauth' } }
  });
  assert.deepEqual(result, {
    entryPoints: [],
    parameters: [],
    error: { kind: 'error', conferenceErrorType: 'AUTHENTICATION', authenticationUrl: 'https://mywebconf.test/oauth' }
  });
});

test('a backend that cannot be reached is a TEMPORARY error', () => {
  const { result } = run({ throws: true });
  assert.deepEqual(result.error, { kind: 'error', conferenceErrorType: 'TEMPORARY' });
});

test('a refusal is a PERMANENT error; a 503 without a body is TEMPORARY', () => {
  assert.equal(run({ status: 502, body: { error: { type: 'PERMANENT', message: 'no' } } }).result.error.conferenceErrorType, 'PERMANENT');
  assert.equal(run({ status: 503, body: 'not json at all' }).result.error.conferenceErrorType, 'TEMPORARY');
});

test('an event that does not exist yet is still sent, without event details', () => {
  const { result, calls } = run({ body: SUCCESS, eventMissing: true });
  assert.equal(result.conferenceId, 'cnf_1');
  assert.equal(JSON.parse(calls[0].options.payload).event, null);
});

test('an unconfigured add-on says so instead of calling anything', () => {
  const { result, calls } = run({ url: null });
  assert.equal(calls.length, 0);
  assert.equal(result.error.conferenceErrorType, 'PERMANENT');
});

// --- AUTHENTICATION always carries a URL --------------------------------------------------

const CONNECT = 'https://confsync.example.com/connect';

test('a rejected ID token (401, AUTHENTICATION without a URL) offers confsync\'s connect page', () => {
  const { result, logs } = run({ status: 401, body: { error: { type: 'AUTHENTICATION', message: 'invalid token: expired' } } });
  assert.deepEqual(result, {
    entryPoints: [],
    parameters: [],
    error: { kind: 'error', conferenceErrorType: 'AUTHENTICATION', authenticationUrl: CONNECT }
  });
  assert.match(logs.join('\n'), /AUTHENTICATION: Sign-in needed: invalid token: expired/);
});

test('the connect URL is built from the script property, with or without its trailing slash', () => {
  const body = { error: { type: 'AUTHENTICATION', message: 'token for another audience' } };
  assert.equal(run({ status: 403, body, url: 'https://confsync.example.com/' }).result.error.authenticationUrl, CONNECT);
  assert.equal(run({ status: 403, body, url: 'https://api.example.com/confsync' }).result.error.authenticationUrl,
    'https://api.example.com/confsync/connect');
});

test('an authentication URL Calendar would refuse is replaced by the connect page', () => {
  for (const bad of ['', 'http://mywebconf.test/oauth', 'javascript:alert(1)', `https://mywebconf.test/${'a'.repeat(1800)}`,
    'https://user@mywebconf.test/oauth', 42, null, ['https://mywebconf.test/oauth']]) {
    const { result } = run({ status: 403, body: { error: { type: 'AUTHENTICATION', message: 'Sign in', authenticationUrl: bad } } });
    assert.deepEqual(result.error, { kind: 'error', conferenceErrorType: 'AUTHENTICATION', authenticationUrl: CONNECT }, String(bad));
  }
});

test('no answer ever yields AUTHENTICATION without a usable URL', () => {
  const answers = [
    { status: 401, raw: '' },
    { status: 401, raw: 'Unauthorized' },
    { status: 401, body: {} },
    { status: 401, body: { error: 'AUTHENTICATION' } },
    { status: 403, body: { error: { type: 'AUTHENTICATION' } } },
    { status: 200, body: { error: { type: 'AUTHENTICATION' } } },
    { status: 403, body: { error: { type: 'AUTHENTICATION', authenticationUrl: 'https://mywebconf.test/oauth?x=1' } } },
    { status: 500, body: { error: { type: 'AUTHENTICATION', message: 'certificates unavailable' } } }
  ];
  for (const answer of answers) {
    const { error } = run(answer).result;
    if (error.conferenceErrorType === 'AUTHENTICATION') {
      assert.match(error.authenticationUrl, /^https:\/\/[^/\s]+\//, JSON.stringify(answer));
      assert.ok(error.authenticationUrl.length <= 1800);
    }
  }
});

// --- unreadable answers and answers without entryPoints: clear errors, never exceptions ------

test('a success without entryPoints is a PERMANENT error that says what is missing', () => {
  const { entryPoints, ...noEntryPoints } = SUCCESS;
  for (const body of [noEntryPoints, { ...SUCCESS, entryPoints: [] }, { ...SUCCESS, entryPoints: null },
    { ...SUCCESS, entryPoints: 'https://mywebconf.test/j/cnf_1' }]) {
    const { result, logs } = run({ body });
    assert.deepEqual(result, { entryPoints: [], parameters: [], error: { kind: 'error', conferenceErrorType: 'PERMANENT' } });
    assert.match(logs.join('\n'), /PERMANENT: .*conference cnf_1 but sent no entryPoints/);
  }
});

test('an entry point without a uri or with an unknown type is a PERMANENT error', () => {
  for (const point of [{ entryPointType: 'video' }, { entryPointType: 'hologram', uri: 'x:1' }, null, 'video']) {
    const { result, logs } = run({ body: { ...SUCCESS, entryPoints: [point] } });
    assert.equal(result.error.conferenceErrorType, 'PERMANENT');
    assert.match(logs.join('\n'), /entryPoints\[0\] needs a uri and an entryPointType/);
  }
});

test('sip and more entry points are kept with their types', () => {
  const body = { ...SUCCESS, entryPoints: [{ entryPointType: 'sip', uri: 'sip:cnf_1@mywebconf.test', passcode: '1' },
    { entryPointType: 'more', uri: 'https://mywebconf.test/more' }] };
  const { result } = run({ body });
  assert.deepEqual(result.entryPoints.map((p) => p.entryPointType), ['SIP', 'MORE']);
});

test('an unreadable answer is TEMPORARY from an overloaded backend and PERMANENT otherwise', () => {
  const cases = [
    [{ status: 200, raw: '<html>Sign in to the proxy</html>' }, 'PERMANENT'],
    [{ status: 200, raw: '' }, 'PERMANENT'],
    [{ status: 200, raw: '{"conferenceId": "cnf_1", ' }, 'PERMANENT'],
    [{ status: 200, raw: 'null' }, 'PERMANENT'],
    [{ status: 200, raw: '[1, 2]' }, 'PERMANENT'],
    [{ status: 200, raw: '"cnf_1"' }, 'PERMANENT'],
    [{ status: 302, raw: '' }, 'PERMANENT'],
    [{ status: 404, raw: 'Not Found' }, 'PERMANENT'],
    [{ status: 429, raw: 'Too Many Requests' }, 'TEMPORARY'],
    [{ status: 502, raw: '<html>Bad Gateway</html>' }, 'TEMPORARY'],
    [{ status: 503, raw: '' }, 'TEMPORARY'],
    [{ status: 200, unreadable: true }, 'TEMPORARY']
  ];
  for (const [answer, type] of cases) {
    const { result, logs } = run(answer);
    assert.deepEqual(result.error, { kind: 'error', conferenceErrorType: type }, JSON.stringify(answer));
    assert.ok(logs.length === 1 && logs[0].includes(type), JSON.stringify(answer));
  }
  assert.match(run({ status: 200, raw: '<html>Sign in to the proxy</html>' }).logs[0],
    /HTTP 200 with something other than confsync's JSON \("<html>Sign in to the proxy<\/html>"\); check that CONFSYNC_API_URL/);
});

test('a success that is not a conference (no conferenceId) is a PERMANENT error', () => {
  const { result, logs } = run({ body: { entryPoints: SUCCESS.entryPoints } });
  assert.equal(result.error.conferenceErrorType, 'PERMANENT');
  assert.match(logs[0], /without a conferenceId/);
});

test('an error answer of an unknown type falls back on its status, and keeps its reason', () => {
  const { result, logs } = run({ status: 429, body: { error: { type: 'SLOW_DOWN', reason: 'rate_limited', message: 'Too many requests' } } });
  assert.equal(result.error.conferenceErrorType, 'TEMPORARY');
  assert.match(logs[0], /TEMPORARY: Too many requests \(rate_limited\)/);
});

test('a conference Calendar\'s builders refuse is a PERMANENT error, not an exception', () => {
  const throwing = () => {
    const point = {
      setEntryPointType() { return point; },
      setUri() { throw new Error('Invalid URI'); }
    };
    return point;
  };
  const { result, logs } = run({ body: SUCCESS, entryPoint: throwing });
  assert.equal(result.error.conferenceErrorType, 'PERMANENT');
  assert.match(logs[0], /Calendar refused conference cnf_1 as the backend described it: Invalid URI/);
});

test('a call without event data is a PERMANENT error, not an exception', () => {
  for (const arg of [undefined, {}, { eventData: { calendarId: 'alice@example.com' } }]) {
    const { result, calls } = run({ body: SUCCESS }, arg);
    assert.equal(result.error.conferenceErrorType, 'PERMANENT');
    assert.equal(calls.length, 0);
  }
});

test('without an ID token the backend is not called', () => {
  const { result, calls, logs } = run({ body: SUCCESS, token: null });
  assert.equal(calls.length, 0);
  assert.equal(result.error.conferenceErrorType, 'PERMANENT');
  assert.match(logs[0], /openid and userinfo\.email/);
});

test('a script property that is not an https URL is a PERMANENT error before any call', () => {
  for (const url of ['http://confsync.example.com', 'confsync.example.com', 'https://confsync.example.com/../x',
    'https://confsync.example.com/?a=1', 'https://u:p@confsync.example.com']) {
    const { result, calls } = run({ body: SUCCESS, url });
    assert.equal(result.error.conferenceErrorType, 'PERMANENT', url);
    assert.equal(calls.length, 0, url);
  }
});

test('a fetch that fails says to check the whitelist the manifest was built with', () => {
  const { logs } = run({ throws: true });
  assert.match(logs[0], /TEMPORARY: The conferencing backend could not be reached .*urlFetchWhitelist .*addon\/build\.mjs/);
});

// --- the settings page ------------------------------------------------------------------------

test('createSettingsUrl returns confsync\'s settings page', () => {
  assert.equal(sandbox().context.createSettingsUrl(), 'https://confsync.example.com/settings');
  assert.equal(sandbox({ url: 'https://confsync.example.com/' }).context.createSettingsUrl(), 'https://confsync.example.com/settings');
  assert.equal(sandbox({ url: 'https://api.example.com/confsync' }).context.createSettingsUrl(), 'https://api.example.com/confsync/settings');
});

test('createSettingsUrl without a usable script property says how to configure it', () => {
  assert.throws(() => sandbox({ url: null }).context.createSettingsUrl(), /set the script property CONFSYNC_API_URL/);
  assert.throws(() => sandbox({ url: 'http://confsync.example.com' }).context.createSettingsUrl(), /not an https URL/);
});
