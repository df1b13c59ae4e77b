"""The pages a person sees during a sandbox's OAuth flow: consent, and errors.

Plain HTML forms that work without JavaScript, so a browser and an HTTP client that submits
the form complete the same flow. Every value shown or carried is escaped.
"""

from __future__ import annotations

from html import escape

from sandbox.oauth.server import AuthorizeRequest

__all__ = ["consent_page", "error_page"]

_STYLE = (
    "body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.4}"
    "label,input,button{font-size:1rem}input[type=email]{width:100%;padding:.4rem;margin:.3rem 0 1rem}"
    "button{padding:.5rem 1.2rem;margin-right:.6rem}.error{color:#b00020}"
)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body>{body}</body></html>"
    )


def consent_page(  # noqa: PLR0913 - what the page says, named
    request: AuthorizeRequest,
    *,
    action: str,
    heading: str,
    app_name: str,
    scope_names: dict[str, str] | None = None,
    email: str | None = None,
    problem: str | None = None,
) -> str:
    """Which user (``email``, else a field to type one), the scopes asked for, Allow and Deny.

    ``heading`` may hold ``{email}`` for the account being signed in."""
    shown_email = email or request.login_hint or ""
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in request.hidden_fields().items()
    )
    names = scope_names or {}
    scopes = "".join(f"<li>{escape(names.get(scope, scope))}</li>" for scope in request.scopes)
    problem_html = f'<p class="error" role="alert">{escape(problem)}</p>' if problem else ""
    body = (
        f"<h1>{escape(heading.format(email=shown_email or 'your account'))}</h1>"
        f"<p><strong>{escape(app_name or request.client.name or request.client.client_id)}</strong>"
        " wants to:</p>"
        f"<ul>{scopes}</ul>{problem_html}"
        f'<form method="post" action="{escape(action)}">{hidden}'
        '<label for="email">Account (email)</label>'
        f'<input type="email" id="email" name="email" value="{escape(shown_email)}" required>'
        '<button type="submit" name="decision" value="allow" id="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" id="deny" formnovalidate>Deny</button>'
        "</form>"
    )
    return _page(heading.format(email=shown_email or "your account"), body)


def error_page(status: int, code: str, description: str) -> str:
    """Google's style: "Error 400: redirect_uri_mismatch" and what went wrong."""
    body = f"<h1>Error {status}: {escape(code)}</h1><p>{escape(description)}</p>"
    return _page(f"Error {status}: {code}", body)
