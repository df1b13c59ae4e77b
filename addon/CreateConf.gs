/**
 * confsync's Calendar add-on: creates a conference through the confsync backend and returns
 * it as ConferenceData. It holds no sync code: the backend follows every later change of the
 * event (Google's quickstart did that here, with one sync token for all calendars and a bug
 * that deleted conferences on every update).
 *
 * Script property CONFSYNC_API_URL is the backend's base URL (https://..., no trailing slash).
 * It must be the URL the deployed manifest was built with (addon/build.mjs): UrlFetchApp only
 * reaches the manifest's urlFetchWhitelist. The backend authenticates the caller with the
 * user's Google ID token.
 *
 * Nothing here throws to Calendar: every failure becomes a ConferenceError (AUTHENTICATION,
 * always with a URL; TEMPORARY; PERMANENT). A ConferenceError carries no text, so the reason,
 * worded for whoever can act on it, goes to the execution log (console, Cloud Logging).
 */

var API_URL_PROPERTY = 'CONFSYNC_API_URL';
var CONFERENCES_PATH = '/v1/conferences';
var CONNECT_PATH = '/connect'; // confsync's page where the user connects the conferencing service
var MAX_AUTHENTICATION_URL = 1800; // ConferenceError.setAuthenticationUrl's limit
var ENTRY_POINT_TYPES = { video: 'VIDEO', phone: 'PHONE', sip: 'SIP', more: 'MORE' };

/**
 * onCreateFunction of the conference solution (appsscript.json).
 * @param {Object} arg Calendar's argument; arg.eventData has calendarId and eventId.
 * @return {ConferenceData}
 */
function createConference(arg) {
  var result;
  try {
    result = createConference_(arg);
  } catch (err) { // a bug here, not an answer: say so rather than fail inside Calendar
    result = { error: failure_('PERMANENT', 'The add-on failed unexpectedly: ' + describe_(err)) };
  }
  if (result.data) return result.data;
  return errorData_(result.error);
}

/** {data: ConferenceData} or {error: {type, message, authenticationUrl}}. */
function createConference_(arg) {
  var eventData = arg && arg.eventData;
  if (!eventData || !nonEmptyString_(eventData.calendarId) || !nonEmptyString_(eventData.eventId)) {
    return { error: failure_('PERMANENT', 'Calendar called the add-on without a calendar and event id.') };
  }
  var base = baseUrl_();
  if (base.error) return { error: base.error };
  var event = null;
  try {
    event = Calendar.Events.get(eventData.calendarId, eventData.eventId);
  } catch (err) {
    event = null; // the event may not exist yet; the backend syncs its details later
  }
  var answer = callBackend_(base.url, {
    calendarId: eventData.calendarId,
    eventId: eventData.eventId,
    requestId: Utilities.getUuid(),
    event: event
  });
  if (answer.error) return answer;
  return buildConference_(answer.conference);
}

/**
 * The backend's base URL from the script property: {url} (https, no trailing slash) or
 * {error}. Shared with Settings.gs.
 */
function baseUrl_() {
  var raw = PropertiesService.getScriptProperties().getProperty(API_URL_PROPERTY);
  var url = typeof raw === 'string' ? raw.trim().replace(/\/+$/, '') : '';
  if (!url) {
    return { error: failure_('PERMANENT', 'The add-on is not configured: set the script property ' +
        API_URL_PROPERTY + ' to confsync\'s https URL (addon/README.md).') };
  }
  if (!/^https:\/\/[^\/?#@\s]+(\/[^?#\s]*)?$/.test(url) || /(^|\/)\.\.?(\/|$)/.test(url.slice(8)) ||
      url.length > MAX_AUTHENTICATION_URL - CONNECT_PATH.length) {
    return { error: failure_('PERMANENT', 'The script property ' + API_URL_PROPERTY +
        ' is not an https URL without query, credentials or dot segments: ' + url) };
  }
  return { url: url };
}

/** POSTs to the backend; returns {conference} or {error}. */
function callBackend_(base, body) {
  var token;
  try {
    token = ScriptApp.getIdentityToken();
  } catch (err) {
    token = null;
  }
  if (!nonEmptyString_(token)) {
    return { error: failure_('PERMANENT', 'No Google ID token for the user: the add-on needs the ' +
        'openid and userinfo.email scopes; authorize the add-on again.') };
  }
  var response;
  try {
    response = UrlFetchApp.fetch(base + CONFERENCES_PATH, {
      method: 'post',
      contentType: 'application/json',
      payload: JSON.stringify(body),
      headers: { Authorization: 'Bearer ' + token },
      muteHttpExceptions: true,
      followRedirects: false
    });
  } catch (err) {
    return { error: failure_('TEMPORARY', 'The conferencing backend could not be reached at ' + base +
        ' (' + describe_(err) + '). If this persists, check that ' + API_URL_PROPERTY +
        ' is the URL the manifest\'s urlFetchWhitelist was built with (addon/build.mjs).') };
  }
  var status, text;
  try {
    status = response.getResponseCode();
    text = response.getContentText();
  } catch (err) {
    return { error: failure_('TEMPORARY', 'The backend\'s answer could not be read: ' + describe_(err)) };
  }
  return readAnswer_(base, status, text);
}

/** The backend's answer (its status and body) as {conference} or {error}. */
function readAnswer_(base, status, text) {
  var data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    data = undefined;
  }
  if (!isObject_(data)) {
    return { error: failure_(typeForStatus_(status), 'The backend answered HTTP ' + status +
        ' with something other than confsync\'s JSON (' + snippet_(text) + '); check that ' +
        API_URL_PROPERTY + ' points at confsync.') };
  }
  if (status >= 200 && status < 300 && !isObject_(data.error)) {
    return checkConference_(data);
  }
  var error = isObject_(data.error) ? data.error : {};
  var type = error.type === 'AUTHENTICATION' || error.type === 'TEMPORARY' || error.type === 'PERMANENT'
      ? error.type : typeForStatus_(status);
  var message = nonEmptyString_(error.message) ? error.message : 'HTTP ' + status;
  if (nonEmptyString_(error.reason)) message += ' (' + error.reason + ')';
  if (type !== 'AUTHENTICATION') return { error: failure_(type, message) };
  var url = error.authenticationUrl;
  if (!validAuthenticationUrl_(url)) {
    if (url !== undefined && url !== null) {
      message += '; the backend\'s authentication URL was unusable, so ' + CONNECT_PATH + ' is offered';
    }
    url = base + CONNECT_PATH; // Calendar requires a URL with AUTHENTICATION
  }
  return { error: failure_('AUTHENTICATION', 'Sign-in needed: ' + message, url) };
}

