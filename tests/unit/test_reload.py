"""The SIGHUP handoff (appliance/reload.py): the supervisor's checked rule set reaches a
worker whole, through a real pipe, prepared beside the running rules."""
import os
import threading

from appliance.config import Config
from appliance.detect.loader import load_rules
from appliance.reload import CHUNK, Inbox, Outbox, encode


def _rules(tmp_path, n):
    body = "\n".join(f"  - {{id: {i}, action: drop, proto: tcp, dst_port: {1000 + i}}}" for i in range(1, n + 1))
    f = tmp_path / "r.yaml"
    f.write_text("default_action: drop\nrules:\n" + body + "\n")
    return load_rules([str(f)])


def test_the_checked_rule_set_arrives_whole_in_order_and_prepared(tmp_path):
    rs = _rules(tmp_path, CHUNK * 2 + 7)          # several chunks, the last one short
    cfg = Config(outside="eth0", inside="eth1", rules=str(tmp_path / "r.yaml"))
    r, w = os.pipe()
    done = threading.Event()
    got = []

    def prepare(c, ruleset):
        got.append((c, ruleset))
        done.set()
        return ("prepared", c, ruleset)
    inbox = Inbox(r, prepare)
    out = Outbox(w)
    out.put(encode(cfg, rs))
    while out.pending:                            # more than a pipe holds: written as the reader drains
        out.flush()
    assert done.wait(10)
    assert inbox.pending()
    tag, c, ruleset = inbox.take()
    assert tag == "prepared" and c == cfg and not inbox.pending()
    assert [x.id for x in ruleset.rules] == [x.id for x in rs.rules]
    assert ruleset.default_action == "drop" and ruleset.sources == rs.sources
    # the files are not read again: removing them changes nothing that was sent
    (tmp_path / "r.yaml").unlink()
    assert ruleset.rules[-1].dst_port == rs.rules[-1].dst_port
    out.close()
    inbox.thread.join(5)
    assert not inbox.thread.is_alive()            # EOF: the supervisor is gone, the reader ends


def test_an_outbox_never_blocks_on_a_worker_that_does_not_read(tmp_path):
    rs = _rules(tmp_path, 3000)
    r, w = os.pipe()
    out = Outbox(w)
    out.put(encode(Config(outside="a", inside="b"), rs))
    out.flush()                                   # fills the pipe and returns
    assert out.pending and out.started
    for _ in range(5):                            # more SIGHUPs: only the newest waits behind it
        out.put(encode(Config(outside="a", inside="b"), rs))
    assert len(out.pending) == 2
    os.close(r)
    out.flush()                                   # the reader is gone: dropped, no exception
    assert not out.pending
    out.close()


def _result(check):
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = check.poll()
        if r is not None:
            return r
        time.sleep(0.01)
    raise AssertionError("no check result")


def test_the_check_runs_beside_the_supervisor_at_a_lower_priority(tmp_path):
    import multiprocessing
    from appliance.config import ConfigError
    from appliance.reload import CHECK_NICE, Check
    ctx = multiprocessing.get_context("fork")
    here = os.getpid(), os.getpriority(os.PRIO_PROCESS, 0)
    ok = _result(Check(ctx, lambda: (os.getpid(), os.getpriority(os.PRIO_PROCESS, 0), _rules(tmp_path, 3))))
    assert ok[0] == "ok" and ok[1] != here[0] and ok[2] == min(here[1] + CHECK_NICE, 19)
    assert [r.id for r in ok[3].rules] == [1, 2, 3]

    def bad():
        raise ConfigError(["appliance.yaml:4: unknown key 'wokers'"])
    assert _result(Check(ctx, bad)) == ("refused", ["appliance.yaml:4: unknown key 'wokers'"])
    assert _result(Check(ctx, lambda: os._exit(3)))[0] == "refused"


def test_a_check_that_never_finishes_is_refused_not_waited_for():
    import multiprocessing
    import time
    from appliance.reload import Check
    check = Check(multiprocessing.get_context("fork"), lambda: time.sleep(30), timeout=0.3)
    verdict, problems = _result(check)
    assert verdict == "refused" and "could not be read within 0.3s" in problems[0]
    assert not check.proc.is_alive()
