"""Suricata's inspection of one buffer (appliance/detect/inspect_buffer.py): each content
option, relative matching with backtracking, negation, pcre flags, isdataat, and the
ranges of dsize/ttl/bsize/urilen/ip_proto."""
import re
from types import SimpleNamespace

import pytest

from appliance.detect.engine import prefilter_literal
from appliance.detect.inspect_buffer import Program, normalize_uri, tx_buffer, unescape
from appliance.detect.keywords import parse_pcre, parse_range
from appliance.detect.rule import Content, IsDataAt


def C(value, **kw):
    return Content(value.encode() if isinstance(value, str) else value, **kw)


def P(text, negated=False):
    pcre, _, msg = parse_pcre(text)
    assert msg is None
    return pcre if not negated else type(pcre)(pcre.regex, pcre.relative, True, pcre.source)


CASES = [
    # (steps, buffer, matches) -- each option has a case its flip would break
    ([C("b", offset=2)], b"abxb", True),
    ([C("b", offset=2)], b"abxx", False),
    ([C("ab", offset=1, depth=2)], b"xabx", True),
    ([C("ab", offset=1, depth=2)], b"xxab", False),
    ([C("AB", nocase=True)], b"xaBx", True),
    ([C("AB")], b"xaBx", False),
    ([C("ab", startswith=True)], b"abx", True),
    ([C("ab", startswith=True)], b"xab", False),
    ([C("ab", endswith=True)], b"xab", True),
    ([C("ab", endswith=True)], b"abx", False),
    ([C("ab", startswith=True, endswith=True)], b"ab", True),
    ([C("ab", startswith=True, endswith=True)], b"abab", False),
    # negation: the bytes must not be there; a negated step moves no position
    ([C("x", negated=True)], b"abc", True),
    ([C("b", negated=True)], b"abc", False),
    ([C("a"), C("b", negated=True, distance=0, within=2)], b"a..b", True),
    ([C("a"), C("b", negated=True, distance=0, within=2)], b"a.b", False),
    ([C("a"), C("z", negated=True), C("b", distance=0, within=1)], b"ab", True),   # b relative to a
    # distance / within from the previous match's end
    ([C("a"), C("b", distance=2)], b"a..b", True),
    ([C("a"), C("b", distance=2)], b"a.b", False),
    ([C("a"), C("b", within=2)], b"a.b", True),
    ([C("a"), C("b", within=2)], b"a..b", False),
    ([C("a"), C("b", distance=1, within=2)], b"a.b", True),    # window [2, 4): b at 2
    ([C("a"), C("b", distance=1, within=2)], b"ab", False),
    ([C("ab"), C("a", distance=-2, within=1)], b"ab", True),   # negative distance: back over the match
    ([C("b", distance=0)], b"b", True),                       # first step relative to the start
    # backtracking: the later relative step fails at the first "a", holds at the second
    ([C("a"), C("b", within=1)], b"a.ab", True),
    ([C("a"), C("b", within=1), C("c", within=1)], b"ab.abc", True),
    ([C("a"), C("b", within=1), C("c", within=1)], b"ab.ab.", False),
    ([C("a"), C("b", negated=True, within=1)], b"abac", True),  # a negated relative step retries too
    ([C("a"), C("b", negated=True, within=1)], b"abab", False),
    # isdataat: absolute = byte n exists; relative = n bytes past the previous match
    ([IsDataAt(3)], b"abcd", True),
    ([IsDataAt(4)], b"abcd", False),
    ([IsDataAt(4, negated=True)], b"abcd", True),
    ([C("a"), IsDataAt(3, relative=True)], b"abcd", True),
    ([C("a"), IsDataAt(4, relative=True)], b"abcd", False),
    ([C("a"), IsDataAt(1, relative=True, negated=True)], b"xxa", True),   # nothing after the last a
    ([C("a"), IsDataAt(1, relative=True, negated=True)], b"ab", False),
    # pcre: flags i s m x, R relative (^ anchors at the previous match's end), negation
    ([P("/ab+c/")], b"xabbbc", True),
    ([P("/AB/i")], b"ab", True),
    ([P("/AB/")], b"ab", False),
    ([P("/a.b/s")], b"a\nb", True),
    ([P("/a.b/")], b"a\nb", False),
    ([P("/^b/m")], b"a\nb", True),
    ([P("/^b/")], b"a\nb", False),
    ([P("/a b/x")], b"ab", True),
    ([C("GET "), P("/^\\/adm/R")], b"GET /admin", True),
    ([C("GET "), P("/^\\/adm/R")], b"GET x/admin", False),
    ([C("GET "), P("/^\\/adm/")], b"GET /admin", False),    # not relative: ^ is the buffer's start
    ([P("/admin/", negated=True)], b"GET /index", True),
    ([P("/admin/", negated=True)], b"GET /admin", False),
    ([P("/a/"), C("b", within=1)], b"a.ab", True),          # a pcre is retried too
]


