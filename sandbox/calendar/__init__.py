"""A local Google Calendar API v3 that google-api-python-client syncs against, over real HTTP.

It follows Google's reference (events, channels, "Synchronize resources efficiently", "Push
notifications", conferenceData) for what confsync uses: events insert/get/patch/update/
delete/list/instances/watch/move and channels.stop, attendees' copies of events, sync tokens
with 410 ``fullSyncRequired``, recurring events with instance exceptions, conferenceData
written only with ``conferenceDataVersion=1``, watch channels that POST Google's headers
to a webhook, and partial responses (``fields``) on events list/instances/get (partial.py).

Users (``POST /_sandbox/users``, each with a primary calendar whose id is their email) share
calendars through ``calendars/{id}/acl`` (insert/list/get/update/patch/delete) and see them
in ``users/me/calendarList`` (list/get, with ``accessRole``). With auth on (``require_auth``,
or static ``--auth-token`` tokens) every API call needs a bearer token the sandbox's
``Authenticator`` accepts, else 401 ``authError``, and acts for the principal it names:
reading events needs reader, writing them writer (a caller with no access gets 404 on reads
and 403 ``requiredAccessLevel`` on writes), reading the ACL writer and changing it owner; a
token's OAuth scopes are checked too (403 ``insufficientPermissions``). The journal records
each call's principal, never its token (the values of credential query parameters such as
``access_token`` or ``key`` are journaled as ``[redacted]``).

It is Google's identity provider too (sandbox/calendar/identity.py, routes/identity.py): the
consent page at ``/o/oauth2/v2/auth`` and ``/token`` (authorization_code with PKCE S256,
refresh_token, and a service account's JWT bearer assertion), ``/revoke``, service-account
key files (``POST /_sandbox/service-accounts``) with domain-wide delegation
(``/_sandbox/domain-wide-delegation``), and ID tokens (``POST /_sandbox/id-token``) verified
against ``/oauth2/v1/certs`` or ``/oauth2/v3/certs``. Access tokens it issues are what
``require_auth`` accepts first.

Where it differs from Google, on purpose or for want of knowing better:

- Calendars exist once created (``POST /_sandbox/calendars``) or on the first event insert;
  anything else addressed to an unknown calendar is a 404. ``primary`` is the caller's own
  calendar: the user its bearer token maps to, or ``--owner`` without auth. With auth on, only
  a principal's own calendar comes into being on its first insert.
- Without auth (the default) calls act for nobody and nothing is checked: any caller may read
  and write any calendar and manage any ACL, and the calendar list is ``--owner``'s. Google
  has no such mode. With auth off a bearer token is ignored.
- ACL rules have user scopes only: ``default`` (public), ``domain`` and ``group`` scopes and
  the role ``none`` are refused with a 400; ``writerWithoutPrivateAccess`` is unknown.
  Inserting a rule for a scope that has one changes its role. The calendar's owner is listed
  as ``user:OWNER`` and cannot be changed (403 ``cannotChangeOwnerAcl``), nor can a caller's
  own rule (403 ``cannotChangeOwnAcl``). ``sendNotifications`` sends nothing; ACL listings
  have no paging and no sync tokens.
- A ``freeBusyReader`` sees nothing of events (403 ``requiredAccessLevel`` on reads) where
  Google shows busy times; there is no freebusy.query. Private events show in full to readers.
- Every share is in the sharee's calendar list at once (Google's after it is added or
  accepted). The list has no paging, sync tokens, hidden or deleted entries; an entry has only
  ``kind, etag, id, summary`` (the id), ``timeZone`` (UTC), ``accessRole``,
  ``defaultReminders`` and ``primary``; calendarList insert/update/patch/delete and
  calendars.get are not served.
- A principal with no scopes (static tokens) holds every scope; each method accepts the broad
  scopes Google lists for it (not ``calendar.app.created``, ``calendar.calendars``...). A
  delegated service account acts for ``principal.email``. Access is checked before a request
  is served, not atomically with it.
- OAuth: the consent page asks only for an email, which must be a sandbox user's (no password,
  no account chooser, no "unverified app" screen); ``prompt`` is carried but changes nothing
  and ``include_granted_scopes`` is ignored; PKCE is required and only S256 is accepted (Google also
  takes ``plain`` and no PKCE for confidential clients). A refresh token comes only with
  ``access_type=offline`` and lasts until revoked; revoking an access or a refresh token ends
  the whole grant. Clients, grants, tokens, service accounts and delegations live in memory:
  a restart (even with ``--db``) forgets them, as if every user had revoked.
- ID tokens' ``iat``/``exp`` follow the wall clock, not the sandbox's clock, since verifiers
  check them against theirs; access-token expiry (``--token-ttl``) follows the sandbox clock.
  One signing key per process, never rotated. Service accounts' ID tokens (the JWT bearer
  grant with ``target_audience``, or ``/_sandbox/id-token``) carry no ``hd``.
- Domain-wide delegation is granted to a service account's client id for one domain and a
  set of scopes; an assertion asking for any scope outside that set is refused whole
  (``unauthorized_client``), as Google does; ``sub`` must be a sandbox user. A token issued
  under a delegation lasts until it expires even if the delegation is withdrawn. An assertion
  must name this token endpoint or Google's (``https://oauth2.googleapis.com/token``, which
  google-auth always uses) as its audience, last at most an hour, and ask for some scope.
- Only ``Authorization: Bearer`` carries a token: an ``access_token`` query parameter, which
  Google accepts, is ignored (with auth on, a call carrying its token only there is a 401).
- A watch channel may be stopped only by the principal that opened it (anyone else gets 404
  ``notFound``, as for another project's channel); one opened without auth, or saved before
  channels recorded their principal, by any principal who may read its calendar.
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
- Attendees' copies (sandbox/calendar/copies.py) go only to sandbox users' primary calendars;
  ``sendUpdates`` is ignored and no mail is sent. A copy's own fields are ``reminders``,
  ``colorId`` and private extended properties; any other change by the attendee (transparency
  and visibility included; ``guestsCanModify`` is not honoured) is 403
  ``forbiddenForNonOrganizer``, except their own ``responseStatus``/``comment``/
  ``additionalGuests``, which is carried to the organizer's event and so re-commits every copy.
  A copy the attendee deleted stays cancelled (they are ``declined``) until the organizer gives
  them another response. The organizer's own attendee entry is not marked ``self``/``organizer``.
  Any attendee entry's ``responseStatus`` must be ``needsAction``, ``declined``, ``tentative`` or
  ``accepted``, its ``comment`` at most 8,192 characters and its ``additionalGuests`` 0 to 100
  (else 400 ``invalid``); a malformed event (``attendees`` or ``extendedProperties`` of the wrong
  shape, ``reminders`` not an object) is a 400 on a copy as on any event.
- Google keeps one event per iCalUID and organizer; the sandbox keeps one per id in a calendar,
  first come first served: an organizer's write never touches an event of an attendee's calendar
  whose organizer is another calendar (the attendee's own event, or a copy of another
  organizer's event with the same id, cancelled or not), so that attendee gets no copy; and
  ``events.move`` into a calendar holding a copy of another organizer's event with that id is
  409 ``duplicate``.
- Exceptions are copied only to attendees holding the series' copy (a guest of one instance
  only gets nothing).
- ``events.move`` takes a series with its exceptions; the new organizer is just the destination's
  id; moving to the same calendar answers the event unchanged; a copy cannot be moved (403), an
  instance neither (400 ``cannotChangeOrganizerOfInstance``).
"""

from sandbox.calendar.app import CalendarSandbox, create_app
from sandbox.calendar.model import CalendarModel
from sandbox.calendar.notify import RetryPolicy

__all__ = ["CalendarModel", "CalendarSandbox", "RetryPolicy", "create_app"]
