/**
 * confsync's Calendar add-on: creates a conference through the confsync backend and returns
 * it as ConferenceData. It holds no sync code: the backend follows every later change of the
 * event (Google's quickstart did that here, with one sync token for all calendars and a bug
 * that deleted conferences on every update).
 *
 * Script property CONFSYNC_API_URL is the backend's base URL (https://..., no trailing slash).
 * The backend authenticates the caller with the user's Google ID token.
 */

var API_URL_PROPERTY = 'CONFSYNC_API_URL';

/**
 * onCreateFunction of the conference solution (appsscript.json).
 * @param {Object} arg Calendar's argument; arg.eventData has calendarId and eventId.
 * @return {ConferenceData}
 */
function createConference(arg) {
  var calendarId = arg.eventData.calendarId;
  var eventId = arg.eventData.eventId;
  var event = null;
  try {
    event = Calendar.Events.get(calendarId, eventId);
  } catch (err) {
    event = null; // the event may not exist yet; the backend syncs its details later
  }
  var answer = callBackend_({
    calendarId: calendarId,
    eventId: eventId,
    requestId: Utilities.getUuid(),
    event: event
  });
  var builder = ConferenceDataService.newConferenceDataBuilder();
  if (answer.conference) {
    return buildConference_(builder, answer.conference);
  }
  return builder.setError(buildError_(answer.error)).build();
}

/** POSTs to the backend; returns {conference} or {error: {type, message, authenticationUrl}}. */
function callBackend_(body) {
  var url = PropertiesService.getScriptProperties().getProperty(API_URL_PROPERTY);
  if (!url) {
    return { error: { type: 'PERMANENT', message: 'The add-on is not configured (' + API_URL_PROPERTY + ').' } };
  }
  var response;
  try {
    response = UrlFetchApp.fetch(url + '/v1/conferences', {
      method: 'post',
      contentType: 'application/json',
      payload: JSON.stringify(body),
      headers: { Authorization: 'Bearer ' + ScriptApp.getIdentityToken() },
      muteHttpExceptions: true
    });
  } catch (err) {
    return { error: { type: 'TEMPORARY', message: 'The conferencing backend could not be reached.' } };
  }
  var status = response.getResponseCode();
  var data;
  try {
    data = JSON.parse(response.getContentText());
  } catch (err) {
    return { error: { type: status >= 500 ? 'TEMPORARY' : 'PERMANENT', message: 'Unreadable answer (' + status + ').' } };
  }
  if (status >= 200 && status < 300 && data.conferenceId) {
    return { conference: data };
  }
  var error = data && data.error ? data.error : {};
  return { error: { type: error.type || (status >= 500 ? 'TEMPORARY' : 'PERMANENT'),
                    message: error.message || ('HTTP ' + status),
                    authenticationUrl: error.authenticationUrl } };
}

function buildConference_(builder, data) {
  builder.setConferenceId(data.conferenceId);
  data.entryPoints.forEach(function (point) {
    var entry = ConferenceDataService.newEntryPoint().setUri(point.uri);
    if (point.entryPointType === 'video') {
      entry.setEntryPointType(ConferenceDataService.EntryPointType.VIDEO);
      if (point.passcode) entry.setPasscode(point.passcode);
    } else {
      entry.setEntryPointType(ConferenceDataService.EntryPointType.PHONE);
      if (point.pin) entry.setPin(point.pin);
    }
    builder.addEntryPoint(entry);
  });
  var admin = data.parameters && data.parameters.addOnParameters &&
      data.parameters.addOnParameters.parameters.adminEmail;
  if (admin) {
    builder.addConferenceParameter(
        ConferenceDataService.newConferenceParameter().setKey('adminEmail').setValue(admin));
  }
  if (data.notes) builder.setNotes(data.notes);
  return builder.build();
}

function buildError_(error) {
  var types = ConferenceDataService.ConferenceErrorType;
  var type = error.type === 'AUTHENTICATION' ? types.AUTHENTICATION
      : error.type === 'TEMPORARY' ? types.TEMPORARY : types.PERMANENT;
  var built = ConferenceDataService.newConferenceError().setConferenceErrorType(type);
  if (type === types.AUTHENTICATION && error.authenticationUrl) {
    built.setAuthenticationUrl(error.authenticationUrl);
  }
  return built;
}
