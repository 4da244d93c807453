"""A full disk under the live datapath: EVE write errors never change a verdict and never
stop a worker (they used to raise through process() and, from the flow clock's tick(),
kill the worker into a restart loop with bypass windows in open mode)."""
import time

import pytest

from datapath import curl, wait_for
from test_datapath import appliance, servers, url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.netns


def test_eve_on_a_full_device_changes_no_verdict_and_kills_no_worker(dp_topo, appliance):  # noqa: F811
    t = dp_topo
    a = appliance(workers=2, failure_mode="closed")
    a.config_text = a.config_text.replace("eve: eve.json", "eve: /dev/full")   # every write: ENOSPC
    a.config.write_text(a.config_text)
    a.start()
    pids = a.worker_pids()
    assert curl(t, url(t, 8080)).stdout == "200"                  # passed
    assert curl(t, url(t, 8081), max_time=2).returncode == 28     # dropped (an alert event is lost)
    r = t.ex(t.client, "nc", "-zv", "-w", "3", t.server_ip, "8082")
    assert r.returncode == 1 and "refused" in r.stderr.lower(), r   # rejected
    # closed TCP flows time out after 10 s: their flow events are written from tick()
    time.sleep(12)
    assert curl(t, url(t, 8080)).stdout == "200"
    assert a.worker_pids() == pids and "died" not in a.log_text()
    said = wait_for(lambda: a.log_text().count("cannot write (No space left on device)") >= 1 and a.log_text(),
                    what="the EVE failure said")
    assert said.count("cannot write (No space left on device)") <= 2   # once per worker at most
    assert a.stop() == 0
