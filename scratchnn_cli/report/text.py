"""Text that came from data (class names, column names, run names, config values) shown in a
terminal: printed literally, never as Rich markup, and with its control characters made visible,
so that a CSV's ``ESC]0;...BEL`` cannot retitle the terminal or ``ESC[2J`` clear it.

``printable`` is for plain strings (messages, lines); ``cell`` for Rich table cells and titles.
HTML pages are escaped by Jinja2's autoescape and plot labels by ``plots.literal``.
"""

from __future__ import annotations

from rich.text import Text

#: Unicode's bidirectional overrides and isolates: they reorder what follows them on the line
#: (a name could make a score read backwards), so they are shown as escapes too.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

#: Every C0 and C1 control character and DEL, and the bidi controls, each to its Python escape
#: (``\x1b``, ``\n``, ``\u202e``), so the reader sees what is there.
_ESCAPES = {
    code: ascii(chr(code))[1:-1] for code in [*range(0x20), *range(0x7F, 0xA0), *map(ord, _BIDI)]
}


def printable(text: object) -> str:
    """``str(text)`` with its control characters written as escapes (``a\\x1bb`` for a, ESC, b)."""
    return str(text).translate(_ESCAPES)


def cell(text: object) -> Text:
    """A Rich ``Text`` of ``printable(text)``: shown as written, never parsed as markup."""
    return Text(printable(text))
