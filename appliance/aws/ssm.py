"""`aws.config_source: ssm`: appliance.yaml and the rule files from SSM Parameter Store.

Layout under `aws.ssm_path` (say /appliance/prod):

  /appliance/prod/appliance.yaml          the config `appliance run` uses
  /appliance/prod/rules/<name>.yaml       rule files (.yaml, .yml or .rules)
  /appliance/prod/rules/<name>.yaml/1     a file over one parameter's size limit (4 KB standard,
  /appliance/prod/rules/<name>.yaml/2     8 KB advanced): its parts, joined in numeric order

String and SecureString parameters alike (read WithDecryption). The fetch writes a new copy
beside the current one, checks it whole (config.load_config, then the rules it names) and only
then points `aws.ssm_dir` (a symlink) at it: a bad parameter is reported as
`ssm:<parameter>:LINE: message` and the previous copy -- the one the running appliance reads
on SIGHUP -- stays as it was.

The endpoint is boto3's: AWS_ENDPOINT_URL_SSM (or AWS_ENDPOINT_URL) overrides it.
"""
import os
import re
import shutil
import time

CONFIG_NAME = "appliance.yaml"
RULE_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.(yaml|yml|rules)")
PART = re.compile(r"[1-9][0-9]{0,3}")


class SsmError(Exception):
    """The fetch did not produce a usable copy; `.problems` are "ssm:NAME:LINE: message" lines."""
    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def client(region):
    import boto3
    from botocore.config import Config
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15)
    return boto3.client("ssm", region_name=region, config=cfg)


def read_parameters(api, path):
    """Every parameter under `path` (recursive, decrypted): {name: value}."""
    from botocore.exceptions import BotoCoreError, ClientError
    out = {}
    try:
        for page in api.get_paginator("get_parameters_by_path").paginate(
                Path=path, Recursive=True, WithDecryption=True):
            for p in page["Parameters"]:
                out[p["Name"]] = p["Value"]
    except ClientError as e:
        err = e.response.get("Error", {})
        raise SsmError([f"ssm:{path}: GetParametersByPath failed: {err.get('Code', '?')}: "
                        f"{err.get('Message', '')} (the instance role needs ssm:GetParametersByPath on "
                        "this path, and kms:Decrypt for SecureString with a customer key)"]) from None
    except BotoCoreError as e:
        raise SsmError([f"ssm:{path}: GetParametersByPath failed: {e}"]) from None
    return out


def assemble(path, params):
    """{parameter name: value} -> ({relative file: text}, problems). Parts `<file>/N` join in
    numeric order; a file given both whole and in parts, a gap in the parts or a name that is
    neither the config nor a rule file is a problem (never a guess)."""
    prefix = path.rstrip("/") + "/"
    whole, parts, problems = {}, {}, []
    for name, value in params.items():
        rel = name[len(prefix):] if name.startswith(prefix) else None
        segs = rel.split("/") if rel else []
        if segs and PART.fullmatch(segs[-1]) and len(segs) >= 2:
            parts.setdefault("/".join(segs[:-1]), {})[int(segs[-1])] = value
            segs = segs[:-1]
        else:
            whole["/".join(segs)] = value
        ok = segs == [CONFIG_NAME] or (len(segs) == 2 and segs[0] == "rules" and RULE_FILE.fullmatch(segs[1]))
        if not ok:
            problems.append(f"ssm:{name}:1: not a file the appliance reads here: expected {prefix}{CONFIG_NAME} "
                            f"or {prefix}rules/NAME.yaml|.yml|.rules (optionally split as .../1, .../2)")
    files = {k: v for k, v in whole.items()}
    for rel, ps in parts.items():
        if rel in whole:
            problems.append(f"ssm:{prefix}{rel}:1: given whole and in parts ({prefix}{rel}/1 ...); keep one")
            continue
        missing = [n for n in range(1, max(ps) + 1) if n not in ps]
        if missing:
            problems.append(f"ssm:{prefix}{rel}/{missing[0]}:1: part {missing[0]} of {len(ps) + len(missing)} "
                            "is missing")
            continue
        files[rel] = "".join(ps[n] for n in sorted(ps))
    if CONFIG_NAME not in files and not any(p.startswith(f"ssm:{prefix}{CONFIG_NAME}") for p in problems):
        problems.append(f"ssm:{prefix}{CONFIG_NAME}:1: no such parameter (found {len(params)} under {prefix})")
    return files, problems


