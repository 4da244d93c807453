"""One GENEVE worker process of fleet mode, forked by fleet.supervisor.

It takes its socket from the supervisor (created and kept there: fleet.steering), builds
its Inspector, says "bound" on its status pipe and runs the one loop (appliance.source.run)
over appliance.source.gwlb. Between datagrams, at most every 0.2 s (GwlbSource's idle):
a checked reload from the supervisor is swapped in (appliance.reload, as inline), flows
time out, SIGUSR1 writes the stats, and a worker whose supervisor is gone stops. SIGINT stops
it; SIGTERM is ignored (the supervisor's drain decides when: fleet.supervisor).

Status messages (supervisor <- worker, over a multiprocessing pipe):
    ("bound", rules)     the socket is ours and `rules` rules are loaded
    ("rules", rules)     a reload was swapped in
    ("alive", rules)     every second from the loop: a hung or stopped worker falls silent
"""
import ctypes
import json
import logging
import os
import signal
import sys
import time

from appliance import source
from appliance.detect.engine import Detector
from appliance.inspector import Inspector, settings_from_config
from appliance.output.eve import EveWriter
from appliance.reject import IcmpLimit, kernel_limits
from appliance.reload import Inbox
from appliance import gwlb_offload
from appliance.source.gwlb import GwlbSource, Senders, data_interface, interface_mtu

log = logging.getLogger("appliance.fleet")

PR_SET_PDEATHSIG = 1
TICK = 1.0                      # seconds between flow-timeout ticks (as the NFQUEUE worker)


def settings(cfg, running=None):
    """Inspector settings: no ingress interface says which side is outside behind a GWLB
    (both directions come through one tunnel), so direction comes from home_net; the
    flow table keeps its size across reloads."""
    return settings_from_config(cfg, outside_ifaces=(),
                                max_flows=running.max_flows if running else cfg.inspection.max_flows)


