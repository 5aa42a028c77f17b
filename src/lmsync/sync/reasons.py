"""Stored texts of the sync said again in the reader's language.

A run's outcome reasons, an employee's LMS state reason and a run's message are stored in
English (they are read later, by whoever opens the page, in their own language). Each one the
sync writes is in the catalogue: the fixed ones as they are (marked ``N_`` where they are
written), the ones with parameters as a template (``"changed: {fields}"``). :func:`stored` turns
a stored text back into a :class:`~lmsync.i18n.Msg`, so that ``i18n.localize`` / ``i18n.text``
and the templates say it in the current language; a text it does not know (what an LMS
answered, a connector's error, several messages joined) stays as stored.
"""

from __future__ import annotations

import re
from functools import cache

from lmsync.i18n import Msg
from lmsync.sync import engine, guard, lease, recovery, rules

# The stored texts with parameters, as written by the sync (``TEMPLATE.format(...)``).
TEMPLATES: tuple[str, ...] = (
    rules.SEVERAL_USERS,
    rules.LINKED_ELSEWHERE,
    rules.CHANGED,
    engine.LOOKUP_FAILED,
    engine.LEFT_FOR_NEXT_RUN,
    engine.NOTHING_WENT_THROUGH,
    engine.INTERNAL_ERROR,
    guard.JOINED,
    guard.ABOVE_THRESHOLD,
    recovery.INTERRUPTED_RESUMED,
)
# Fixed stored texts that are not a rule's reason (those are found by the catalogue anyway);
# listed so that a test can check the catalogue holds every one.
FIXED: tuple[str, ...] = (
    engine.EXISTS_NOT_FOUND,
    engine.GONE_DROPPED,
    engine.GONE_SEVERAL,
    engine.GONE_CREATED,
    engine.HELD,
    engine.SEE_OUTCOMES,
    lease.LOST,
    recovery.INTERRUPTED_DUE,
)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@cache
def _patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    """Each template as a pattern whose groups are its parameters."""
    out = []
    for template in TEMPLATES:
        parts = _PLACEHOLDER.split(template)  # text, name, text, name, ..., text
        pattern = "".join(
            re.escape(part) if n % 2 == 0 else f"(?P<{part}>.+?)" for n, part in enumerate(parts)
        )
        out.append((re.compile(pattern, re.S), template))
    return tuple(out)


def stored(text: str | None) -> str | None:
    """``text`` (a stored reason or run message) as a Msg the reader's language can say: itself
    when it is a fixed text (the catalogue translates it, or leaves it English), or its template
    with the stored parameters; a parameter that is itself a stored reason (the commonest failure
    of a run) is said again too."""
    if not text:
        return text
    for pattern, template in _patterns():
        found = pattern.fullmatch(text)
        if found:
            params = {name: stored(value) for name, value in found.groupdict().items()}
            return Msg(template, **params)
    return Msg(text)
