"""E.164 phone numbers."""

from __future__ import annotations

import re

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_e164(value: str) -> str | None:
    """The number in E.164 form, or None when it is not one (separators are tolerated)."""
    candidate = _SEPARATORS.sub("", value.strip())
    return candidate if _E164.match(candidate) else None
