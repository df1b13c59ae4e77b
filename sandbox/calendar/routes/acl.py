"""Sharing over HTTP: a calendar's ACL (https://developers.google.com/calendar/api/v3/reference/acl)
and the caller's calendar list (https://developers.google.com/calendar/api/v3/reference/calendarList).

``calendars/{calendarId}/acl``: list (GET) and insert (POST); ``calendars/{calendarId}/acl/{ruleId}``:
get, update (PUT), patch (PATCH) and delete. Rules have user scopes only (``user:EMAIL``); the
calendar's owner is listed first with the owner role and cannot be changed. Writers may read
the ACL, owners change it. ``users/me/calendarList`` lists the calendars the caller owns or is
shared (every share is in the list, as if accepted); ``users/me/calendarList/{calendarId}``
gets one. Without auth the caller is the default owner and nothing is checked.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.calendar.access import ACL_READ, ACL_WRITE, LIST_READ, Role, acl_rule, check, etag, is_email
from sandbox.calendar.errors import GoogleError, bad_request, not_found
from sandbox.calendar.serving import CalendarSandbox, api, calendar_for, json_answer, read_body
from sandbox.identity import Principal

__all__ = ["sharing_routes"]

_ACL = "/calendar/v3/calendars/{calendarId}/acl"
_LIST = "/calendar/v3/users/me/calendarList"


def sharing_routes(sandbox: CalendarSandbox) -> list[Route]:
    model = sandbox.model

    def rules_of(calendar_id: str) -> dict[str, Role]:
        return dict(model.acl(calendar_id))

    async def acl(request: Request, principal: Principal | None) -> Response:
        if request.method == "GET":
            calendar_id = calendar_for(sandbox, request, principal, ACL_READ)
            items = [acl_rule(email, role) for email, role in model.acl(calendar_id)]
            return json_answer({"kind": "calendar#acl", "etag": etag("acl", *map(str, items)), "items": items})
        calendar_id = calendar_for(sandbox, request, principal, ACL_WRITE)
        body = await read_body(request)
        email, role = _rule_body(body)
        _refuse_owner_change(email, principal, rules_of(calendar_id))
        model.grant(calendar_id, email, role)
        return json_answer(acl_rule(email, role))

    async def one_rule(request: Request, principal: Principal | None) -> Response:
        need = ACL_READ if request.method == "GET" else ACL_WRITE
        calendar_id = calendar_for(sandbox, request, principal, need)
        rules = rules_of(calendar_id)
        email = _rule_email(request.path_params["ruleId"])
        if email is None or email not in rules:
            raise not_found()
        if request.method == "GET":
            return json_answer(acl_rule(email, rules[email]))
        _refuse_owner_change(email, principal, rules)
        if request.method == "DELETE":
            model.revoke(calendar_id, email)
            return Response(status_code=204)
        body = await read_body(request)
        if request.method == "PATCH" and isinstance(body, dict):
            body = {"role": rules[email].wire, "scope": {"type": "user", "value": email}, **body}
        scope_email, role = _rule_body(body)
        if scope_email != email:
            raise bad_request("The scope of an ACL rule cannot be changed.", location="scope")
        model.grant(calendar_id, email, role)
        return json_answer(acl_rule(email, role))

    async def calendar_list(request: Request, principal: Principal | None) -> Response:
        email = _caller(sandbox, principal)
        floor = request.query_params.get("minAccessRole", "freeBusyReader")
        minimum = Role.parse(floor)
        if minimum is None or minimum is Role.NONE:
            raise bad_request(f"Invalid value for minAccessRole: {floor}", location="minAccessRole")
        calendars = model.calendars_of(email)
        items = [_entry(cid, role, email) for cid, role in sorted(calendars.items()) if role >= minimum]
        items.sort(key=lambda item: not item.get("primary", False))
        return json_answer(
            {"kind": "calendar#calendarList", "etag": etag("calendarList", *map(str, items)), "items": items}
        )

    async def calendar_list_entry(request: Request, principal: Principal | None) -> Response:
        email = _caller(sandbox, principal)
        calendar_id = model.resolve(request.path_params["calendarId"], email)
        role = model.calendars_of(email).get(calendar_id)
        if role is None:
            raise not_found()
        return json_answer(_entry(calendar_id, role, email))

    return [
        Route(_ACL, api(sandbox, acl), methods=["GET", "POST"]),
        Route(f"{_ACL}/{{ruleId}}", api(sandbox, one_rule), methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(_LIST, api(sandbox, calendar_list), methods=["GET"]),
        Route(f"{_LIST}/{{calendarId}}", api(sandbox, calendar_list_entry), methods=["GET"]),
    ]


def _caller(sandbox: CalendarSandbox, principal: Principal | None) -> str:
    if principal is None:
        return sandbox.model.default_owner
    check(LIST_READ, Role.NONE, principal.scopes)
    return principal.email


def _rule_body(body: Any) -> tuple[str, Role]:
    """The (user email, role) an AclRule body asks for; 400 as Google's for what it cannot be."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be an AclRule resource.")
    scope = body.get("scope")
    if not isinstance(scope, dict):
        raise GoogleError(400, "required", "Missing scope.", location="scope")
    kind = scope.get("type", "default")
    if kind != "user":
        raise bad_request(f"Scope type {kind!r} is not supported by the sandbox (only 'user').", location="scope.type")
    value = scope.get("value")
    if not is_email(value):
        raise bad_request("Invalid scope value.", location="scope.value")
    if "role" not in body:
        raise GoogleError(400, "required", "Missing role.", location="role")
    role = Role.parse(body["role"])
    if role is None or role is Role.NONE:
        raise bad_request(f"Invalid role: {body['role']!r}.", location="role")
    return str(value).lower(), role


def _rule_email(rule_id: str) -> str | None:
    kind, sep, value = rule_id.partition(":")
    return value.lower() if sep and kind == "user" and value else None


def _refuse_owner_change(email: str, principal: Principal | None, rules: dict[str, Role]) -> None:
    """Google refuses to change the calendar owner's rule, and a caller's own rule."""
    owner = next(iter(rules))  # model.acl lists the owner first
    if email == owner:
        raise GoogleError(403, "cannotChangeOwnerAcl", "Cannot change the owner's access level.", domain="calendar")
    if principal is not None and email == principal.email.lower():
        raise GoogleError(403, "cannotChangeOwnAcl", "Cannot change your own access level.", domain="calendar")


def _entry(calendar_id: str, role: Role, caller: str) -> dict[str, Any]:
    """Google's CalendarListEntry, with the fields the sandbox knows."""
    entry: dict[str, Any] = {
        "kind": "calendar#calendarListEntry",
        "etag": etag("calendarListEntry", calendar_id, role.wire),
        "id": calendar_id,
        "summary": calendar_id,
        "timeZone": "UTC",
        "accessRole": role.wire,
        "defaultReminders": [],
    }
    if calendar_id.lower() == caller.lower():
        entry["primary"] = True
    return entry
