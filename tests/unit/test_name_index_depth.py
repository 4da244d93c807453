"""NameIndex.lookup probes only the suffixes as deep as its deepest *.suffix pattern, from
the right (review rvall: slicing every suffix of a 512-label name was quadratic). It must
answer exactly what each pattern's own matches() answers, escaped dots included."""
import random

from appliance.applayer.dns import dns_label
from appliance.detect.index import NameIndex
from appliance.detect.rule import NamePattern

PATTERNS = [NamePattern("example", True), NamePattern("b.example", True), NamePattern("a.b.example", True),
            NamePattern("x.y.z.example", True), NamePattern("b.example"), NamePattern("a.b.example"),
            NamePattern("evil.example", True), NamePattern("example")]


def names(rng, n):
    alphabet = [b"a", b"b", b"x", b"y", b"z", b"example", b"evil", b".", b"\\", b"a.b", b"Example", b"\x80"]
    for _ in range(n):
        labels = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 2))) for _ in range(rng.randint(1, 7))]
        yield ".".join(dns_label(label) for label in labels) + rng.choice(["", "."])


def test_the_index_answers_what_each_pattern_matches():
    idx = NameIndex([(i, (p,)) for i, p in enumerate(PATTERNS)])
    assert idx.depth == 4
    rng = random.Random(7)
    for name in names(rng, 30000):
        want = sum(1 << i for i, p in enumerate(PATTERNS) if p.matches(name))
        assert idx.lookup((name,)) == want, name


def test_a_name_of_many_labels_still_finds_its_suffix():
    idx = NameIndex([(0, (NamePattern("evil.example", True),))])
    deep = ".".join(["a"] * 500) + ".evil.example"
    dotted = ".".join([dns_label(b".")] * 500) + ".evil.example"
    assert idx.lookup((deep,)) == 1 and idx.lookup((dotted,)) == 1
    assert idx.lookup((".".join(["a"] * 500) + ".evil\\.example",)) == 0
