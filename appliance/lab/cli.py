"""`appliance lab up|down|demo|status`: argument parsing only; the work is in the lab modules."""
import argparse
import os
import sys

from . import Interrupted, Lab, LabError, down, interruptible, status, up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance lab",
                                     description="A local lab: client -> appliance -> server in network namespaces.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd, text in (("up", "create the namespaces and start the server's services"),
                      ("down", "stop everything and delete the namespaces"),
                      ("status", "show what exists and what listens"),
                      ("demo", "run the appliance in the lab and send real traffic through it")):
        p = sub.add_parser(cmd, help=text, description=text)
        p.add_argument("--name", default="lab", help="lab instance (namespace suffix); default: lab")
        if cmd == "demo":
            p.add_argument("--rules", default=None, help="rule file or directory; default: rules/lab/")
            p.add_argument("--keep", action="store_true",
                           help="leave the lab up afterwards (the appliance is always stopped)")
    return parser


def main_lab(args: list) -> int:
    opts = _parser().parse_args(args)
    if os.geteuid() != 0:
        print("appliance lab: needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    try:
        lab = Lab(opts.name)
        with interruptible():
            if opts.cmd == "up":
                if up(lab):
                    print(f"lab {lab.name} up: client {lab.client} -> appliance {lab.fw} -> server {lab.server}")
                    print(f"  try: ip netns exec {lab.client} curl -s http://10.10.2.20/ -H 'Host: www.example.com'")
                else:
                    print(f"lab {lab.name} already up")
                return 0
            if opts.cmd == "down":
                removed = down(lab)
                print(f"lab {lab.name} down" + (f": removed {', '.join(removed)}" if removed else ": nothing was up"))
                return 0
            if opts.cmd == "status":
                return _print_status(status(lab))
            from .demo import run_demo
            return run_demo(lab, rules=opts.rules, keep=opts.keep)
    except Interrupted as e:
        print(f"appliance lab {opts.cmd}: {e}; cleaned up", file=sys.stderr)
        return 128 + e.signum
    except LabError as e:
        print(f"appliance lab {opts.cmd}: {e}", file=sys.stderr)
        return 1


def _print_status(st: dict) -> int:
    print(f"lab {st['name']}: {'up' if st['up'] else 'not up'} (phase: {st['phase'] or '-'})")
    for ns, present in st["namespaces"].items():
        print(f"  namespace {ns}: {'present' if present else 'absent'}")
    for name, (pid, alive) in st["services"].items():
        print(f"  service {name}: pid {pid} {'running' if alive else 'DEAD'}")
    if st["listening"]["tcp"] or st["listening"]["udp"]:
        print(f"  listening: tcp {st['listening']['tcp']} udp {st['listening']['udp']}")
    return 0 if st["up"] else 3


if __name__ == "__main__":
    sys.exit(main_lab(sys.argv[1:]))
