"""The prefilter never skips a rule the exact evaluator matches: random programs (nocase,
negation, offset/depth, distance/within, startswith/endswith, fast_pattern on any step,
pcre) on random payloads, through the engine's own literal choice and Hyperscan scan."""
from hypothesis import given, settings, strategies as st

from appliance.detect.engine import prefilter_literal
from appliance.detect.index import ContentPrefilter
from appliance.detect.inspect_buffer import Program
from appliance.detect.keywords import parse_pcre
from appliance.detect.rule import Content

ALPHA = b"abAB\x00\xff"
values = st.binary(min_size=1, max_size=3).map(lambda b: bytes(ALPHA[x % len(ALPHA)] for x in b))


@st.composite
def steps(draw, first):
    if draw(st.integers(0, 9)) == 0:
        step, _, _ = parse_pcre(draw(st.sampled_from(["/a.?b/i", "/^a/", "/b+$/", "/(?:ab|ba)/"])))
        return step
    kw = {"nocase": draw(st.booleans()), "negated": draw(st.integers(0, 3)) == 0,
          "fast_pattern": draw(st.integers(0, 4)) == 0}
    place = draw(st.sampled_from(["none", "abs", "rel", "start", "end"] if not first else ["none", "abs", "start", "end"]))
    v = draw(values)
    if place == "abs":
        kw["offset"] = draw(st.integers(0, 4))
        kw["depth"] = draw(st.one_of(st.none(), st.integers(len(v), 8)))
    elif place == "rel":
        kw["distance"] = draw(st.integers(-2, 3))
        kw["within"] = draw(st.one_of(st.none(), st.integers(len(v), 6)))
    elif place == "start":
        kw["startswith"] = True
    elif place == "end":
        kw["endswith"] = True
    return Content(v, **kw)


@st.composite
def programs(draw):
    n = draw(st.integers(1, 4))
    return [draw(steps(i == 0)) for i in range(n)]


@settings(max_examples=500, deadline=None)
@given(st.lists(programs(), min_size=1, max_size=4), st.binary(max_size=24).map(
    lambda b: bytes(ALPHA[x % len(ALPHA)] for x in b)))
def test_no_rule_the_evaluator_matches_is_skipped(progs, payload):
    entries = [(i, (lit,)) for i, p in enumerate(progs) if (lit := prefilter_literal(p)) is not None]
    hit = ContentPrefilter(entries).scan(payload)
    literal_of = dict(entries)
    for i, p in enumerate(progs):
        if Program(p).matches(payload) and i in literal_of:
            assert hit >> i & 1, (p, payload, literal_of[i])


def test_contents_with_nul_bytes_compile_and_are_looked_for_whole():
    """Hyperscan's literal API took the contents as C strings: "|00 01|" did not compile
    (the Detector could not be built for a rule set `rules check` passed), "a|00|b" was
    looked for as "a"."""
    pf = ContentPrefilter([(0, (Content(b"\x00\x01"),)), (1, (Content(b"a\x00b"),)),
                           (2, (Content(b"A\x00", nocase=True),))])
    assert pf.scan(b"x\x00\x01y") == 0b001
    assert pf.scan(b"a") == 0 and pf.scan(b"za\x00b") == 0b110      # "a\x00" is rule 2 caseless
    assert pf.scan(b"a\x00") == 0b100
