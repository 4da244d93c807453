"""Rule regexes traffic cannot stall (appliance/detect/bounded_regex.py): RE2 where it
means what `re` means (checked against `re` on random patterns and buffers), the bounded
engine elsewhere, and a program that reaches a bound read against the attacker."""
import re

import pytest
from hypothesis import given, settings, strategies as st

from appliance.detect.bounded_regex import REGEX_TIME, InspectionLimit, Regex, re2_pattern
from appliance.detect.inspect_buffer import PACKET_STEPS, Program
from appliance.detect.keywords import parse_pcre
from appliance.detect.rule import Content


def P(text):
    step, _, msg = parse_pcre(text)
    assert msg is None, msg
    return step


# ET Open shapes: all run on RE2 (linear), so a hostile payload costs a linear scan
LINEAR = ["/.*?select.*?from.*?where.*?union/si", "/User-Agent\\x3a[^\\r\\n]*(a+)+b/s",
          "/^\\/[a-z0-9]{8,12}\\.php\\?id=\\d+/U", "/\\s+cmd\\s*=\\s*[\\x22\\x27]?/i",
          "/(?:%2e|\\.){2}(?:%2f|\\/)/i", "/^GET\\s/m"]
# where RE2 would mean something else: the bounded engine
# (a pcre's "{,3}" is refused: PCRE2's meaning depends on its version, test_suricata_semantics)
BOUNDED = ["/\\.exe$/i", "/(a)\\1/", "/a(?=b)/", "/a b/x", "/\\xe9/i", "/[[:alpha:]]/",
           "/a\\Z/", "/[\\b]/", "/(?x) a/", "/[^\\S\\n]x/"]


@pytest.mark.parametrize("text", LINEAR)
def test_et_shapes_run_on_re2(text):
    assert P(text).regex.linear


@pytest.mark.parametrize("text", BOUNDED)
def test_patterns_re2_reads_otherwise_run_bounded(text):
    assert not P(text).regex.linear


ATOMS = ["a", "b", "\\n", ".", "\\s", "\\S", "\\d", "\\w", "\\W", "[ab]", "[^a]", "[\\s]", "[a-c\\s]",
         "\\x0b", "\\x0a", "^", "\\b", "\\A", "(?:ab|a)", " "]
QUANT = ["", "", "*", "+", "?", "*?", "+?", "{1,2}", "{2}"]


@st.composite
def patterns(draw):
    parts = [draw(st.sampled_from(ATOMS)) + draw(st.sampled_from(QUANT))
             for _ in range(draw(st.integers(1, 5)))]
    body = "".join(p for p in parts if not (p.startswith(("^", "\\b", "\\A")) and p[-1] in "*+?}"))
    flags = draw(st.sampled_from([0, re.I, re.S, re.M, re.I | re.S]))
    return body or "a", flags


@settings(max_examples=400, deadline=None)
@given(patterns(), st.binary(max_size=24).map(lambda b: b.replace(b"\x00", b"a")) |
       st.text("ab \n\x0b\t1_", max_size=24).map(str.encode), st.integers(0, 4))
def test_re2_finds_what_re_finds(pat, buf, pos):
    body, flags = pat
    rx = Regex(body, flags)
    assert rx.linear == (re2_pattern(body, flags) is not None)
    want = re.compile(body.encode(), flags).search(buf, pos)
    got = rx.search(buf, pos)
    assert (want and want.span()) == (got and (got.start(), got.end())), (body, flags, buf)


def test_a_backtracking_regex_reaches_its_bound_and_is_read_against_the_attacker():
    prog, limits = Program([P("/^(a|a)*\\1$/")]), [0, PACKET_STEPS, REGEX_TIME]
    hostile = b"a" * 40 + b"!"
    assert prog.matches(hostile, True, limits) is True        # drop/reject/alert: it holds
    assert limits[0] == 1 and limits[2] <= 0                  # the packet's regex time is spent
    assert prog.matches(b"aa", False, limits) is False        # so a later program's answer is unknown
    assert limits[0] == 2
    limits = [0, PACKET_STEPS, REGEX_TIME]                    # the next packet
    assert prog.matches(hostile, False, limits) is False      # pass: it does not hold
    assert prog.matches(b"aa", False, [0, PACKET_STEPS, REGEX_TIME]) is True   # within the bound: the answer
    with pytest.raises(InspectionLimit):
        P("/^(a|a)*\\1$/").regex.search(hostile)


def test_repeating_the_first_content_does_not_hide_the_rest():
    """Suricata's recursion limit answers "no match": "ab" x 1500 in front of "abc" would
    hide it from a drop rule. Here the limit is an unknown, read against the attacker."""
    prog = Program([Content(b"a"), Content(b"b", distance=0, within=1), Content(b"c", distance=0, within=1)])
    limits = [0, PACKET_STEPS, REGEX_TIME]
    hostile = b"ab" * 1500 + b"abc"
    assert prog.matches(hostile, True, limits) is True and limits[0] == 1
    assert prog.matches(hostile, False, limits) is False and limits[0] == 2
    assert prog.matches(b"ab" * 10 + b"abc", False, limits) is True and limits[0] == 2


def test_one_packet_shares_its_steps_among_all_rules():
    """Detector.limits[1]: the steps left for this packet's programs together; past them
    each further program is unknown (read against the attacker), not 3000 steps more."""
    prog = Program([Content(b"a"), Content(b"b", distance=0, within=1), Content(b"c", distance=0, within=1)])
    buf = b"ab" * 20 + b"abc"
    limits = [0, 100, REGEX_TIME]
    assert prog.matches(buf, False, limits) is True and limits[0] == 0
    assert limits[1] < 100 - 40                       # the steps it took are spent
    assert prog.matches(buf, False, limits) is True   # the next rule gets what is left ...
    assert prog.matches(buf, False, limits) is False and limits[0] == 1   # ... until none is


def test_linear_searches_do_not_spend_the_packets_regex_time():
    """Only backtracking searches spend Detector.limits[2] (review s8: the whole run of any
    program with a pcre was charged, so ~150 rules that do not match a 100 KB body turned a
    later RE2 rule's answer into "unknown" and a drop rule dropped a plain download)."""
    body = (b"function f(a){return a+1;} var x = 'hello world';\n" * 2000)[:100000]
    prog = Program([Content(b"notthere", nocase=True), parse_pcre("/evil[0-9]+pattern/i")[0]])
    assert prog.steps[1].regex.linear
    limits = [0, PACKET_STEPS, REGEX_TIME]
    for _ in range(200):
        assert prog.matches(body, True, limits) is False
    assert limits[0] == 0 and limits[2] == REGEX_TIME     # nothing spent: none of it backtracked
    last = Program([Content(b"function"), parse_pcre("/evilpattern[0-9]+/")[0]])
    assert last.matches(body, True, limits) is False      # answered, not "unknown" (True for a drop rule)

