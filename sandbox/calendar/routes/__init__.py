"""The Calendar sandbox's routes, one module per resource; ``create_app`` composes them.

Each module has one function that takes the sandbox and its notifier and returns its routes:
events.py (``/calendar/v3/calendars/{calendarId}/events``), channels.py (events.watch and
channels.stop), acl.py (``calendars/{calendarId}/acl`` and ``users/me/calendarList``) and
admin.py (``/_sandbox/``, admin, users and fault injection).
"""

from sandbox.calendar.routes.acl import sharing_routes
from sandbox.calendar.routes.admin import admin_routes
from sandbox.calendar.routes.channels import channel_routes
from sandbox.calendar.routes.events import event_routes

__all__ = ["admin_routes", "channel_routes", "event_routes", "sharing_routes"]
