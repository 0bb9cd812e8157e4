"""A line editor for the terminal, run on the event loop: what ``ws connect`` and ``ws listen`` type into.

Why not GNU readline through ``input()``: that blocks a thread inside
readline, and Python's ``readline`` module offers no safe way to redraw a
half-typed line from another thread when a message arrives.  Reading keys
on the loop (as Node's readline does for wscat) lets the printer put a
message above the line and draw the line again, cursor where it was.

``KeyDecoder`` turns terminal bytes into ``Key`` objects, ``LineBuffer`` edits
one line (with history and Ctrl-R search), ``visible_window`` scrolls a long
line sideways, ``LineEditor`` ties them to the terminal, ``HistoryFile``
keeps the history between sessions (opt-in).
"""

from __future__ import annotations

import asyncio
import codecs
import os
import signal
import time
import unicodedata
from typing import Any, Callable, NamedTuple, Sequence, TextIO

__all__ = ["Key", "KeyDecoder", "LineBuffer", "LineEditor", "HistoryFile", "visible_window"]


class Key(NamedTuple):
    """One key (or a run of typed text, ``name == 'insert'``) decoded from the terminal."""

    name: str
    text: str = ""


# Control characters and what they do (readline's / Node's bindings).
_CONTROL_KEYS = {
    "\r": "enter", "\n": "enter", "\x7f": "backspace", "\x08": "backspace",
    "\x01": "home", "\x05": "end", "\x02": "left", "\x06": "right", "\x10": "up", "\x0e": "down",
    "\x03": "interrupt", "\x04": "eof", "\x0b": "kill-end", "\x15": "kill-start", "\x17": "kill-word",
    "\x19": "yank", "\x0c": "clear-screen", "\x12": "search", "\x07": "cancel",
}
# The final byte of CSI / SS3 sequences (ESC [ A, ESC O A) and of ESC [ n ~.
_ARROW_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end"}
_TILDE_KEYS = {"1": "home", "7": "home", "4": "end", "8": "end", "3": "delete"}
# Alt (Meta) + key, sent as ESC + key.
_META_KEYS = {"b": "word-left", "B": "word-left", "f": "word-right", "F": "word-right", "d": "kill-word-right",
              "D": "kill-word-right", "\x7f": "kill-word-left", "\x08": "kill-word-left"}


