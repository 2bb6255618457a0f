"""README's "What gets reported, and why" checked against the policy's own rules.

The section (between ``<!-- reporting:start -->`` and ``<!-- reporting:end -->``) is
written by hand; these tests hold it to the code: the features the app reports, the
levels it reports them at, the decision order, the budget tiers, the defaults, the auth
signals, the scrubbing rules, the status keys and the backend names.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import app.health
from app.bolna import errors as bolna_errors
from app.main import BUDGET_SYNC_SECONDS
from telemetry import _sentry, error_policy
from telemetry._auth_signals import (
    ALL_FAILING_MESSAGE,
    BURST_MESSAGE,
    FORGED_MESSAGE,
    AuthSignals,
)
from telemetry._backends import BACKENDS
from telemetry.budget import LEVELS, TIER_LIMITS, Budget, BudgetSnapshot, default_max_unsynced
from telemetry.error_policy import PolicyStatus
from telemetry.scrubbing import MAX_STRING_LENGTH, REDACTED, scrub, scrub_text
from telemetry.settings import TelemetrySettings

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- reporting:start -->", "<!-- reporting:end -->"
CAPTURE_FUNCTIONS = {"capture_error", "capture_message", "report_errors"}


def reporting_section() -> str:
    text = (ROOT / "README.md").read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "one pair of reporting markers"
    section = text[text.index(START) + len(START) : text.index(END)]
    assert "## What gets reported, and why" in section
    return section


SECTION = reporting_section()
FLAT = " ".join(SECTION.split())  # line breaks do not matter to a phrase


def subsection(title: str) -> str:
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^### |\Z)", SECTION, re.M | re.S)
    assert match is not None, f"no '### {title}' in the reporting section"
    return match[1]


def table(text: str, first_header: str) -> list[list[str]]:
    """The rows of the Markdown table whose first header cell is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def code(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


# --- what the code reports -----------------------------------------------------------


def _source_files() -> Iterator[Path]:
    for folder in ("app", "telemetry"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "simulator" not in path.parts:
                yield path


def _constants(node: ast.expr) -> list[str]:
    """A string constant, or both branches of ``"a" if ... else "b"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def reported_features_and_levels() -> tuple[set[str], set[tuple[str, str]]]:
    """Features passed as ``feature=`` (or assigned to ``feature``) anywhere in app/ and
    telemetry/, and the (feature, level) pairs of captures with a literal level."""
    features: set[str] = set()
    levels: set[tuple[str, str]] = set()
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "feature" for target in node.targets
            ):
                features.update(_constants(node.value))
            if not isinstance(node, ast.Call):
                continue
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            named = _constants(keywords["feature"]) if "feature" in keywords else []
            if _called_name(node) == "report_errors" and node.args:
                named += _constants(node.args[0])
            features.update(named)
            if _called_name(node) in CAPTURE_FUNCTIONS and "level" in keywords:
                levels.update((f, level) for f in named for level in _constants(keywords["level"]))
    return features, levels


CAPTURE_TABLE = table(subsection("Capture points"), "Feature")


def rows_for(feature: str) -> list[list[str]]:
    return [row for row in CAPTURE_TABLE if code(row[0]) == [feature]]


def test_the_table_lists_exactly_the_features_the_code_reports() -> None:
    features, _ = reported_features_and_levels()
    assert {"call_initiation", "webhook", "credits", "database", "http", "auth"} <= features
    in_table = {name for row in CAPTURE_TABLE for name in code(row[0])}
    assert in_table == features


def test_each_literal_level_in_the_code_is_in_its_features_rows() -> None:
    _, levels = reported_features_and_levels()
    assert ("credits", "fatal") in levels
    for feature, level in levels:
        assert any(level in row[2] for row in rows_for(feature)), (feature, level)


def test_bolna_failures_are_listed_at_the_level_their_class_declares() -> None:
    classes = [
        cls
        for cls in vars(bolna_errors).values()
        if isinstance(cls, type) and issubclass(cls, bolna_errors.BolnaError)
    ]
    for cls in classes:
        if cls is bolna_errors.BolnaError:
            continue
        rows = [row for row in rows_for("call_initiation") if cls.__name__ in code(row[1])]
        assert len(rows) == 1, f"{cls.__name__} should be in one call_initiation row"
        level = rows[0][2]
        assert level == ("none" if cls.expected else cls.level), (cls.__name__, level)


def test_auth_messages_are_listed_with_the_level_they_are_sent_at() -> None:
    source = ast.parse(inspect.getsource(AuthSignals))
    sent_at = {
        node.elts[0].id: str(node.elts[1].value)
        for node in ast.walk(source)
        if isinstance(node, ast.Tuple)
        and len(node.elts) == 3
        and isinstance(node.elts[0], ast.Name)
        and isinstance(node.elts[1], ast.Constant)
    }
    messages = {
        "BURST_MESSAGE": BURST_MESSAGE,
        "FORGED_MESSAGE": FORGED_MESSAGE,
        "ALL_FAILING_MESSAGE": ALL_FAILING_MESSAGE,
    }
    assert sent_at.keys() == messages.keys()
    signals = subsection("Auth signals")
    for name, message in messages.items():
        assert f"`{message}` ({sent_at[name]})" in signals
    assert {sent_at[name] for name in messages} <= set(rows_for("auth")[0][2].split(", "))


def test_auth_signal_thresholds_are_the_defaults() -> None:
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(AuthSignals).parameters.items()
    }
    bullets = {message: line for line in FLAT.split("- `") for message in [line.split("`")[0]]}
    window = f"{defaults['window_seconds']:g} s"
    burst = bullets[BURST_MESSAGE]
    assert f"{defaults['burst_threshold']} times within {window}" in burst
    assert f"once every {defaults['burst_interval_seconds']:g} s" in burst
    assert f"once every {defaults['forged_interval_seconds']:g} s" in bullets[FORGED_MESSAGE]
    failing = bullets[ALL_FAILING_MESSAGE]
    assert f"{defaults['all_failing_threshold']} bad signatures within {window}" in failing
    assert f"once every {defaults['all_failing_interval_seconds']:g} s" in failing


# --- the decision ------------------------------------------------------------------------


def test_the_decision_order_is_the_pipelines() -> None:
    source = ast.parse(inspect.getsource(error_policy.decide))
    returns = sorted(
        (node.lineno, node.args[1].value)
        for node in ast.walk(source)
        if isinstance(node, ast.Call)
        and _called_name(node) == "Decision"
        and isinstance(node.args[1], ast.Constant)
    )
    reasons_in_code = [reason for _, reason in returns]
    assert reasons_in_code[0] == "already_captured" and reasons_in_code[-1] == "ok"
    steps = re.findall(r"^\d+\. `([^`]+)`", subsection("The decision, in order"), re.M)
    assert [step for step in steps if not step.startswith("budget_")] == reasons_in_code
    # The budget's refusal comes between the last drop and "ok", as in the code.
    assert steps.index("budget_<level>") == len(steps) - 2


def test_every_budget_reason_named_is_one_the_budget_gives() -> None:
    budget = Budget(0)
    given = {budget.try_spend(level)[1] for level in LEVELS if TIER_LIMITS[level] is not None}
    assert "budget_unsynced" in inspect.getsource(Budget.try_spend)
    given.add("budget_unsynced")
    named = {word for word in code(SECTION) if word.startswith("budget_")}
    assert named - {"budget_<level>"} <= given
    assert "budget_unsynced" in named


def test_environment_and_dedupe_defaults_are_the_settings() -> None:
    fields = TelemetrySettings.model_fields
    send = fields["send_environments"]
    window = fields["dedupe_window_seconds"]
    assert "TELEMETRY_SEND_ENVIRONMENTS" in str(send.validation_alias)
    assert "TELEMETRY_DEDUPE_WINDOW_SECONDS" in str(window.validation_alias)
    assert f"`TELEMETRY_SEND_ENVIRONMENTS` (default `{send.default}`)" in FLAT
    assert f"`TELEMETRY_DEDUPE_WINDOW_SECONDS` (default {window.default:g} s)" in FLAT


# --- the budget -----------------------------------------------------------------------


def test_the_tiers_are_the_budgets() -> None:
    rows = {code(row[0])[0]: row[1] for row in table(subsection("The monthly budget"), "Level")}
    assert list(rows) == list(LEVELS)
    for level, share in TIER_LIMITS.items():
        if share is None:
            assert rows[level].startswith("always"), level
        else:
            assert rows[level] == f"{share:.0%}", level


def test_the_budget_defaults_and_sharing_are_as_described() -> None:
    monthly = TelemetrySettings.model_fields["error_budget_monthly"].default
    assert f"`ERROR_BUDGET_MONTHLY` (default {monthly})" in FLAT
    assert f"every {BUDGET_SYNC_SECONDS:g} s" in FLAT
    assert "max(10, 2% of the month)" in FLAT
    for month in (0, 100, 499, 500, 5000, 123_456):
        assert default_max_unsynced(month) == max(10, month * 2 // 100)
    assert f"({default_max_unsynced(monthly)} at the default {monthly};" in FLAT


# --- scrubbing, status, backends ----------------------------------------------------------


def test_the_scrubbing_rules_hold() -> None:
    rules = subsection("Personal data")
    [secrets_rule] = [line for line in rules.split("\n- ") if "naming a secret" in line]
    keys = [word for word in code(secrets_rule) if word.isidentifier()]
    assert len(keys) >= 7
    assert scrub({key: "value" for key in keys}) == {key: REDACTED for key in keys}
    for raw, clean in re.findall(r"`([^`]+)` becomes `([^`]+)`", rules):
        assert scrub_text(raw) == clean
    transcript = re.search(r"`\[transcript: (\d+) chars\]`", rules)
    assert transcript is not None
    text = "x" * int(transcript[1])
    assert scrub({"transcript": text}) == {"transcript": transcript[0].strip("`")}
    assert f"cut at {MAX_STRING_LENGTH} characters" in " ".join(rules.split())
    init = inspect.getsource(_sentry.init_sentry)
    for option in ("send_default_pii=False", "include_local_variables=False"):
        assert option in init
    assert "default_integrations=False" in init


def test_the_status_keys_are_what_status_returns() -> None:
    text = subsection("Checking the budget")
    named = {word for word in code(text) if re.fullmatch(r"[a-z_]+", word)}
    expected = (
        set(PolicyStatus.__required_keys__)
        | set(BudgetSnapshot.__required_keys__)
        | {"traces_exporters", "telemetry"}
    )
    assert named == expected
    assert "telemetry.status()" in inspect.getsource(app.health)
    assert "telemetry status" in (ROOT / "app" / "__main__.py").read_text()
    assert "`python -m app telemetry status`" in text


def test_the_backends_are_the_registered_ones() -> None:
    text = subsection("Switching backends")
    assert {code(row[0])[0] for row in table(text, "Backend")} == set(BACKENDS)
    with_dsn = TelemetrySettings(_env_file=None, sentry_dsn="https://k@sentry.invalid/1")
    without = TelemetrySettings(_env_file=None, sentry_dsn="")
    assert (
        f"it is `{with_dsn.resolved_error_backend}` when `SENTRY_DSN` is set "
        f"and `{without.resolved_error_backend}` otherwise" in " ".join(text.split())
    )


@pytest.mark.parametrize("name", ["TELEMETRY_ERROR_BACKEND", "ERROR_BUDGET_MONTHLY", "SENTRY_DSN"])
def test_the_variables_named_are_settings(name: str) -> None:
    aliases = " ".join(str(f.validation_alias) for f in TelemetrySettings.model_fields.values())
    assert name in aliases and f"`{name}`" in SECTION
