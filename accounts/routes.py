"""The connect flow's HTTP routes (mounted by the ingest service, the one public service).

- ``GET /connect?state=LINK``            the connect page
- ``POST /connect/start`` (form: state)   303 to the first consent, and the flow's cookie
- ``GET /connect/google?state&code|error`` Google's redirect back
- ``GET /connect/vendor?state&code|error`` the vendor's redirect back

and the settings page (accounts/settings_page.py): ``GET /settings``, ``POST /settings/signin``,
``GET /settings/google``, ``POST /settings/reconnect``, ``POST /settings/disconnect``.

Each step runs in a thread (it reads the store and may call Google or the vendor). A failure
of the store or a provider is a page that says to try again (503), never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from accounts.connect import COOKIE, Connector, Outcome, Step
from accounts.pages import SECURITY_HEADERS, page_for, settings_page
from accounts.settings_page import SESSION_COOKIE, SIGNIN_COOKIE, SettingsPages, SettingsView
from confsync.errors import TransientError

__all__ = ["connect_routes", "settings_routes"]

log = structlog.get_logger(__name__)

_MAX_FORM = 8 * 1024  # one hidden field with a link in it


def cross_site(request: Request, origin: str) -> bool:
    """Whether a POST came from another site: a page elsewhere submitting a form here (login
    CSRF). Browsers say so in ``Sec-Fetch-Site``, older ones only in ``Origin``; a client that
    sends neither is no browser acting for a deceived user."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    sent = request.headers.get("origin")
    return sent is not None and sent != "null" and sent.rstrip("/") != origin


def connect_routes(connector: Connector, *, secure_cookie: bool, cookie_max_age_s: int, origin: str) -> list[Route]:
    def answer(step: Step) -> Response:
        if step.redirect is not None:
            response: Response = RedirectResponse(step.redirect, status_code=303, headers=SECURITY_HEADERS)
            if step.set_cookie is not None:
                response.set_cookie(
                    COOKIE,
                    step.set_cookie,
                    max_age=cookie_max_age_s,
                    path="/connect",
                    secure=secure_cookie,
                    httponly=True,
                    samesite="lax",  # sent on the consent pages' top-level redirects back, not on cross-site posts
                )
            return response
        return HTMLResponse(page_for(step), status_code=step.status, headers=SECURITY_HEADERS)

    async def run(step: Callable[[], Step]) -> Response:
        try:
            return answer(await run_in_threadpool(step))
        except TransientError as err:
            log.warning("connect step failed, temporarily", error=str(err))
            return answer(Step(Outcome.UNAVAILABLE, status=503))

    async def confirm(request: Request) -> Response:
        link = request.query_params.get("state", "")
        return await run(lambda: connector.confirm(link))

    async def start(request: Request) -> Response:
        if cross_site(request, origin):
            log.warning("connect start refused: posted from another site")
            return answer(Step(Outcome.INVALID, status=403))
        form = await _form(request)
        if form is None:
            return answer(Step(Outcome.INVALID, status=413))
        link = form.get("state", "")
        return await run(lambda: connector.start(link))

    async def google(request: Request) -> Response:
        params, cookie = dict(request.query_params), request.cookies.get(COOKIE)
        return await run(lambda: connector.google_answer(params, cookie))

    async def vendor(request: Request) -> Response:
        params, cookie = dict(request.query_params), request.cookies.get(COOKIE)
        return await run(lambda: connector.vendor_answer(params, cookie))

    return [
        Route("/connect", confirm, methods=["GET"]),
        Route("/connect/start", start, methods=["POST"]),
        Route("/connect/google", google, methods=["GET"]),
        Route("/connect/vendor", vendor, methods=["GET"]),
    ]


def settings_routes(pages: SettingsPages, *, secure_cookie: bool, cookie_max_age_s: int, origin: str) -> list[Route]:
    """``GET /settings``, ``POST /settings/signin``, ``GET /settings/google`` (Google's redirect
    back), ``POST /settings/reconnect`` and ``POST /settings/disconnect``."""

    def answer(view: SettingsView) -> Response:
        if view.redirect is not None:
            response: Response = RedirectResponse(view.redirect, status_code=303, headers=SECURITY_HEADERS)
        else:
            response = HTMLResponse(settings_page(view), status_code=view.status, headers=SECURITY_HEADERS)
        if view.set_cookie is not None:
            name, value = view.set_cookie
            response.set_cookie(
                name,
                value,
                max_age=cookie_max_age_s,
                path="/settings",
                secure=secure_cookie,
                httponly=True,
                samesite="lax",
            )
        return response

    async def run(step: Callable[[], SettingsView]) -> Response:
        try:
            return answer(await run_in_threadpool(step))
        except TransientError as err:
            log.warning("settings step failed, temporarily", error=str(err))
            return answer(SettingsView(Outcome.UNAVAILABLE, status=503))

    async def show(request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        return await run(lambda: pages.show(session))

    async def signin(request: Request) -> Response:
        if cross_site(request, origin):
            return answer(SettingsView(Outcome.INVALID, status=403))
        return await run(pages.start_signin)

    async def google(request: Request) -> Response:
        params, cookie = dict(request.query_params), request.cookies.get(SIGNIN_COOKIE)
        return await run(lambda: pages.google_answer(params, cookie))

    def posted(action: Callable[[str | None, Mapping[str, str]], SettingsView]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if cross_site(request, origin):
                return answer(SettingsView(Outcome.INVALID, status=403))
            form = await _form(request)
            if form is None:
                return answer(SettingsView(Outcome.INVALID, status=413))
            session = request.cookies.get(SESSION_COOKIE)
            return await run(lambda: action(session, form))

        return endpoint

    return [
        Route("/settings", show, methods=["GET"]),
        Route("/settings/signin", signin, methods=["POST"]),
        Route("/settings/google", google, methods=["GET"]),
        Route("/settings/reconnect", posted(pages.reconnect), methods=["POST"]),
        Route("/settings/disconnect", posted(pages.disconnect), methods=["POST"]),
    ]


async def _form(request: Request) -> Mapping[str, str] | None:
    """A small urlencoded form (last value wins), or None past ``_MAX_FORM`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            return None
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
