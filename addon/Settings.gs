/**
 * The add-on's settings page (manifest: addOns.calendar.createSettingsUrlFunction). Calendar
 * calls this when the user clicks Settings next to the add-on (Calendar settings > Add-ons) and
 * opens the URL it returns.
 *
 * The page is confsync's, at ${CONFSYNC_API_URL}/settings. The URL is the same for every user
 * and carries no identity (a URL is no credential): the page signs the user in itself (Google
 * sign-in) and then shows that user's settings. Its contract (addon/README.md): what is
 * connected (the conferencing account, the calendars confsync follows for the user), reconnect
 * the conferencing account, and disconnect it.
 */

var SETTINGS_PATH = '/settings';

/**
 * createSettingsUrlFunction of the manifest.
 * @return {string} confsync's settings page.
 */
function createSettingsUrl() {
  var base = baseUrl_(); // CreateConf.gs: the script property, checked
  if (base.error) {
    throw new Error(base.error.message); // no URL to give: Calendar shows its error, the log says why
  }
  return base.url + SETTINGS_PATH;
}