@pytest.mark.parametrize("steps,buf,want", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_program(steps, buf, want):
    assert Program(steps).matches(buf) is want


def test_backtracking_is_bounded():
    # 2,000 "a" with no "b": without a bound the retries are quadratic and beyond;
    # Suricata's recursion limit ends it (no match), as here.
    steps = [C("a"), C("a", within=1), C("a", within=1), C("b", within=1)]
    assert Program(steps).matches(b"a" * 2000) is False
    assert Program(steps).matches(b"aaab") is True


def test_prefilter_literal_is_fast_pattern_or_longest_positive():
    long_neg = C("zzzzzz", negated=True)
    assert prefilter_literal([C("ab"), long_neg, C("abc")]) == C("abc")
    assert prefilter_literal([C("ab", fast_pattern=True), C("abcdef")]) == C("ab", fast_pattern=True)
    assert prefilter_literal([long_neg, P("/x/")]) is None


@pytest.mark.parametrize("text,yes,no", [
    ("5", [5], [4, 6]),
    ("<5", [4], [5]),
    (">5", [6], [5]),
    ("<=5", [5], [6]),
    (">=5", [5], [4]),
    ("!5", [4, 6], [5]),
    ("!=5", [4], [5]),
    ("3<>6", [4, 5], [3, 6]),                 # exclusive, as Suricata's
    ("3-6", [4, 5], [3, 6]),
    ("!3<>6", [3, 6, 7], [4, 5]),
])
def test_range_forms(text, yes, no):
    rng, msg = parse_range(text, "dsize", 65535)
    assert msg is None
    assert [rng.matches(v) for v in yes] == [True] * len(yes)
    assert [rng.matches(v) for v in no] == [False] * len(no)


def test_uri_normalisation():
    assert normalize_uri(b"/a/%2e%2e/b%20c?x=%41") == b"/b c?x=%41"
    assert normalize_uri(b"/a/./b/../c") == b"/a/c"
    assert normalize_uri(b"http://h.example:8080/p?q") == b"/p?q"
    assert normalize_uri(b"HTTP://h.example") == b"/"
    assert unescape("a\\x00b\\x5c") == b"a\x00b\\"


def test_pcre_flags_compile():
    pcre, buf, msg = parse_pcre("/x/smixR")
    assert msg is None and buf is None and pcre.relative
    assert pcre.regex.flags & (re.S | re.M | re.I | re.X) == re.S | re.M | re.I | re.X
    assert [parse_pcre(f"/x/{f}")[1] for f in "UIMVW"] == [
        "http.uri", "http.uri.raw", "http.method", "http.user_agent", "http.host"]


# spellings of a request target and the path Python's http.server acts on (its own code,
# translate_path): one of http.uri's readings is that path
SERVER_SPELLINGS = ["//admin", "///admin", "/./admin", "/%2e%2e/admin", "/x/..%2fadmin", "/admin#x.jpg",
                    "/a//b/../admin", "/%2Fadmin", "/%61dmin", "/admin?x=1", "/public/../admin",
                    "/admin%00.jpg", "/a/b/..//admin", "/x/%2E%2E/%2e/admin"]


@pytest.mark.parametrize("target", SERVER_SPELLINGS)
def test_one_http_uri_reading_is_the_path_http_server_acts_on(target):
    import http.server

    class Server(http.server.SimpleHTTPRequestHandler):
        def __init__(self):                                   # no socket: only its path mapping
            self.directory = "/srv"

    acted = Server().translate_path(target)[len("/srv"):].encode("utf-8", "surrogateescape")
    readings = tx_buffer("http", SimpleNamespace(uri=target), "http.uri")
    assert acted in [r.partition(b"?")[0] for r in readings], (target, acted, readings)


@pytest.mark.parametrize("target,lenient", [
    (b"\\admin", b"/admin"),                                # IIS: "\" is "/"
    (b"/public/..;/admin", b"/admin"),                      # Tomcat/Jetty: ";params" end a segment
    (b"/admin;.jpg", b"/admin"),
    (b"/%u0061dmin", b"/admin"),                            # IIS %u
    (b"/x/%c0%ae%c0%ae/admin", b"/admin"),                  # IIS overlong UTF-8
    (b"/admin%00.jpg", b"/admin"),                          # a C string ends at NUL
    (b"/admin#.jpg", b"/admin"),
    (b"http://h.example?x", b"/?x"),
])
def test_the_lenient_reading_of_server_quirks(target, lenient):
    readings = tx_buffer("http", SimpleNamespace(uri=target.decode("latin-1")), "http.uri")
    assert readings[0] == normalize_uri(target) and readings[-1] == lenient
    assert tx_buffer("http", SimpleNamespace(uri="/ok/x.js?a=//b;c"), "http.uri") == [b"/ok/x.js?a=//b;c"]
