"""Text from the store as it is safe to show: on a terminal, in a Markdown file, in the TUI.

A run's name, note and tags are whatever a user (or a bundle from another machine) put
there, and a terminal obeys the control characters in them: `ESC [2J` clears the screen,
`ESC ] 0;...BEL` retitles the window, a carriage return overwrites the line before it.
`shown` writes every control character as a visible escape (`\\x1b`, `\\r`, `\\u202e`) so
that the text is seen, never obeyed; the store keeps the original. JSON output needs no
help (json escapes them). Imports nothing: any layer may use it.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (U+009B is a one-character CSI on some terminals), and the
# format characters that reorder or hide text (bidirectional overrides and isolates, the
# Arabic letter mark, line and paragraph separators).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def shown(text: object, *, newlines: bool = False) -> str:
    """`text` with every control character written as a visible escape. `newlines` keeps
    line breaks (a note shown as a paragraph); elsewhere a break is `\\n` too, so a name
    stays one line."""
    text = str(text)
    if not _UNSAFE.search(text):
        return text
    if newlines:
        text = text.replace("\r\n", "\n")
        return _UNSAFE.sub(lambda m: m.group() if m.group() == "\n" else _escape(m.group()),
                           text)
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)
