"""Problems in files a user wrote (rule files, appliance.yaml), worded one way everywhere.

A problem reads "FILE:LINE: message". The helpers here say how a value is described
(`got`), suggest the closest known word ("did you mean"), and keep where a value was
written (`Where`) so a reader can report at the line of a key or of a list item.
"""
import difflib


def at(file, line, msg):
    """The one format of a problem line."""
    return f"{file}:{line}: {msg}"


def is_int(v):
    """An integer that YAML did not read from yes/no (bool is an int subclass)."""
    return isinstance(v, int) and not isinstance(v, bool)


def got(v):
    """How a YAML value is described in messages; booleans get the yes/no hint."""
    if isinstance(v, bool):
        return f"boolean {str(v).lower()} (YAML reads unquoted yes/no/on/off/true/false as booleans: quote it)"
    if v is None:
        return "nothing"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return repr(v)


def closest(word, options, fold_case=True):
    """The option most like `word` (difflib ratio >= 0.6), or None."""
    word = str(word)
    close = difflib.get_close_matches(word.lower() if fold_case else word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word, options, fold_case=True):
    """" (did you mean 'x'?)" for the closest option, else ""."""
    close = closest(word, options, fold_case)
    return f" (did you mean '{close}'?)" if close is not None else ""


def choice(name, value, options):
    """None when value is one of options, else the message."""
    if isinstance(value, str) and value in options:
        return None
    hint = did_you_mean(value, options) if isinstance(value, str) else ""
    return f"{name} must be one of {', '.join(options)}, got {got(value)}{hint}"


class Problems:
    """Problems collected while reading files: in order of discovery, each once."""

    def __init__(self):
        self._seen = {}                    # (file, line, message) -> None: ordered, no repeats

    def add(self, file, line, msg):
        self._seen[(str(file), line, msg)] = None

    def sorted(self, sources=()):
        """As "FILE:LINE: message", by file (in `sources` order) then line; stable within a line."""
        rank = {str(f): i for i, f in enumerate(sources)}
        items = sorted(self._seen, key=lambda p: (rank.get(p[0], -1), p[1]))
        return [at(f, line, msg) for f, line, msg in items]


class Where:
    """Where a value was written: problems about it are reported there.

    `of(container, key)` narrows to an item's own line when the container keeps lines
    (yamlsource's LineDict/LineList); a plain list or dict, as a reader without
    per-item lines gives, keeps this place."""
    __slots__ = ("problems", "file", "line", "lines")

    def __init__(self, problems, file, line, lines=()):
        self.problems, self.file, self.line, self.lines = problems, str(file), line, lines

    def report(self, msg):
        self.problems.add(self.file, self.line, msg)

    def of(self, container, key):
        line_of = getattr(container, "line_of", None)
        return self if line_of is None else Where(self.problems, self.file, line_of(key), self.lines)

    @property
    def text(self):
        """The source line itself ("" when unknown), for hints about how YAML read it."""
        return self.lines[self.line - 1] if 0 < self.line <= len(self.lines) else ""

    def __str__(self):
        return f"{self.file}:{self.line}"