def _check(stage, prefix):
    """Load the staged copy as `appliance run` would; problems with the staged paths named as
    their parameters."""
    from appliance.config import ConfigError, load_config
    from appliance.detect.loader import check
    try:
        cfg = load_config(os.path.join(stage, CONFIG_NAME))
        problems = []
        rules = os.path.realpath(cfg.rules)
        if not (rules + "/").startswith(os.path.realpath(stage) + "/"):
            problems.append(f"{os.path.join(stage, CONFIG_NAME)}:1: rules: {cfg.rules} is outside the copy "
                            f"from SSM; write `rules: rules` to use the parameters under {prefix}rules/")
        else:
            problems += check([cfg.rules], home_net=list(cfg.home_net) if cfg.home_net is not None else None,
                              skip_unsupported=cfg.rules_skip_unsupported)
    except ConfigError as e:
        problems = e.problems
    real = os.path.realpath(stage) + "/"
    return [p.replace(stage + "/", "ssm:" + prefix).replace(real, "ssm:" + prefix) for p in problems]


def install(files, dest, prefix):
    """Write `files` as a new copy, check it, point the `dest` symlink at it. Returns the
    copy's directory; raises SsmError (nothing at `dest` changed) when it does not load."""
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    stage = f"{dest}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    # SecureString values end up here: readable by the owner of the parent directory (the
    # appliance user; `sudo appliance ssm-fetch` hands the copy to it) and its group only.
    owner = os.stat(parent)
    os.makedirs(os.path.join(stage, "rules"), mode=0o750)
    try:
        os.chmod(stage, 0o750)
        for rel, text in files.items():
            fd = os.open(os.path.join(stage, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with open(fd, "w") as f:
                f.write(text)
        if os.geteuid() == 0 and owner.st_uid != 0:
            for d, _, names in os.walk(stage):
                for path in [d, *(os.path.join(d, n) for n in names)]:
                    os.chown(path, owner.st_uid, owner.st_gid)
        problems = _check(stage, prefix)
        if problems:
            raise SsmError(problems)
        if os.path.exists(dest) and not os.path.islink(dest):
            raise SsmError([f"{dest}: exists and is not the symlink the fetch maintains; remove it"])
        old = os.path.realpath(dest) if os.path.islink(dest) else None
        link = f"{dest}.link.{os.getpid()}"
        os.symlink(os.path.basename(stage), link)
        os.replace(link, dest)                       # atomic: readers see the old copy or the new
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old and old != stage and os.path.dirname(old) == parent:
        shutil.rmtree(old, ignore_errors=True)
    return stage


def fetch(path, dest, region):
    """Read, check and install the parameters under `path`; returns (copy dir, file names)."""
    prefix = path.rstrip("/") + "/"
    files, problems = assemble(path, read_parameters(client(region), path))
    if problems:
        raise SsmError(problems)
    return install(files, dest, prefix), sorted(files)


def region_of_instance():
    """AWS_DEFAULT_REGION, else IMDS placement/region (as the bootstrap does)."""
    from appliance.aws import imds
    if os.environ.get("AWS_DEFAULT_REGION"):
        return imds.check_region(os.environ["AWS_DEFAULT_REGION"], "AWS_DEFAULT_REGION")
    return imds.check_region(imds.Imds().region(), "IMDS placement/region")


def fetch_for(cfg, region=None, out=None):
    """The fetch `cfg.aws` asks for; returns a one-line summary. Raises SsmError."""
    from appliance.aws import imds
    try:
        region = region or region_of_instance()
    except imds.ImdsError as e:
        raise SsmError([f"ssm:{cfg.aws.ssm_path}: region: {e}"]) from None
    stage, names = fetch(cfg.aws.ssm_path, cfg.aws.ssm_dir, region)
    return (f"{len(names)} file(s) from ssm:{cfg.aws.ssm_path}/ ({region}) checked and installed at "
            f"{cfg.aws.ssm_dir} -> {os.path.basename(stage)}: {', '.join(names)}")


def main_ssm_fetch(args):
    import argparse
    import sys
    from appliance import config
    p = argparse.ArgumentParser(prog="appliance ssm-fetch",
                                description="Fetch appliance.yaml and rules from SSM Parameter Store "
                                            "(aws.config_source: ssm), check them, install them.")
    p.add_argument("--config", default="/etc/appliance/appliance.yaml",
                   help="the local config naming aws.ssm_path (default /etc/appliance/appliance.yaml)")
    a = p.parse_args(args)
    try:
        cfg = config.load_config(a.config)
    except config.ConfigError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 2
    if cfg.aws.config_source != "ssm":
        print(f"{a.config}: aws.config_source is {cfg.aws.config_source}, not ssm: nothing to fetch",
              file=sys.stderr)
        return 2
    try:
        print(fetch_for(cfg))
    except SsmError as e:
        print("\n".join(e.problems), file=sys.stderr)
        print(f"appliance ssm-fetch: nothing installed; {cfg.aws.ssm_dir} still holds the previous copy "
              "(if any), and a running appliance keeps its rules", file=sys.stderr)
        return 1
    return 0
