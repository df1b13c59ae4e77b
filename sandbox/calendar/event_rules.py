"""What makes an event resource valid, and how a write changes one: Google's patch merge and
conferenceData (https://developers.google.com/calendar/api/v3/reference/events,
https://developers.google.com/calendar/api/guides/create-events#conferencing).

Pure functions over the resource dict; they raise GoogleError as Calendar would.
"""

from __future__ import annotations

import copy
import secrets
from datetime import UTC, datetime
from typing import Any

from sandbox.calendar.errors import GoogleError, bad_request
from sandbox.calendar.recurrence import Series, parse_event_time

__all__ = [
    "MAX_ADDITIONAL_GUESTS",
    "MAX_COMMENT",
    "RESPONSE_STATUSES",
    "apply_conference",
    "json_object",
    "merge",
    "utc",
    "validate",
]

RESPONSE_STATUSES = ("needsAction", "declined", "tentative", "accepted")
MAX_COMMENT = 8192  # characters of an attendee's comment
MAX_ADDITIONAL_GUESTS = 100


def utc(value: dict[str, Any]) -> datetime:
    parsed = parse_event_time(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def json_object(body: object) -> dict[str, Any]:
    """A request body that must be a JSON object (events and channels alike)."""
    if not isinstance(body, dict):
        raise GoogleError(400, "badRequest", "The request body must be a JSON object.")
    return body


def merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Google's patch: named fields replace, nested objects merge, null clears, arrays replace.

    start, end and conferenceData replace wholesale (a date and a dateTime never mix)."""
    result = copy.deepcopy(current)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict) and key not in ("start", "end"):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def apply_conference(resource: dict[str, Any], body: dict[str, Any], cdv: int, previous: object) -> None:
    """conferenceData is written only with conferenceDataVersion=1; otherwise the old one stays."""
    if cdv != 1 or "conferenceData" not in body:
        if previous is not None:
            resource["conferenceData"] = copy.deepcopy(previous)
        else:
            resource.pop("conferenceData", None)
        return
    data = body["conferenceData"]
    if data is None:
        resource.pop("conferenceData", None)
        return
    if not isinstance(data, dict):
        raise bad_request("Invalid conference data.", location="conferenceData")
    resource["conferenceData"] = _with_created_conference(copy.deepcopy(data))


def _with_created_conference(data: dict[str, Any]) -> dict[str, Any]:
    """A createRequest for Google Meet is answered at once, as Calendar does; others stay as sent."""
    request = data.get("createRequest")
    if not isinstance(request, dict):
        return data
    kind = (request.get("conferenceSolutionKey") or {}).get("type")
    if kind != "hangoutsMeet":
        raise bad_request(f"Invalid conference type value: {kind}.", location="conferenceData.createRequest")
    code = "-".join(secrets.token_hex(2)[:n] for n in (3, 4, 3)).translate(str.maketrans("0123456789", "abcdefghij"))
    data.update(
        {
            "conferenceId": code,
            "conferenceSolution": {
                "key": {"type": "hangoutsMeet"},
                "name": "Google Meet",
                "iconUri": "https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/web-512dp/logo_meet_2020q4_color_2x_web_512dp.png",
            },
            "entryPoints": [
                {
                    "entryPointType": "video",
                    "uri": f"https://meet.google.com/{code}",
                    "label": f"meet.google.com/{code}",
                }
            ],
        }
    )
    request["status"] = {"statusCode": "success"}
    return data


def validate(resource: dict[str, Any]) -> None:
    """The whole resource, as it would be stored; raises GoogleError as Calendar would."""
    for key in ("summary", "description", "location"):
        if key in resource and not isinstance(resource[key], str):
            raise bad_request(f"Invalid value for {key}.", location=key)
    if resource.get("status") not in ("confirmed", "tentative", "cancelled"):
        raise bad_request("Invalid value for status.", location="status")
    start = _event_time(resource.get("start"), "start")
    end = _event_time(resource.get("end"), "end")
    if ("date" in resource["start"]) != ("date" in resource["end"]):
        raise bad_request("Start and end must both be dates or both be date-times.")
    if end < start:
        raise GoogleError(400, "timeRangeEmpty", "The specified time range is empty.", location="end.dateTime")
    attendees = resource.get("attendees", [])
    if not isinstance(attendees, list) or not all(
        isinstance(item, dict) and isinstance(item.get("email"), str) and "@" in item["email"] for item in attendees
    ):
        raise bad_request("Invalid attendee email.", location="attendees")
    for item in attendees:
        _check_answer(item)
    if "reminders" in resource and not isinstance(resource["reminders"], dict):
        raise bad_request("Invalid value for reminders.", location="reminders")
    recurrence = resource.get("recurrence")
    if recurrence is not None:
        if not isinstance(recurrence, list) or not all(isinstance(line, str) for line in recurrence):
            raise bad_request("Invalid recurrence rule.", location="recurrence")
        if recurrence:
            Series(resource)
    props = resource.get("extendedProperties", {})
    if not isinstance(props, dict) or not all(
        isinstance(props.get(scope, {}), dict) and all(isinstance(v, str) for v in props.get(scope, {}).values())
        for scope in ("private", "shared")
    ):
        raise bad_request("Invalid extended properties.", location="extendedProperties")


def _check_answer(attendee: dict[str, Any]) -> None:
    """An attendee's answer: one of Google's response statuses, a bounded comment and guest count."""
    status = attendee.get("responseStatus", "needsAction")
    if status not in RESPONSE_STATUSES:
        raise bad_request(f"Invalid attendee responseStatus: {str(status)[:64]}", location="attendees.responseStatus")
    comment = attendee.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise bad_request(
            f"Invalid attendee comment: a string of at most {MAX_COMMENT} characters.", location="attendees.comment"
        )
    guests = attendee.get("additionalGuests", 0)
    if isinstance(guests, bool) or not isinstance(guests, int) or not 0 <= guests <= MAX_ADDITIONAL_GUESTS:
        raise bad_request(
            f"Invalid attendee additionalGuests: an integer from 0 to {MAX_ADDITIONAL_GUESTS}.",
            location="attendees.additionalGuests",
        )


def _event_time(value: object, name: str) -> datetime:
    if not isinstance(value, dict):
        missing = "Missing end time." if name == "end" else "Missing start time."
        raise GoogleError(400, "required", missing, location=name)
    if ("date" in value) == ("dateTime" in value):
        raise bad_request(f"Exactly one of {name}.date and {name}.dateTime is required.", location=name)
    if "dateTime" in value and not value.get("timeZone") and _naive(value["dateTime"]):
        raise GoogleError(400, "required", f"Missing time zone definition for {name} time.", location=name)
    if "date" in value and len(str(value["date"])) != len("YYYY-MM-DD"):
        raise bad_request(f"Invalid {name} time.", location=name)
    try:
        return utc(value)
    except (ValueError, TypeError) as err:
        raise bad_request(f"Invalid {name} time.", location=name) from err


def _naive(text: object) -> bool:
    """Whether a dateTime parses but carries no offset (then a timeZone must say where)."""
    try:
        return datetime.fromisoformat(str(text)).tzinfo is None
    except ValueError:
        return False
