// The add-on, run under node's test runner with small stand-ins for the Apps Script globals.
// Each test asserts the exact ConferenceData (or ConferenceError) the add-on builds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

const SOURCE = readFileSync(new URL('../CreateConf.gs', import.meta.url), 'utf8');

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

function run({ status = 200, body = null, throws = false, eventMissing = false, url = 'https://confsync.example.com' }) {
  const calls = [];
  const context = {
    Calendar: { Events: { get(cal, id) {
      if (eventMissing) throw new Error('Not Found');
      return { id, summary: 'Planning', start: { dateTime: '2026-12-01T10:00:00Z' } };
    } } },
    UrlFetchApp: { fetch(target, options) {
      calls.push({ target, options });
      if (throws) throw new Error('DNS error');
      return { getResponseCode: () => status, getContentText: () => JSON.stringify(body) };
    } },
    ScriptApp: { getIdentityToken: () => 'id-token-123' },
    PropertiesService: { getScriptProperties: () => ({ getProperty: (name) => (name === 'CONFSYNC_API_URL' ? url : null) }) },
    Utilities: { getUuid: () => 'uuid-1' },
    ConferenceDataService: {
      newConferenceDataBuilder: makeBuilder,
      newEntryPoint: () => fluent('entryPoint'),
      newConferenceParameter: () => fluent('parameter'),
      newConferenceError: () => fluent('error'),
      EntryPointType: { VIDEO: 'VIDEO', PHONE: 'PHONE' },
      ConferenceErrorType: { AUTHENTICATION: 'AUTHENTICATION', TEMPORARY: 'TEMPORARY', PERMANENT: 'PERMANENT' }
    }
  };
  vm.createContext(context);
  vm.runInContext(SOURCE, context);
  const result = context.createConference({ eventData: { calendarId: 'alice@example.com', eventId: 'evt1' } });
  return { result: JSON.parse(JSON.stringify(result)), calls };
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
