"""Benchmark rule sets: N rules mixing header, CIDR, content and name (SNI/DNS/HTTP host) rules.

Most rules do not match the generated traffic (as in a real rule set, where a flow hits a few
rules out of thousands); a handful of name and content rules do, so alerts and the app-layer
path are exercised. Written as YAML into a directory and loaded with the real loader.
"""
import os
import random

from .gen_pcap import DNS_NAMES, HTTP_HOSTS, SNI_NAMES


def _word(rng, n=10):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def rules_yaml(n, seed=3):
    rng = random.Random(seed)
    out = ["default_action: pass", "rules:"]
    for i in range(n):
        rid = 100000 + i
        # Kinds interleave (7 is coprime with 20), so any prefix of the list, 10 rules as
        # well as 10,000, holds the same mix: header, CIDR, content and name rules.
        k = (i * 7) % 20
        r = [f"  - id: {rid}", f"    msg: \"bench rule {rid}\""]
        if k < 6:                                    # header rules: proto + ports
            proto = rng.choice(("tcp", "udp"))
            r += ["    action: alert" if k else "    action: drop", f"    proto: {proto}",
                  f"    dst_port: {rng.randrange(20000, 65000)}"]
            if k % 2:
                r.append(f"    src_port: \"{rng.randrange(1, 1000)}-{rng.randrange(1000, 1024)}\"")
        elif k < 11:                                 # CIDR rules
            a = f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.0/24"
            b = f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.0/{rng.choice((16, 20, 24, 28))}"
            r += ["    action: alert" if k % 3 else "    action: drop", f"    src: {a}" if k % 2 else f"    dst: {b}"]
            if k % 4 == 0:
                r.append("    proto: tcp")
                r.append(f"    dst_port: [{rng.randrange(1, 1024)}, {rng.randrange(1, 1024)}]")
        elif k < 16:                                 # content rules
            r += ["    action: alert", "    proto: tcp"]
            if k % 2:
                r.append("    flow: to_server")
            if i == 2:                         # matches every HTTP request (in every set)
                r.append("    content: \"User-Agent: bench/1.0\"")
            elif k == 15:
                r.append(f"    content: {{value: \"{_word(rng, 12)}\", nocase: true}}")
            else:
                r.append(f"    content: \"{_word(rng, rng.randrange(6, 16))}\"")
        else:                                        # names
            field = ("tls_sni", "dns_query", "http_host", "tls_sni")[k - 16]
            pool = {"tls_sni": SNI_NAMES, "dns_query": DNS_NAMES, "http_host": HTTP_HOSTS}[field]
            if i < 1600 and i % 400 < 4:
                name = rng.choice(pool)               # a few rules name real traffic
            elif k % 2:
                name = f"*.{_word(rng, 8)}.{rng.choice(('com', 'net', 'io'))}"
            else:
                name = f"{_word(rng, 6)}.{_word(rng, 8)}.com"
            r += ["    action: alert", f"    {field}: \"{name}\""]
        out += r
    return "\n".join(out) + "\n"


def write_rules(directory, n, seed=3):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"bench-{n}.yaml")
    with open(path, "w") as f:
        f.write(rules_yaml(n, seed))
    return path
