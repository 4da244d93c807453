"""The inspection-depth trade (docs/performance.md "Inspection depth"): one small rule set in
ET Open shapes, once as a `.rules` file (Suricata's depth: every packet while a rule can
still match, 1 MiB per direction) and once as the same rules
in YAML (16 packets / 8 KiB, then decided and offloaded), replayed over the same capture.
Printed: the pkt/s ratio (.rules / YAML) and, per set, the flows offloaded and the packets
that took the fast path (live: never queued to a worker)."""
import json
import os
import sys
import tempfile
import time

from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveWriter
from appliance.replay import replay

from .common import Row

SURICATA = """\
alert tcp $HOME_NET any -> $EXTERNAL_NET any (msg:"bench UA"; flow:established,to_server; content:"User-Agent: bench/1.0"; sid:1;)
alert tcp any any -> any any (msg:"bench shell"; flow:established; content:"/bin/sh"; sid:2;)
alert tcp any any -> any [22,873] (msg:"bench admin port"; flags:S; sid:3;)
alert udp any any -> any 5060 (msg:"bench sip"; content:"INVITE sip:"; sid:4;)
alert tcp any any -> any any (msg:"bench login"; flow:to_server; content:"USER "; flowbits:set,login; flowbits:noalert; sid:5;)
alert tcp any any -> any any (msg:"bench login ok"; flow:to_client; content:"230 "; flowbits:isset,login; sid:6;)
drop tls $HOME_NET any -> $EXTERNAL_NET 443 (msg:"bench sni"; flow:to_server; tls.sni; content:"blocked.example"; nocase; startswith; endswith; sid:7;)
"""
YAML = """\
rules:
  - {id: 1, action: alert, msg: bench UA, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, flow: [established, to_server], content: "User-Agent: bench/1.0"}
  - {id: 2, action: alert, msg: bench shell, proto: tcp, flow: established, content: /bin/sh}
  - {id: 3, action: alert, msg: bench admin port, proto: tcp, dst_port: [22, 873], tcp_flags: S}
  - {id: 4, action: alert, msg: bench sip, proto: udp, dst_port: 5060, content: "INVITE sip:"}
  - {id: 5, action: alert, msg: bench login, proto: tcp, flow: to_server, content: "USER ", flowbits: [{set: login}], noalert: true}
  - {id: 6, action: alert, msg: bench login ok, proto: tcp, flow: to_client, content: "230 ", flowbits: [{isset: login}]}
  - {id: 7, action: drop, log: true, msg: bench sni, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, dst_port: 443, flow: to_server, tls_sni: blocked.example, severity: 3}
"""


def _replay(capture, ruleset, tmp, name):
    eve_path = os.path.join(tmp, name)
    eve = EveWriter(eve_path)
    insp = Inspector(ruleset, Settings(max_flows=1_000_000, eve_types=("flow",)), eve)
    t = time.perf_counter()
    res = replay([capture], insp)
    insp.close()
    eve.close()
    dt = time.perf_counter() - t
    if res.errors:
        raise RuntimeError("; ".join(res.errors))
    flows = offloaded = 0
    with open(eve_path) as f:
        for line in f:
            flows += 1
            offloaded += "bypass" in json.loads(line)["flow"]
    os.unlink(eve_path)
    return res.packets, dt, flows, offloaded, insp.counters.fast_path, insp.counters.alerts


def depth_row(capture, runs):
    row = Row("replay pkt/s, mixed capture, 7 rules as .rules (Suricata's depth)", "the same rules in YAML",
              "pkt/s", ">= 0.50")
    with tempfile.TemporaryDirectory(prefix="bench-depth-") as d:
        with open(os.path.join(d, "set.rules"), "w") as f:
            f.write(SURICATA)
        with open(os.path.join(d, "set.yaml"), "w") as f:
            f.write(YAML)
        suri, yaml = load_rules(os.path.join(d, "set.rules")), load_rules(os.path.join(d, "set.yaml"))
        for i in range(runs):
            n, t_y, fl, off_y, fast_y, al_y = _replay(capture, yaml, d, "y.json")
            _, t_s, _, off_s, fast_s, al_s = _replay(capture, suri, d, "s.json")
            row.add(n / t_s, n / t_y)
            msg = (f"  run {i + 1}/{runs}: .rules {n / t_s:,.0f} pkt/s, YAML {n / t_y:,.0f} pkt/s; flows {fl:,}: "
                   f"offloaded .rules {off_s:,} / YAML {off_y:,}; fast-path packets .rules {fast_s:,} / "
                   f"YAML {fast_y:,}; alerts .rules {al_s:,} / YAML {al_y:,}")
            print(msg, file=sys.stderr)
            row.note = msg.split(": ", 1)[1].split("; ", 1)[1]
    return row


def main(argv=None):
    import argparse
    from . import gen_pcap
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args(argv)
    row = depth_row(gen_pcap.cached(o.packets), o.runs)
    from statistics import median
    print(f"{row.measure}: ratio median {median(row.ratios):.2f} "
          f"({min(row.ratios):.2f}..{max(row.ratios):.2f}); {row.note}")


if __name__ == "__main__":
    main()
