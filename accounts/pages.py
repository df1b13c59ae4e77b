"""The connect flow's pages: small, plain HTML that works without JavaScript.

One page per ``Outcome``: a heading that says what happened, a sentence that says what to do,
and on the connect page one form with one button. Every value shown is escaped; the pages
load nothing (no scripts, images or fonts), so their Content-Security-Policy allows nothing
but their own inline style.
"""

from __future__ import annotations

from html import escape

from accounts.connect import Outcome, Step
from accounts.settings_page import SettingsView

__all__ = ["SECURITY_HEADERS", "page_for", "settings_page"]

SERVICE = "My Web Conference"
VENDOR = "My Web Conferencing"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    # The link in the address bar must not travel to Google or the vendor; same-origin (not
    # no-referrer) so that a form posted here still carries its Origin.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;line-height:1.5;"
    "color:#202124}h1{font-size:1.5rem}button{font-size:1rem;padding:.6rem 1.4rem;border-radius:.3rem;"
    "border:1px solid #1a73e8;background:#1a73e8;color:#fff;cursor:pointer}button:focus{outline:3px solid #fbbc04}"
    ".note{color:#5f6368}form{margin:1rem 0}dt{font-weight:600}dd{margin:0 0 .6rem}"
)

_WORDS: dict[Outcome, tuple[str, str]] = {
    Outcome.CONNECTED: (
        "Connected",
        (
            f"{{user}}: Google Calendar and {VENDOR} are connected. Go back to Google Calendar and add "
            f"{SERVICE} to your event again."
        ),
    ),
    Outcome.DECLINED: (
        "Not connected",
        (
            f"You declined, so nothing was stored. To use {SERVICE}, add it to an event in Google Calendar "
            "again and allow access."
        ),
    ),
    Outcome.VENDOR_DECLINED: (
        f"{VENDOR} is not connected",
        (
            f"You declined at {VENDOR}, so no conference can be made in your account. Google Calendar "
            f"stays connected (disconnect it from the add-on's settings). To use {SERVICE}, add it to an "
            "event again and allow access."
        ),
    ),
    Outcome.EXPIRED: (
        "This link has expired",
        f"Nothing was stored. Add {SERVICE} to your event in Google Calendar again for a new link.",
    ),
    Outcome.USED: (
        "This link was already used",
        (
            f"Each link works once. If you are not connected yet, add {SERVICE} to your event in Google "
            "Calendar again for a new link."
        ),
    ),
    Outcome.INVALID: (
        "This link is not valid",
        f"Nothing was stored. Add {SERVICE} to your event in Google Calendar again for a new link.",
    ),
    Outcome.OTHER_BROWSER: (
        "Finish in the browser where you started",
        (
            "This step belongs to a connection started in another browser (or its cookie was cleared). "
            "Nothing was stored here."
        ),
    ),
    Outcome.WRONG_ACCOUNT: (
        "Another Google account answered",
        (
            "Google Calendar asked to connect {user}, but {other} gave consent. Nothing was stored. "
            "Add the conference again and choose {user} on Google's page."
        ),
    ),
    Outcome.NOT_GRANTED: (
        "Access was not fully granted",
        (
            f"{SERVICE} needs to read your calendar's events while you are away, and to create conferences in "
            "your account. Nothing was stored. Add the conference again and allow every item asked."
        ),
    ),
    Outcome.DISCONNECTED: (
        "Disconnected",
        (
            f"{{user}} is disconnected: {SERVICE} no longer follows your calendars, and its access to Google "
            f"and to {VENDOR} is revoked. Your conferences stay in your {VENDOR} account."
        ),
    ),
    Outcome.UNAVAILABLE: (
        "Please try again",
        (
            "Google or the conferencing service did not answer in time. Nothing was lost: add the "
            "conference again in a moment."
        ),
    ),
}


def page_for(step: Step, *, start_action: str = "/connect/start") -> str:
    """The page that says ``step``'s outcome."""
    assert step.outcome is not None  # noqa: S101 - a redirect has no page
    if step.outcome is Outcome.CONFIRM:
        return _confirm(step, start_action)
    title, text = _WORDS[step.outcome]
    said = escape(text).format(
        user=_strong(step.user or "your account"), other=_strong(step.signed_in_as or "another account")
    )
    role = ' role="alert"' if step.status >= 400 else ""
    return _html(title, f"<h1>{escape(title)}</h1><p{role}>{said}</p>")


_GOOGLE_STATES = {
    "active": "connected",
    "delegated": "connected by your organization",
    "revoked": "access was removed: reconnect",
    "none": "not connected",
}
_VENDOR_STATES = {"active": "connected", "revoked": "access was removed: reconnect", "none": "not connected"}


def settings_page(view: SettingsView) -> str:
    """The settings page: sign in, or what is connected with Reconnect and Disconnect."""
    if view.outcome is not None:
        return page_for(Step(view.outcome, status=view.status, user=view.user))
    if view.signed_out:
        body = (
            f"<h1>{SERVICE} settings</h1>"
            "<p>Sign in with the Google account you use in Google Calendar to see what is connected.</p>"
            '<form method="post" action="/settings/signin"><button type="submit" id="signin">Sign in with Google'
            "</button></form>"
        )
        return _html(f"{SERVICE} settings", body)
    calendars = "".join(f"<li>{escape(calendar_id)} ({escape(status)})</li>" for calendar_id, status in view.calendars)
    csrf = f'<input type="hidden" name="csrf" value="{escape(view.csrf or "")}">'
    body = (
        f"<h1>{SERVICE} settings</h1>"
        f"<p>Signed in as {_strong(view.user or '')}.</p>"
        f"<dl><dt>Google Calendar</dt><dd id='google'>{escape(_GOOGLE_STATES.get(view.google, view.google))}</dd>"
        f"<dt>{VENDOR}</dt><dd id='vendor'>{escape(_VENDOR_STATES.get(view.vendor, view.vendor))}</dd>"
        f"<dt>Calendars followed</dt><dd><ul>{calendars or '<li>none yet</li>'}</ul></dd></dl>"
        f'<form method="post" action="/settings/reconnect">{csrf}<button type="submit" id="reconnect">Reconnect'
        "</button></form>"
        f'<form method="post" action="/settings/disconnect">{csrf}<p class="note">Disconnecting stops '
        f"{SERVICE} following your calendars and revokes its access; your conferences stay in your "
        f'{VENDOR} account.</p><button type="submit" id="disconnect">Disconnect</button></form>'
    )
    return _html(f"{SERVICE} settings", body)


def _confirm(step: Step, action: str) -> str:
    google = (
        "<li><strong>Google</strong> asks you to confirm it is you (confsync can already read your calendars).</li>"
        if step.skips_google
        else "<li><strong>Google</strong> asks you to let it read your calendars' events, so conferences "
        "follow every change to their meetings.</li>"
    )
    body = (
        f"<h1>Connect {SERVICE}</h1>"
        f"<p>You are connecting as {_strong(step.user or '')}. Two pages follow:</p>"
        f"<ol>{google}<li><strong>{VENDOR}</strong> asks you to let it create and update "
        "conferences in your account.</li></ol>"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="state" value="{escape(step.link or "")}">'
        '<button type="submit" id="continue">Continue</button></form>'
        '<p class="note">You can disconnect at any time from the add-on\'s settings.</p>'
    )
    return _html(f"Connect {SERVICE}", body)


def _strong(text: str) -> str:
    return f"<strong>{escape(text)}</strong>"


def _html(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - confsync</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body><main>{body}</main></body></html>"
    )
