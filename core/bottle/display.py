"""Make text a bottled agent wrote safe to show in the operator's terminal.

Anything the agent can write is hostile: what it asks the operator for, a
request's host and path, a tool's name and input, and every audit ``reason``
built from them. Shown raw, it drives the terminal: a carriage return and
erase-line makes a request for one host read as one for another, a screen
clear hides pending asks, OSC 52 writes the clipboard, OSC 0/2 the window
title, a newline prints a forged audit line and bidi overrides reorder what
follows. Rich and Textual strip only BEL, BS, VT, FF and CR, and leave ESC.

:func:`terminal_safe` shows every such character as the escape Python's
``repr`` uses (``\\x1b``, ``\\n``, ``\\u202e``), and a backslash as ``\\\\``,
so that no text can pass itself off as another: what the operator reads names
exactly one string, the one they are asked to approve. Newlines are escaped
too, in multi-line fields such as a reason: each shown field stays on its
line. ``--json`` output is not passed through here; its values stay exact
(``json.dumps`` with ``ensure_ascii`` escapes the same characters).
"""

import re

# Printable (letters, category Lo), but draw nothing: an agent's host or
# reason could end in them unseen.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
# The characters that may need escaping: all but printable ASCII other than
# the backslash; each is decided on its own.
_CANDIDATE = re.compile(r"[^ -\[\]-~]")
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def terminal_safe(text: str) -> str:
    """*text* with every character that is not printable shown as an escape.

    Not printable: C0 controls, DEL and C1 controls (category Cc), format
    characters (Cf: bidi controls such as U+202E, zero-width characters,
    U+FEFF, the invisible tag characters U+E0000–U+E007F), line and paragraph
    separators, spaces other than U+0020 (U+00A0 looks like one), surrogates,
    private-use and unassigned code points (what ``str.isprintable`` refuses),
    and the :data:`INVISIBLE_LETTERS`. Runs on every audit row shown, so text
    with none of them (and no backslash) returns at once.
    """
    if text.isprintable() and "\\" not in text and (text.isascii() or INVISIBLE_LETTERS.isdisjoint(text)):
        return text
    return _CANDIDATE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    if char.isprintable() and char not in INVISIBLE_LETTERS:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
