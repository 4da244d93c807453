"""Rule masks read in C (detect/index.py: meets, and_masks; the compiled twin walks the Python
ints' own digits where the pure module uses `&`): the same answers as Python's `&` for masks
of every width (one digit, a digit's edge, 2,000 bits), zero, small ints, negative ints,
bools; and a replay of random rule sets over random packets gives the same verdicts and
alerts in the pure module and the compiled twin (candidates, decide, alerts on those masks)."""
import json
import random
from pathlib import Path

import pytest

from twins import in_pure_python
from appliance.detect import index



def operands(rng):
    """Masks as the index makes them, and what else may reach the helpers."""
    edges = [0, 1, 2, (1 << 30) - 1, 1 << 30, (1 << 30) + 1, (1 << 60) - 1, 1 << 60, (1 << 1000) - 1,
             1 << 999, 256, 257, -1, -(1 << 40), True, False]
    out = list(edges)
    for _ in range(300):
        width = rng.choice((1, 8, 29, 30, 31, 59, 60, 61, 300, 1000, 2000))
        m = rng.getrandbits(width)
        if rng.random() < 0.3:                 # sparse, as a rule set's masks mostly are
            m &= rng.getrandbits(width) & rng.getrandbits(width)
        out.append(m)
    return out


def test_meets_and_and_masks_equal_pythons_and():
    """The helpers as imported: the compiled twin's when built, the pure module's under
    APPLIANCE_PURE_PYTHON=1 (CI runs both)."""
    helpers = index
    rng = random.Random(15)
    ops = operands(rng)
    for _ in range(4000):
        a, b, c, d, e = (rng.choice(ops) for _ in range(5))
        if rng.random() < 0.2:                 # the same digits in more than one place
            b = c = a
        assert helpers.meets(a, b) is ((a & b) != 0), (a, b)
        got, want = helpers.and_masks(a, b, c, d, e), a & b & c & d & e
        assert type(got) is type(want) and got == want, (a, b, c, d, e)
    with pytest.raises(TypeError):
        helpers.meets(1, "1")
    with pytest.raises(TypeError):
        helpers.and_masks(1, 1, 1, 1, None)


ADDRS = ["10.0.0.1", "10.1.2.3", "10.1.200.7", "192.168.1.5", "8.8.8.8", "100.64.1.1"]
NETS = ["any", "10.0.0.0/8", "10.1.0.0/16", "\"!10.1.0.0/16\"", "$HOME_NET", "\"!$HOME_NET\"",
        "192.168.1.0/24", "[8.8.8.8, 100.64.0.0/10]"]
PORTS = ["any", "80", "[80, 443]", "\"1000-2000\"", "\"!80\"", "53", "\"1024-65535\""]


def random_rules(rng, n):
    out = ["vars:", "  HOME_NET: \"[10.0.0.0/8, 192.168.0.0/16]\"", "default_action: pass", "rules:"]
    for i in range(n):
        proto = rng.choice(('tcp', 'tcp', 'udp', 'ip'))
        r = [f"  - id: {i + 1}", f"    action: {rng.choice(('alert', 'alert', 'alert', 'drop', 'pass'))}",
             f"    proto: {proto}"]
        for key, pool in (("src", NETS), ("dst", NETS), ("src_port", PORTS), ("dst_port", PORTS)):
            v = rng.choice(pool)
            if v != "any" and (proto != "ip" or "port" not in key):
                r.append(f"    {key}: {v}")
        if rng.random() < 0.2:
            r.append(f"    flow: {rng.choice(('to_server', 'to_client'))}")
        if rng.random() < 0.15 and proto == "tcp":
            r.append(f"    content: \"{rng.choice(('GET', 'evil', 'HTTP/1.1'))}\"")
        out += r
    return "\n".join(out) + "\n"


def replay(tmp, seed):
    """[[verdict action, alert rule ids] per packet] of rule sets and packets made from `seed`."""
    from scapy.all import IP, TCP, UDP, Raw, raw

    from appliance.decode import decode_l3
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector
    rng = random.Random(seed)
    out = []
    for n in (40, 300):                        # one digit's worth and ten digits of rules
        path = Path(tmp) / f"random-{seed}-{n}.yaml"
        path.write_text(random_rules(rng, n))
        insp = Inspector(load_rules(path))
        for k in range(400):
            src, dst = rng.sample(ADDRS, 2)
            sport, dport = rng.choice((80, 443, 53, 1500, 40000)), rng.choice((80, 443, 53, 1500, 40000))
            if rng.random() < 0.7:
                flags = rng.choice(("S", "S", "SA", "A", "PA"))
                l4 = TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if "A" in flags else 0)
                if flags == "PA":
                    l4 = l4 / Raw(rng.choice((b"GET / HTTP/1.1\r\n\r\n", b"evil bytes", b"nothing")))
            else:
                l4 = UDP(sport=sport, dport=dport) / Raw(b"x")
            v = insp.process(decode_l3(raw(IP(src=src, dst=dst) / l4), ts=1.0 + k / 100))
            out.append([n, k, str(v.action), sorted(getattr(r, "id", str(r)) for r in v.alerts)])
    return out


def test_random_rule_sets_judge_alike_pure_and_compiled(tmp_path):
    here = replay(tmp_path, 7) + replay(tmp_path, 8)
    # not trivially alike: verdicts of more than one kind, and alerts
    assert len({row[2] for row in here}) > 1 and sum(len(row[3]) for row in here) > 100
    pure = in_pure_python("tests.unit.test_mask_bits_in_c", "replay", tmp_path, 7) \
        + in_pure_python("tests.unit.test_mask_bits_in_c", "replay", tmp_path, 8)
    assert pure == json.loads(json.dumps(here))