class KeyDecoder:
    """Terminal bytes -> keys.  Escape sequences become keys or nothing, never text in the message."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # an escape sequence cut by the end of a read
        self._after_cr = False  # "\r\n" is one Enter

    def feed(self, data: bytes) -> list[Key]:
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        keys: list[Key] = []
        run: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            after_cr, self._after_cr = self._after_cr, ch == "\r"
            if ch >= " " and ch != "\x7f" and not "\x80" <= ch < "\xa0" or ch == "\t":
                run.append(ch)
                i += 1
                continue
            if run:
                keys.append(Key("insert", "".join(run)))
                run = []
            if ch == "\x1b":
                end, key = self._escape(text, i)
                if end is None:
                    self._pending = text[i:]
                    break
                if key is not None:
                    keys.append(key)
                i = end
                continue
            if not (ch == "\n" and after_cr) and ch in _CONTROL_KEYS:
                keys.append(Key(_CONTROL_KEYS[ch]))
            i += 1
        if run:
            keys.append(Key("insert", "".join(run)))
        return keys

    @staticmethod
    def _escape(text: str, i: int) -> tuple[int | None, Key | None]:
        """``(end, key)`` for the sequence at ``text[i]`` (an ESC); ``end is None``: not complete yet."""
        if i + 1 >= len(text):
            return None, None
        kind = text[i + 1]
        if kind == "[":
            j = i + 2
            while j < len(text) and "\x20" <= text[j] <= "\x3f":
                j += 1
            if j >= len(text):
                return None, None
            params, final = text[i + 2 : j].split(";"), text[j]
            modifier = params[1] if len(params) > 1 else ""
            if final in "CD" and modifier in ("3", "5"):  # Alt/Ctrl + arrow: by words
                return j + 1, Key("word-right" if final == "C" else "word-left")
            if final == "~":
                name = _TILDE_KEYS.get(params[0])
            else:
                name = _ARROW_KEYS.get(final)
            return j + 1, (Key(name) if name else None)
        if kind == "O":
            if i + 2 >= len(text):
                return None, None
            name = _ARROW_KEYS.get(text[i + 2])
            return i + 3, (Key(name) if name else None)
        if kind in _META_KEYS:
            return i + 2, Key(_META_KEYS[kind])
        if kind < " " or kind == "\x1b":
            return i + 1, None  # a lone Escape: drop it, keep the key after it (Enter after Esc still sends)
        return i + 2, None  # Alt + a key we do not bind: nothing


class _Search(NamedTuple):
    """A Ctrl-R search in progress: what is typed, which match (0: the newest line), the line before it."""

    query: str
    match: int
    failed: bool
    text: str
    cursor: int


class LineBuffer:
    """The line being typed, its cursor, the history and the last kill.  No I/O, so every key is testable.

    ``apply(key)`` edits and returns ``None``, or returns what the caller
    acts on: ``('line', text)`` for Enter, ``('eof', '')`` for Ctrl-D on an
    empty line, ``('interrupt', '')`` for Ctrl-C, ``('clear-screen', '')``.
    ``on_history`` is called with each line added to the history (to save it).
    """

    def __init__(self, history_size: int = 1000, on_history: Callable[[str], None] | None = None) -> None:
        self.text = ""
        self.cursor = 0
        self.history: list[str] = []
        self.history_size = history_size
        self.on_history = on_history
        self._index = 0  # where Up/Down are in the history; len(history): the line being typed
        self._draft = ""  # the line being typed, kept while browsing the history
        self._killed = ""
        self._search: _Search | None = None
        self._last_query = ""

    def load_history(self, lines: Sequence[str]) -> None:
        """Lines of earlier sessions, oldest first (blank ones and repeats skipped, the newest kept)."""
        for line in lines:
            if line.strip() and (not self.history or self.history[-1] != line):
                self.history.append(line)
        del self.history[: -self.history_size]
        self._index = len(self.history)

    @property
    def prompt(self) -> str | None:
        """The prompt during a Ctrl-R search (``None``: the usual one)."""
        if self._search is None:
            return None
        return f"({'failed ' if self._search.failed else ''}reverse-i-search)`{self._search.query}': "

    def apply(self, key: Key) -> tuple[str, str] | None:
        if self._search is not None and self._searching(key):
            return None
        name, text, cursor = key.name, self.text, self.cursor
        if name == "insert":
            self._set(text[:cursor] + key.text + text[cursor:], cursor + len(key.text))
        elif name == "enter":
            line = text
            if line.strip() and (not self.history or self.history[-1] != line):
                self.history.append(line)
                del self.history[: -self.history_size]
                if self.on_history is not None:
                    self.on_history(line)
            self._index, self._draft = len(self.history), ""
            self._set("", 0)
            return ("line", line)
        elif name == "search":
            self._search = _Search("", -1, False, text, cursor)
        elif name in ("eof", "delete"):
            if name == "eof" and not text:
                return ("eof", "")
            self._set(text[:cursor] + text[cursor + 1 :], cursor)
        elif name in ("interrupt", "clear-screen"):
            return (name, "")
        elif name == "backspace":
            if cursor:
                self._set(text[: cursor - 1] + text[cursor:], cursor - 1)
        elif name in ("left", "right", "home", "end", "word-left", "word-right"):
            self.cursor = self._moved(name)
        elif name in ("up", "down"):
            self._browse(-1 if name == "up" else 1)
        elif name in ("kill-end", "kill-start", "kill-word", "kill-word-left", "kill-word-right"):
            start, end = {
                "kill-end": (cursor, len(text)),
                "kill-start": (0, cursor),
                "kill-word": (self._word_start(cursor, str.isspace), cursor),
                "kill-word-left": (self._moved("word-left"), cursor),
                "kill-word-right": (cursor, self._moved("word-right")),
            }[name]
            if end > start:
                self._killed = text[start:end]
                self._set(text[:start] + text[end:], start)
        elif name == "yank" and self._killed:
            self.apply(Key("insert", self._killed))
        return None

    def _set(self, text: str, cursor: int) -> None:
        self.text, self.cursor = text, cursor

    def _searching(self, key: Key) -> bool:
        """Ctrl-R as readline's: True when the key belonged to the search.

        Typing narrows it, Ctrl-R goes to the next older match, Backspace
        edits the query, Ctrl-G puts back the line typed before; any other key
        keeps the match as the line and does what it does (Enter sends it).
        """
        search = self._search
        assert search is not None
        if key.name == "search":
            query = search.query or self._last_query
            self._find(search._replace(query=query), search.match + 1)
        elif key.name == "insert":
            self._find(search._replace(query=search.query + key.text), max(search.match, 0))
        elif key.name == "backspace":
            self._find(search._replace(query=search.query[:-1]), 0)
        elif key.name == "cancel":
            self.end_search()
            self._set(search.text, search.cursor)
        else:
            self.end_search()
            self._index = len(self.history)
            return False
        return True

    def _find(self, search: _Search, start: int) -> None:
        """The newest history line from ``start`` on containing the query; none: the last match stays."""
        newest_first = self.history[::-1]
        for index in range(start, len(newest_first)):
            if search.query in newest_first[index]:
                self._search = search._replace(match=index, failed=False)
                self._set(newest_first[index], len(newest_first[index]))
                return
        self._search = search._replace(failed=True)

    def end_search(self) -> None:
        """Leave a Ctrl-R search, keeping its match as the line (nothing when not searching)."""
        if self._search is not None and self._search.query:
            self._last_query = self._search.query
        self._search = None

    def _word_start(self, cursor: int, is_gap: Callable[[str], bool]) -> int:
        i = cursor
        while i > 0 and is_gap(self.text[i - 1]):
            i -= 1
        while i > 0 and not is_gap(self.text[i - 1]):
            i -= 1
        return i

    def _moved(self, name: str) -> int:
        text, cursor = self.text, self.cursor
        if name == "left":
            return max(cursor - 1, 0)
        if name == "right":
            return min(cursor + 1, len(text))
        if name == "home":
            return 0
        if name == "end":
            return len(text)
        if name == "word-left":
            return self._word_start(cursor, lambda ch: not ch.isalnum())
        i = cursor  # word-right
        while i < len(text) and not text[i].isalnum():
            i += 1
        while i < len(text) and text[i].isalnum():
            i += 1
        return i

    def _browse(self, step: int) -> None:
        index = self._index + step
        if not 0 <= index <= len(self.history):
            return
        if self._index == len(self.history):
            self._draft = self.text
        self._index = index
        line = self.history[index] if index < len(self.history) else self._draft
        self._set(line, len(line))


def _cell(ch: str) -> tuple[str, int]:
    """How one character is drawn and how many columns it takes."""
    if ch == "\t":
        return " ", 1
    if unicodedata.combining(ch):
        return ch, 0
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return ch, 2
    return ch, 1


def visible_window(text: str, cursor: int, first: int, room: int) -> tuple[int, str, int]:
    """A line longer than the terminal scrolls sideways: ``(first, shown, column of the cursor)``.

    ``first`` is the first character shown last time (kept while the cursor
    stays in view, so the line does not jump at every key); ``room`` the
    columns available after the prompt.
    """
    cells = [_cell(ch) for ch in text]
    widths = [0]
    for _, width in cells:
        widths.append(widths[-1] + width)
    first = min(first, cursor)
    while widths[cursor] - widths[first] > room:
        first += 1
    while first > 0 and widths[-1] - widths[first - 1] <= room:  # room to show more on the left
        first -= 1
    shown = []
    for drawn, width in cells[first:]:
        room -= width
        if room < 0:
            break
        shown.append(drawn)
    return first, "".join(shown), widths[cursor] - widths[first]


class LineEditor:
    """The line being typed on a terminal, drawn below everything printed.

    It reads keys on the event loop (``add_reader`` on stdin in non-canonical
    mode, no echo), so printing a message and drawing the line again never
    race with reading a key.  Python's ``input()`` with GNU readline could not
    do this: it blocks a thread inside readline, and the module exposes
    neither ``rl_forced_update_display`` nor the cursor position needed to
    redraw a half-typed line from the loop.
    """

    PROMPT = "> "

    def __init__(self, fd: int, out: TextIO, history: "HistoryFile | None" = None) -> None:
        self.fd = fd
        self.out = out
        self.history = history
        self.buffer = LineBuffer(on_history=history.append if history is not None else None)
        self.decoder = KeyDecoder()
        self._saved: list[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first = 0
        self._on: dict[str, Callable[[str], None]] = {}

    @property
    def active(self) -> bool:
        return self._loop is not None

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        on_line: Callable[[str], None],
        on_eof: Callable[[], None],
        on_interrupt: Callable[[], None],
    ) -> None:
        import termios

        self._on = {"line": on_line, "eof": lambda _: on_eof(), "interrupt": lambda _: on_interrupt()}
        if self.history is not None:
            self.buffer.load_history(self.history.load(self.buffer.history_size))
        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON)
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        self._loop = loop
        loop.add_reader(self.fd, self._readable)
        try:
            loop.add_signal_handler(signal.SIGWINCH, self.draw)
        except (NotImplementedError, RuntimeError, AttributeError):  # pragma: no cover - not on Unix
            pass
        self.draw()

    def stop(self) -> None:
        """Give the terminal back as it was (idempotent); the prompt line is erased."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        import termios

        loop.remove_reader(self.fd)
        try:
            loop.remove_signal_handler(signal.SIGWINCH)
        except (NotImplementedError, RuntimeError, AttributeError):  # pragma: no cover - not on Unix
            pass
        if self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
        self.out.write("\r\x1b[K")
        self.out.flush()

    def print_above(self, text: str, stream: TextIO | None = None) -> None:
        """Print ``text`` (to ``stream``, default the editor's) where the prompt was, then draw the line again."""
        stream = stream or self.out
        if self.active:
            self.out.write("\r\x1b[K")
            self.out.flush()
        stream.write(text + "\n")
        stream.flush()
        self.draw()

    def draw(self, at_end: bool = False) -> None:
        if not self.active:
            return
        try:
            columns = os.get_terminal_size(self.out.fileno()).columns or 80
        except (OSError, ValueError):
            columns = 80
        buffer = self.buffer
        cursor = len(buffer.text) if at_end else buffer.cursor
        prompt = buffer.prompt or self.PROMPT
        prompt_width = sum(_cell(ch)[1] for ch in prompt)
        room = max(columns - prompt_width - 1, 1)
        self._first, shown, column = visible_window(buffer.text, cursor, self._first, room)
        column += prompt_width
        self.out.write(f"\r{prompt}{shown}\x1b[K\r" + (f"\x1b[{column}C" if column else ""))
        self.out.flush()

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the terminal is gone
            self._on["eof"]("")
            return
        for key in self.decoder.feed(data):
            if not self.active:
                return
            if key.name == "enter":
                self.buffer.end_search()  # Enter sends the match: shown after the usual prompt
                self.draw(at_end=True)  # the line stays on screen above the next prompt, as typed
                self.out.write("\n")
                self._first = 0
            outcome = self.buffer.apply(key)
            if outcome is None:
                self.draw()
                continue
            what, line = outcome
            if what == "line":
                self.draw()
            elif what == "clear-screen":
                self.out.write("\x1b[H\x1b[2J")
                self.draw()
            handler = self._on.get(what)
            if handler is not None:
                handler(line)


class HistoryFile:
    """The lines typed in earlier sessions: read at the start, each new one appended at once.

    Appending line by line lets two sessions share the file.  It is created
    readable by its owner only (messages may hold tokens); a file that cannot
    be read or written is reported once, and the history stays in memory.
    """

    DEFAULT = "~/.ws_history"

    def __init__(self, path: str, report: Callable[[str], None]) -> None:
        self.path = os.path.expanduser(path)
        self.report = report
        self.failed = False

    def load(self, limit: int) -> list[str]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as file:
                lines = file.read().splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._fail(exc)
            return []
        return lines[-limit * 2 :]  # room for the repeats and blank lines load_history skips

    def append(self, line: str) -> None:
        if self.failed:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with open(fd, "a", encoding="utf-8") as file:
                file.write(line + "\n")
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.failed = True
        self.report(f"history file {self.path}: {exc.strerror or exc}; history kept for this session only")
