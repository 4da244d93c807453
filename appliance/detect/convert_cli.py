"""`appliance rules convert` argument handling: read FILE or stdin, write YAML or problems."""
import sys
from pathlib import Path

FORMATS = ("suricata", "aws-nfw")


def main_convert(args, usage):
    fmt, out, skip, inputs = "suricata", None, False, []
    it = iter(args)
    for a in it:
        if a in ("--from", "-o"):
            value = next(it, None)
            if value is None:
                return _usage(usage, f"{a} needs a value")
            if a == "--from":
                fmt = value
            else:
                out = value
        elif a == "--skip-unsupported":
            skip = True
        elif a.startswith("-") and a != "-":
            return _usage(usage, f"unknown option {a}")
        else:
            inputs.append(a)
    if fmt not in FORMATS:
        return _usage(usage, f"--from must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if len(inputs) != 1:
        return _usage(usage, "give one FILE, or - for stdin")
    path = inputs[0]
    name = "<stdin>" if path == "-" else path
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"{name}:1: cannot read: {e}", file=sys.stderr)
        return 1
    if fmt == "aws-nfw":
        from .aws_nfw import convert_rule_group
        result = convert_rule_group(text, name, skip)
    else:
        from .convert import Source, convert, order_comment
        header = (f"Converted by `appliance rules convert` from {name} (Suricata rules).",
                  *order_comment(False))
        result = convert(Source(name, text, header=header), skip)
    for p in result.problems:
        print(p, file=sys.stderr)
    if result.problems:
        return 1
    for line in result.skipped:
        print(line, file=sys.stderr)
    if out:
        try:
            Path(out).write_text(result.yaml, encoding="utf-8")
        except OSError as e:
            print(f"{out}:1: cannot write: {e}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(result.yaml)
    print(f"{result.rules} rules converted", file=sys.stderr)
    return 0


def _usage(usage, msg):
    print(f"appliance rules convert: {msg}\n\n{usage}", file=sys.stderr)
    return 2
