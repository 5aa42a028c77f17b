"""The French catalogue covers every message, and no template shows text it could not translate.

Two checks: (1) Babel extracts every marked message from the code and the templates; each must
be in the French catalogue, translated, not fuzzy, with the same placeholders; (2) a template's
text outside ``{% trans %}`` / ``_()`` (what a reader would see in English on a French page)
fails, with the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2 import Environment

from lmsync import i18n

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "src" / "lmsync" / "web" / "templates"
PO = ROOT / "src" / "lmsync" / "locale" / "fr_CA" / "LC_MESSAGES" / "messages.po"

# Words a French page shows as they are: names of products and standards, codes, symbols.
SAME_IN_FRENCH = {
    "lmsync", "SCIM", "Moodle", "API", "URL", "ID", "HTTP", "HTTPS", "SSO", "CSV", "JSON",
    "OK", "E.164", "ISO", "MHR", "UTC", "Bulk", "Email", "HR", "N/A",
}  # fmt: skip
# Attributes whose values a reader sees or hears.
VISIBLE_ATTRIBUTES = {"placeholder", "title", "aria-label", "alt", "value", "label"}
PLACEHOLDER = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)[sd]")


def _extracted() -> dict[str, set[str]]:
    """msgid -> the files it comes from."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)  # type: ignore[no-untyped-call]
    found: dict[str, set[str]] = {}
    keywords = {**DEFAULT_KEYWORDS, "_n": (1, 2)}  # as scripts/i18n.sh extracts
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT / "src" / "lmsync"), method_map, options_map, keywords=keywords
    ):
        msgid = message[0] if isinstance(message, tuple) else message  # a plural's key
        if msgid:
            found.setdefault(msgid, set()).add(filename)
    return found


def test_every_marked_message_has_a_french_translation() -> None:
    extracted = _extracted()
    assert len(extracted) > 100, "extraction found almost nothing: is babel.cfg right?"
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="fr_CA")
    problems: list[str] = []
    for msgid, files in sorted(extracted.items()):
        entry = catalog.get(msgid)
        where = ", ".join(sorted(files))
        if entry is None:
            problems.append(f"not in the catalogue (run scripts/i18n.sh): {msgid!r} ({where})")
            continue
        forms = [entry.string] if isinstance(entry.string, str) else list(entry.string or ())
        if not forms or not all(forms) or entry.fuzzy:
            problems.append(f"not translated: {msgid!r} ({where})")
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        # Every form keeps the placeholders, except that a plural's "one" form may say "un"
        # instead of {count}.
        for index, form in enumerate(forms):
            found = set(PLACEHOLDER.findall(form))
            allowed_gone = (
                {"{count}", "%(count)s", "%(num)s"} if index == 0 and len(ids) > 1 else set()
            )
            if not found <= wanted or wanted - found - allowed_gone:
                problems.append(f"placeholders differ: {msgid!r} -> {form!r}")
    assert not problems, "\n".join(problems)


class _VisibleText(HTMLParser):
    """The text of an HTML fragment a reader sees: data and the visible attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.lines: list[int] = []  # the line each part is on
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        kind = dict(attrs).get("type")
        hidden = kind == "hidden"
        # A value is seen on a button-like input only (not on a checkbox, an option...).
        shows_value = tag == "input" and kind in {"submit", "button", "reset"}
        for name, value in attrs:
            if name == "value" and not shows_value:
                continue
            if name in VISIBLE_ATTRIBUTES and value and not hidden:
                self.parts.append(value)
                self.lines.append(self.getpos()[0])

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            first = self.getpos()[0]
            for offset, text in enumerate(data.split("\n")):
                self.parts.append(text)
                self.lines.append(first + offset)


def _untranslated(source: str) -> Iterator[tuple[int, str]]:
    """(line, words) for each piece of template text outside trans blocks and expressions."""
    env = Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
    in_trans = 0
    # The template's markup, without its expressions, statements and trans blocks, parsed as one
    # document: an attribute cut by an expression (``id="f-{{ name }}" type="text"``) stays an
    # attribute. Newlines pad each piece to its line.
    markup: list[str] = []
    line = 1
    for lineno, kind, value in env.lex(source):
        if kind == "name" and value in {"trans", "pluralize"}:
            in_trans += value == "trans"
        elif kind == "name" and value == "endtrans":
            in_trans -= 1
        if kind != "data" or in_trans:
            continue
        if lineno > line:
            markup.append("\n" * (lineno - line))
            line = lineno
        markup.append(value)
        line += value.count("\n")
    parser = _VisibleText()
    parser.feed("".join(markup))
    parser.close()
    for index, part in enumerate(parser.parts):
        words = [
            w
            for w in re.findall(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'.]*", part)
            if w.strip(".") not in SAME_IN_FRENCH
        ]
        if words:
            yield parser.lines[index], " ".join(words)


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_template_text_is_all_marked_for_translation(template: str) -> None:
    found = list(_untranslated((TEMPLATES / template).read_text()))
    assert not found, "\n".join(f"{template}:{line}: {words}" for line, words in found)


def test_the_check_finds_unmarked_text() -> None:
    source = '<h1>Employees</h1><input placeholder="Search"><p>{% trans %}Hi{% endtrans %}</p>'
    assert [w for _, w in _untranslated(source)] == ["Employees", "Search"]
    assert list(_untranslated("<p>{{ _('Save') }} · lmsync</p>")) == []


def test_a_message_is_said_in_the_reader_language() -> None:
    msg = i18n._("Saved.")
    with i18n.using("fr_CA"):
        french = i18n.localize(msg)
    assert msg == "Saved."
    assert french
    assert french != "Saved."