/** A successful answer checked against what ConferenceData needs: {conference} or {error}. */
function checkConference_(data) {
  if (!nonEmptyString_(data.conferenceId)) {
    return { error: failure_('PERMANENT', 'The backend answered success without a conferenceId; ' +
        'the add-on and confsync disagree on the API (update one of them).') };
  }
  var points = data.entryPoints;
  if (!Array.isArray(points) || points.length === 0) {
    return { error: failure_('PERMANENT', 'The backend created conference ' + data.conferenceId +
        ' but sent no entryPoints, so there is nothing to join; the add-on and confsync disagree ' +
        'on the API (update one of them).') };
  }
  for (var i = 0; i < points.length; i++) {
    var point = points[i];
    if (!isObject_(point) || !nonEmptyString_(point.uri) ||
        !ENTRY_POINT_TYPES.hasOwnProperty(String(point.entryPointType).toLowerCase())) {
      return { error: failure_('PERMANENT', 'The backend sent an entry point the add-on cannot use ' +
          '(entryPoints[' + i + '] needs a uri and an entryPointType of video, phone, sip or more).') };
    }
  }
  return { conference: data };
}

/** ConferenceData for a checked conference: {data} or {error} when Calendar's builders refuse it. */
function buildConference_(data) {
  try {
    var builder = ConferenceDataService.newConferenceDataBuilder();
    builder.setConferenceId(data.conferenceId);
    data.entryPoints.forEach(function (point) {
      var kind = ENTRY_POINT_TYPES[String(point.entryPointType).toLowerCase()];
      var entry = ConferenceDataService.newEntryPoint()
          .setEntryPointType(ConferenceDataService.EntryPointType[kind])
          .setUri(point.uri);
      if (kind === 'PHONE') {
        if (point.pin) entry.setPin(String(point.pin));
      } else if (point.passcode) {
        entry.setPasscode(String(point.passcode));
      }
      builder.addEntryPoint(entry);
    });
    var admin = data.parameters && data.parameters.addOnParameters &&
        data.parameters.addOnParameters.parameters && data.parameters.addOnParameters.parameters.adminEmail;
    if (admin) {
      builder.addConferenceParameter(
          ConferenceDataService.newConferenceParameter().setKey('adminEmail').setValue(String(admin)));
    }
    if (data.notes) builder.setNotes(String(data.notes));
    return { data: builder.build() };
  } catch (err) {
    return { error: failure_('PERMANENT', 'Calendar refused conference ' + data.conferenceId +
        ' as the backend described it: ' + describe_(err)) };
  }
}

/** ConferenceData holding the error; AUTHENTICATION only ever with its URL. */
function errorData_(error) {
  var types = ConferenceDataService.ConferenceErrorType;
  var built = ConferenceDataService.newConferenceError();
  if (error.type === 'AUTHENTICATION' && validAuthenticationUrl_(error.authenticationUrl)) {
    built.setConferenceErrorType(types.AUTHENTICATION).setAuthenticationUrl(error.authenticationUrl);
  } else {
    built.setConferenceErrorType(error.type === 'TEMPORARY' ? types.TEMPORARY : types.PERMANENT);
  }
  return ConferenceDataService.newConferenceDataBuilder().setError(built).build();
}

/** An error for Calendar, its reason logged for whoever can act on it. */
function failure_(type, message, authenticationUrl) {
  if (typeof console !== 'undefined' && console.warn) {
    console.warn('confsync add-on: ' + type + ': ' + message);
  }
  var error = { type: type, message: message };
  if (authenticationUrl) error.authenticationUrl = authenticationUrl;
  return error;
}

function typeForStatus_(status) {
  return status >= 500 || status === 429 || status === 408 ? 'TEMPORARY' : 'PERMANENT';
}

function validAuthenticationUrl_(url) {
  return typeof url === 'string' && url.length <= MAX_AUTHENTICATION_URL &&
      /^https:\/\/[^\/?#@\s]+([\/?#]\S*)?$/.test(url);
}

function nonEmptyString_(value) {
  return typeof value === 'string' && value.length > 0;
}

function isObject_(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function snippet_(text) {
  var s = typeof text === 'string' ? text.replace(/\s+/g, ' ').trim() : '';
  if (!s) return 'an empty body';
  return '"' + (s.length > 80 ? s.slice(0, 80) + '...' : s) + '"';
}

function describe_(err) {
  return err && err.message ? err.message : String(err);
}