class Worker:
    def __init__(self, cfg, index, ruleset, sock, control, status, fast_path=False):
        self.cfg, self.index, self.ruleset = cfg, index, ruleset
        self.fast_path = fast_path   # the supervisor installed the kernel fast path's table
        self.sock, self.control, self.status = sock, control, status
        self.flags = set()
        self.parent = os.getppid()
        self.next_tick = 0.0
        self.iface = None          # the data interface: its MTU bounds what goes back whole

    def _send(self, *msg):
        try:
            self.status.send(msg)
        except OSError:
            pass

    def run(self) -> int:
        cfg = self.cfg
        signal.signal(signal.SIGHUP, signal.SIG_IGN)      # reloads come checked, over the pipe
        signal.signal(signal.SIGUSR1, lambda *_: self.flags.add("stats"))
        signal.signal(signal.SIGUSR2, lambda *_: self.flags.add("resync"))   # the supervisor emptied the sets
        self.eve = EveWriter(cfg.eve, max_bytes=cfg.eve_max_bytes, keep=cfg.eve_keep) if cfg.eve else None
        self.inspector = Inspector(self.ruleset, settings(cfg), self.eve, self._pcap_log(cfg))
        self.inbox = Inbox(self.control, lambda c, rs: (c, rs, Detector(rs, 0, c.inspection.exception_policy)),
                           name=f"reload-g{self.index}")
        g = cfg.gwlb
        flowsets = gwlb_offload.FlowSets() if self.fast_path else None
        self.src = GwlbSource(self.sock, Senders(g.senders), reply_port=g.reply_port, idle=self.idle,
                              defrag=self.inspector.defrag, offload=flowsets,
                              limit=IcmpLimit(**kernel_limits(), share=g.workers))   # the kernel's, shared
        if flowsets is not None:
            self.inspector.on_flow_end = flowsets.ended
        found = data_interface(g.listen, first_address(g.senders[0]))
        if found is not None:
            self.iface, self.src.mtu = found
        # SIGTERM is the supervisor's to act on (the drain): systemd sends it to every process
        # of the unit at once, and a worker that stopped on it would end the drain's service.
        # The supervisor stops its workers with SIGINT.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, lambda *_: self.src.stop())
        self._send("bound", len(self.ruleset.rules))
        log.info("gwlb worker %d: pid %d on %s:%d", self.index, os.getpid(), *self.sock.getsockname()[:2])
        try:
            source.run(self.src, self.inspector)
        finally:
            self.write_stats()
            if self.src.offload is not None:
                self.src.offload.release()
            if self.eve:
                self.eve.close()
            if self.inspector.pcap_log is not None:
                self.inspector.pcap_log.close()
        return 0

    def _pcap_log(self, cfg):
        if cfg.pcap_log is None:
            return None
        from appliance.output.pcap_log import PcapLog
        return PcapLog(cfg.pcap_log, f"g{self.index}")

    def idle(self):
        """Between two datagrams (GwlbSource calls it every `wait` seconds)."""
        if "resync" in self.flags:
            self.flags.discard("resync")
            if self.src.offload is not None:
                self.src.offload.resync()
        if self.flags:
            self.flags.clear()
            self.write_stats()
        if self.inbox.pending():
            self.swap(*self.inbox.take())
        now = time.monotonic()
        if now >= self.next_tick:
            self.next_tick = now + TICK
            self.inspector.tick(time.time())
            if self.inspector.pcap_log is not None:
                self.inspector.pcap_log.tick()
            self._send("alive", len(self.inspector.ruleset.rules))
            if self.iface is not None:
                try:                       # an operator may change it while we run
                    self.src.mtu = interface_mtu(self.iface)
                except (OSError, ValueError):
                    pass
            if os.getppid() != self.parent:
                log.error("gwlb worker %d: supervisor gone; stopping", self.index)
                self.src.stop()

    def swap(self, cfg, ruleset, detector):
        old_cfg, self.cfg = self.cfg, cfg
        enforced = self.inspector.reload(ruleset, settings(cfg, self.inspector.settings), detector)
        if enforced:                     # (never in the kernel's sets: Inspector._process; a reject answers their next packet)
            log.warning("gwlb worker %d: the reload enforces %d monitored flows", self.index, len(enforced))
        if cfg.pcap_log != old_cfg.pcap_log:
            old = self.inspector.pcap_log
            self.inspector.pcap_log = self._pcap_log(cfg)
            if old is not None:
                old.close()
        old, self.eve = self.eve, (EveWriter(cfg.eve, max_bytes=cfg.eve_max_bytes, keep=cfg.eve_keep)
                                   if cfg.eve else None)
        self.inspector.eve = self.eve
        if old:
            old.close()
        self._send("rules", len(ruleset.rules))
        log.info("gwlb worker %d: config and rules reloaded (%d rules)", self.index, len(ruleset.rules))

    def write_stats(self):
        """A stats event in EVE, and this worker's GENEVE counters as one JSON line on stderr."""
        from appliance.output import events
        if self.eve:
            self.eve.write(events.stats(self.inspector, time.time()))
        line = json.dumps({"gwlb_worker": self.index, "pid": os.getpid(), "gwlb": self.src.counters.as_dict(),
                           "verdicts": dict(self.inspector.counters.verdicts)})
        # one write with its newline: every worker shares the supervisor's stderr, and with
        # PYTHONUNBUFFERED print() writes the text and the newline apart, so two workers'
        # lines could land as one
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def first_address(network):
    """An address of a sender CIDR, to ask the routing table which interface leads there."""
    import ipaddress
    net = ipaddress.ip_network(network, strict=False)
    return str(net[1] if net.num_addresses > 2 else net.network_address)


def worker_main(cfg, index, ruleset, sock, control, status, inherited=(), fast_path=False):
    """Process entry point. `inherited`: descriptors of the supervisor (the other workers'
    sockets and pipes) this child must not keep."""
    for fd in inherited:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)   # die with the supervisor
    except (OSError, AttributeError):
        pass
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s appliance-gwlb[%(process)d] %(levelname)s %(message)s")
    sys.exit(Worker(cfg, index, ruleset, sock, control, status, fast_path).run())
