"""Rule regexes (pcre steps, the `regex` key) that traffic cannot stall.

Python's `re` backtracks without a limit: a rule regex in the common ET shape
(".*?a.*?b.*?c" with the s flag, nested quantifiers) against a payload an attacker
writes can take minutes, and a worker that stalls passes or drops nothing else.
So each regex runs on
- RE2 (linear time, no backtracking) when RE2 means the same as `re` on it: the
  pattern is rewritten where the two spell a thing differently (`\\s` includes \\v in
  `re` and PCRE, not in RE2) and left to the bounded engine where they differ in a
  way a rewrite would not keep (`$` before a final newline, backreferences,
  lookaround, the x flag, `{,n}`, caseless non-ASCII bytes);
- else the `regex` package (the same syntax and meaning as `re`) with a time bound.
A search that reaches its bound raises InspectionLimit (RegexTimeout): the caller
cannot know the answer, says so (an anomaly) and reads it against the attacker.
"""
import re
import time

import re2
import regex as bounded

# Seconds the backtracking searches of all rules on one packet may take together
# (Detector.limits; RE2 searches are linear and do not spend it; the regex package checks
# its timeout every so often, in CPU time, so a search may overrun it by a few times).
REGEX_TIME = 0.05

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.encoding = re2.Options.Encoding.LATIN1   # bytes are characters: "." is any byte
_RE2_OPTIONS.log_errors = False
_SPACE = r"\t\n\x0b\f\r "                             # `re`'s and PCRE's \s on bytes
_INLINE_X = re.compile(r"\(\?[a-zA-Z]*x")
_NON_ASCII = re.compile(r"[^\x00-\x7f]|\\x[89a-fA-F]")
_FLAGS = {re.I: bounded.I, re.S: bounded.S, re.M: bounded.M, re.X: bounded.X}


class InspectionLimit(Exception):
    """A buffer's inspection reached its bound (steps or time): the answer is unknown."""


class RegexTimeout(InspectionLimit):
    """A regex search reached its time bound. The regex package measures the timeout in
    the process's CPU time, which can run ahead of time.monotonic(): the caller takes the
    time as spent."""


class Regex:
    """A compiled rule regex on bytes: search(buf, pos, deadline) -> match or None,
    InspectionLimit past the deadline. `linear`: it runs on RE2."""
    __slots__ = ("pattern", "flags", "linear", "_rx")

    def __init__(self, body: str, flags: int):
        re.compile(body.encode("utf-8"), flags)       # `re`'s syntax and errors decide what loads
        self.pattern, self.flags = body.encode("utf-8"), flags     # as re.Pattern has them
        rx = None
        text = re2_pattern(body, flags)
        if text is not None:
            try:
                rx = re2.compile(text.encode("utf-8"), _RE2_OPTIONS)
            except re2.error:
                rx = None
        self.linear = rx is not None
        if rx is None:
            b = 0
            for f, g in _FLAGS.items():
                if flags & f:
                    b |= g
            try:
                rx = bounded.compile(body.encode("utf-8"), b)
            except bounded.error as e:
                raise re.error(f"the bounded regex engine cannot compile it: {e}") from None
        self._rx = rx

    def search(self, buf, pos=0, deadline=None):
        """The first match at or after pos; InspectionLimit when the time is up
        (deadline: time.monotonic() value shared by one rule's searches on one buffer)."""
        if self.linear:                        # RE2: linear in the buffer, no time bound needed
            return self._rx.search(buf, pos)
        now = time.monotonic()
        if deadline is None:
            deadline = now + REGEX_TIME
        left = deadline - now
        if left <= 0:
            raise RegexTimeout
        try:
            return self._rx.search(buf, pos, timeout=left)
        except TimeoutError:
            raise RegexTimeout from None

    def __eq__(self, other):
        return type(other) is Regex and (self.pattern, self.flags) == (other.pattern, other.flags)

    def __hash__(self):
        return hash((self.pattern, self.flags))

    def __repr__(self):
        return f"Regex({self.pattern!r}, {self.flags})"


def re2_pattern(body: str, flags: int):
    """The pattern RE2 reads as `re` reads `body`, or None when they differ in a way a
    rewrite does not keep."""
    if flags & re.X or _INLINE_X.search(body):
        return None
    if (flags & re.I or "(?" in body) and _NON_ASCII.search(body):
        return None                    # RE2 folds Latin-1 letters, `re` on bytes only ASCII
    out = []
    i, n = 0, len(body)
    klass = -1                         # index where the current [...] started, -1 outside
    while i < n:
        ch = body[i]
        if ch == "\\":
            if i + 1 >= n:
                return None
            nx = body[i + 1]
            if nx.isdigit() or nx == "Z" or (nx == "b" and klass >= 0):
                return None            # backreference/octal, \Z, \b (a backspace in a class)
            if nx == "s":
                out.append(_SPACE if klass >= 0 else "[" + _SPACE + "]")
            elif nx == "S":
                if klass >= 0:
                    return None
                out.append("[^" + _SPACE + "]")
            else:
                out.append(body[i:i + 2])
            i += 2
            continue
        if klass >= 0:
            first = i == klass + 1 or (i == klass + 2 and body[klass + 1] == "^")
            if ch == "]" and not first:
                klass = -1
            elif ch == "[":
                return None            # "[:alpha:]" is a POSIX class to RE2, characters to `re`
        elif ch == "[":
            klass = i
        elif ch == "$":
            return None                # `re` (and PCRE): also before a final newline; RE2: the end only
        elif ch == "{" and body[i + 1:i + 2] == ",":
            return None                # `re`: {,n} is 0..n; RE2: the characters
        out.append(ch)
        i += 1
    if klass >= 0:
        return None
    inline = "".join(c for f, c in ((re.I, "i"), (re.S, "s"), (re.M, "m")) if flags & f)
    return (f"(?{inline})" if inline else "") + "".join(out)
