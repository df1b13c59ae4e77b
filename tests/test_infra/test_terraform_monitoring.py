"""infra/terraform/monitoring.tf against the code and the runbook: every message a log-based
metric matches is one the code logs word for word, every label it extracts is a field those log
calls write, and every alert has a runbook line in infra/README.md's "Alerts" table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from tests_support.terraform import ROOT, Parsed, locals_, resources

from publishers.apply import ApplyOutcome

PACKAGES = ("accounts", "confsync", "ingest", "processors", "publishers")
LOG_CALL = re.compile(r'log\.\w+\(\s*("(?:[^"\\\n]|\\.)*")')
DEF = re.compile(r"^\s*def ", re.MULTILINE)


def _call_end(text: str, start: int) -> int:
    """The index after the parenthesis that closes the call opened at or after ``start``."""
    depth = 0
    for index in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index + 1
    raise AssertionError(f"unclosed call at {start}")


def logged() -> dict[str, list[str]]:
    """Each message the code logs -> the fields each call that logs it can write (the call's text,
    and its function's text where the call spreads a dict of fields)."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for match in LOG_CALL.finditer(text):
                call = text[match.start() : _call_end(text, match.start())]
                defs = [d.start() for d in DEF.finditer(text, 0, match.start())]
                context = text[defs[-1] if defs else 0 : match.start()] + call if "**" in call else call
                found.setdefault(json.loads(match.group(1)), []).append(context)
    # publishers/apply.py logs "command applied", else f"command {outcome.value}"
    (applied,) = found["command applied"]
    for outcome in ApplyOutcome:
        found.setdefault(f"command {outcome.value}", [applied])
    return found


def matched_messages(filter_text: str, messages: set[str]) -> Iterator[tuple[str, set[str]]]:
    """(the filter's term, the logged messages it matches) for each jsonPayload.message term."""
    for term in re.findall(r"jsonPayload\.message=\(([^)]*)\)", filter_text):
        for message in re.findall(r'"([^"]+)"', term):
            yield message, {message} & messages
    for message in re.findall(r'jsonPayload\.message="([^"]+)"', filter_text):
        yield message, {message} & messages
    for pattern in re.findall(r'jsonPayload\.message=~"([^"]+)"', filter_text):
        yield pattern, {m for m in messages if re.search(pattern, m)}


def extracted_field(extractor: str) -> str:
    field = re.fullmatch(r'(?:EXTRACT\(jsonPayload\.(\w+)\)|REGEXP_EXTRACT\(jsonPayload\.(\w+), "[^"]+"\))', extractor)
    assert field is not None, f"not an extractor of a log field: {extractor}"
    return field.group(1) or field.group(2)


def writes(call: str, field: str) -> bool:
    return field == "message" or re.search(rf"\b{field}=", call) is not None or f'"{field}":' in call


def test_the_log_metrics_match_lines_the_code_logs_and_their_labels_are_fields_of_them(parsed: Parsed) -> None:
    code = logged()
    metrics = locals_(parsed)["log_metrics"]
    assert {"notifications", "listings", "commands", "provider_errors", "breaker_openings", "dead_letters"} <= set(
        metrics
    )
    assert {"disconnected_calendars", "failed_watches", "failed_creates"} <= set(metrics)
    for name, metric in metrics.items():
        terms = list(matched_messages(metric["filter"], set(code)))
        assert terms, f"{name}: its filter matches no jsonPayload.message"
        for term, messages in terms:
            assert messages, f"{name}: nothing logs {term!r}"
        every = set.union(*(messages for _, messages in terms))
        for key, label in metric["labels"].items():
            field = extracted_field(label["extract"])
            having = {message for message in every if any(writes(call, field) for call in code[message])}
            # a label some lines leave empty says so in its description
            expected = having if "empty for" in label["about"] and having else every
            assert having == expected, f"{name}: {sorted(every - having)} write no {field} (label {key})"
    # every way a command settles is counted
    settled = dict(matched_messages(metrics["commands"]["filter"], set(code)))
    assert set.union(*settled.values()) >= {f"command {outcome.value}" for outcome in ApplyOutcome} | {
        "command applied"
    }
    # the oldest lag: a distribution of the lag repair's oldest_lag_s
    lag = resources(parsed)["google_logging_metric.sync_lag"]
    ((_, messages),) = matched_messages(lag["filter"], set(code))
    assert messages == {"lag repaired"}
    assert lag["value_extractor"] == "EXTRACT(jsonPayload.oldest_lag_s)"
    assert any(writes(call, "oldest_lag_s") for call in code["lag repaired"])


def test_the_checks_above_catch_a_reworded_message_and_a_missing_field() -> None:
    code = logged()
    ((_, messages),) = matched_messages('jsonPayload.message="circuit is open"', set(code))
    assert messages == set()
    assert not any(writes(call, "status") for call in code["circuit opened"])
    assert all(writes(call, "status") for call in code["conferencing API call failed"])


def runbook() -> dict[str, str]:
    """Alert display name (after "confsync: ") -> what to do, from infra/README.md's Alerts table."""
    readme = (ROOT / "infra" / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| confsync: ")]
    return {row[0].removeprefix("| confsync: "): row[-1].removesuffix(" |") for row in rows}


def test_every_alert_has_a_runbook_line(parsed: Parsed) -> None:
    found = locals_(parsed)
    alerts = set(found["log_alerts"]) | {"sync_lag"} | set(found["pubsub_alerts"])
    lines = runbook()
    assert set(lines) == {name.replace("_", " ") for name in alerts}
    for name, what_to_do in lines.items():
        assert len(what_to_do) > 80, f"the runbook line of {name} says too little"
        assert "`" in what_to_do, f"the runbook line of {name} names nothing to run or look at first"
    # each log alert counts a metric that exists
    metrics = found["log_metrics"]
    for name, alert in found["log_alerts"].items():
        assert alert["metric"] in metrics, name
        label = re.fullmatch(r'(?:metric\.label\.(\w+)="[^"]+")?', alert["where"])
        assert label is not None, f"{name}: where {alert['where']!r}"
        assert label.group(1) is None or label.group(1) in metrics[alert["metric"]]["labels"], name
