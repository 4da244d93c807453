"""`appliance` command line: argument dispatch only; each subcommand lives in its module."""
import sys

USAGE = """usage: appliance COMMAND [ARGS]

commands:
  replay PCAP... --rules PATH [--eve FILE] [--home-net CIDRS]   replay captures through the pipeline
         [--report HTML] [--explain FLOW]                       ... an HTML report; why FLOW was passed/dropped
  rules check PATH...                                           validate rule files (FILE:LINE: message)
  rules schema                                                  print the rule format's JSON Schema
  rules test DIR|FILE...                                        rule unit tests (expected alerts and verdicts)
  rules convert [--from suricata|aws-nfw] FILE|- [-o OUT]       .rules or an AWS rule group -> YAML rules
  run --config FILE                                             the inline datapath (root)
  lab up|down|demo|status                                       a 3-namespace lab on this machine (root)
  bootstrap [--config FILE] [--dry-run]                         EC2 host set-up at boot (ENIs, sysctls, src/dst check)
  ssm-fetch [--config FILE]                                     aws.config_source: ssm: fetch, check, install config+rules
  status [--config FILE | --control ADDR:PORT] [--top N]        the running appliance: mode, rules, rates, drops
  flows [--config FILE | --control ADDR:PORT] [--top N]         the flows in the workers' tables, state and verdict
  capture --iface inside|outside|NAME --duration S --out FILE   an on-demand pcapng capture (--filter BPF,
          [--filter BPF] [--max-bytes N] [--count N]            bounded by time, size, count; root)
  ha [--config FILE] | ha status [--config FILE] [--json]       the HA pair service; who is primary and why
"""


RULES_USAGE = """usage: appliance rules check [--skip-unsupported] PATH...
                                       validate rule files (.yaml, .rules) or directories; FILE:LINE: message
                                       per problem, exit 1. --skip-unsupported: .rules lines with unsupported
                                       keywords are skipped (one line each, a summary by keyword), not problems
       appliance rules schema          print the JSON Schema of the rule format (yaml-language-server)
       appliance rules test [-q] DIR|FILE...
                                       rule unit tests: each *.test.yaml (or DIR/test.yaml) replays a pcap or
                                       described packets and compares alerts (sid: count) and flow verdicts;
                                       exit 1 with expected vs got, FILE:LINE for a malformed test
       appliance rules convert [--from suricata|aws-nfw] [--skip-unsupported] [-o OUT] FILE|-
                                       print FILE (- = stdin) as a YAML rule file, same verdicts and alerts:
                                       suricata (default): a .rules file; aws-nfw: the JSON of `aws
                                       network-firewall describe-rule-group` (or its RuleGroup). What cannot
                                       be expressed is a FILE:LINE (or FILE: JSON-PATH) problem on stderr,
                                       exit 1; --skip-unsupported leaves those rules out and says which"""


def main_rules(args):
    import json
    if not args or any(a in ("-h", "--help") for a in args):
        print(RULES_USAGE)
        return 0 if args else 2
    if args[:1] == ["schema"]:
        from .detect.schema import rule_schema
        print(json.dumps(rule_schema(), indent=2))
        return 0
    if args[:1] == ["check"] and len([a for a in args[1:] if a != "--skip-unsupported"]):
        from .detect.loader import check, load_rules, skip_report
        skip = "--skip-unsupported" in args
        paths = [a for a in args[1:] if a != "--skip-unsupported"]
        problems = check(paths, skip_unsupported=skip)
        for p in problems:
            print(p)
        if problems:
            return 1
        rs = load_rules(paths, skip_unsupported=skip)
        for line in skip_report(rs):
            print(line)
        print(f"{len(rs.rules)} rules OK (default_action: {rs.default_action})", file=sys.stderr)
        return 0
    if args[:1] == ["test"]:
        from .ruletest.runner import main_rules_test
        return main_rules_test(args[1:])
    if args[:1] == ["convert"]:
        from .detect.convert_cli import main_convert
        return main_convert(args[1:], RULES_USAGE)
    print(RULES_USAGE, file=sys.stderr)
    return 2


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "replay":
        from .replay import main_replay
        return main_replay(rest)
    if cmd == "rules":
        return main_rules(rest)
    if cmd == "run":
        from .run import main_run
        return main_run(rest)
    if cmd == "lab":
        from .lab.cli import main_lab
        return main_lab(rest)
    if cmd == "bootstrap":
        from .aws.bootstrap import main_bootstrap
        return main_bootstrap(rest)
    if cmd == "ssm-fetch":
        from .aws.ssm import main_ssm_fetch
        return main_ssm_fetch(rest)
    if cmd == "status":
        from .control.client import main_status
        return main_status(rest)
    if cmd == "flows":
        from .control.client import main_flows
        return main_flows(rest)
    if cmd == "capture":
        from .capture import main_capture
        return main_capture(rest)
    if cmd == "ha":
        from .ha.service import main_ha
        return main_ha(rest)
    if cmd in ("--version", "version"):
        from . import __version__
        from . import compiled, inspector  # noqa: F401 -- imports the hot path, so the line says what runs
        from .source import nfqueue  # noqa: F401 -- the live worker's netlink read (a twin too)
        print(f"{__version__} (hot path: {compiled.describe()})")
        return 0
    print(f"appliance: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
