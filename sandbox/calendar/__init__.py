"""A local Google Calendar API v3 that google-api-python-client syncs against, over real HTTP.

It follows Google's reference (events, channels, "Synchronize resources efficiently", "Push
notifications", conferenceData) for what confsync uses: events insert/get/patch/update/
delete/list/instances/watch and channels.stop, sync tokens with 410 ``fullSyncRequired``,
recurring events with instance exceptions, conferenceData written only with
``conferenceDataVersion=1``, and watch channels that POST Google's headers to a webhook.

Where it differs from Google, on purpose or for want of knowing better:

- Calendars exist once created (``POST /_sandbox/calendars``) or on the first event insert;
  anything else addressed to an unknown calendar is a 404. ``primary`` is the caller's own
  calendar: the user its bearer token maps to, or ``--owner`` without auth. Any caller may
  read and write any calendar (no ACLs).
- Webhook addresses may be ``http://`` on loopback (Google requires HTTPS), and only loopback
  addresses are accepted at all unless ``allow_remote_webhooks`` is set: a sandbox must not
  send traffic off the machine.
- One notification per change (Google may coalesce), in message-number order per channel.
- Tombstones in listings keep ``kind, etag, id, status, updated`` (plus ``recurringEventId``
  and ``originalStartTime`` for instances); Google guarantees only ``id`` (and those two).
- Deleting a series cancels its exceptions too; changing a series does not rewrite
  exceptions already stored. Expansion stops at 1,000 instances per series and request.
  All-day events compare against timeMin/timeMax as UTC days.
- Every unknown, expired or invalidated sync token is a 410, including one from before a
  ``reset``. Error messages follow Google's where known; the 400 for parameters that cannot
  go with a syncToken uses reason ``invalid`` with our own wording.
- Listings ordered with ``orderBy`` page by offset; others page by stable positions.
"""

from sandbox.calendar.app import CalendarSandbox, create_app
from sandbox.calendar.model import CalendarModel
from sandbox.calendar.notify import RetryPolicy

__all__ = ["CalendarModel", "CalendarSandbox", "RetryPolicy", "create_app"]
