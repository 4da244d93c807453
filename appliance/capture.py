"""`appliance capture`: an operator's on-demand capture on the inside or outside interface.

    appliance capture --iface inside|outside|NAME [--filter BPF] --duration S --out FILE
                      [--max-bytes N] [--count N] [--snaplen N] [--config FILE]

Management plane only: tcpdump reads a copy of the interface's packets from an AF_PACKET
socket (not promiscuous: the interface is left as it is), beside the datapath; nothing
in netfilter or the queues changes. What it shows is the wire: packets as they arrive,
those the appliance then drops included, and the forwarded ones as they leave.

tcpdump writes classic pcap to a pipe; here each packet becomes a pcapng block (the
interface's name in its description) in FILE, and the bounds are ours, exact: the file
never grows past --max-bytes (the packet that would pass it ends the capture), the
capture ends after --duration seconds or --count packets. tcpdump was chosen over dumpcap
(which writes pcapng itself) because the appliance image already has it, and over scapy's
sniff because the kernel's filter (BPF, compiled by tcpdump) keeps unwanted packets out of
user space.
"""
import argparse
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading

from .output.pcapng import enhanced_packet, interface_description, section_header

DEFAULT_CONFIG = "/etc/appliance/appliance.yaml"
MAX_DURATION = 24 * 3600
_PCAP_HEADERS = {b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
                 b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9)}


def _size(text):
    from .config import _size as parse
    n = parse(text)
    if n is None or n < 4096:
        raise argparse.ArgumentTypeError(f"{text!r}: a size of at least 4096 bytes (an integer, or like 10M)")
    return n


def _interface(name, config_path):
    """inside/outside from the config's interfaces (discovered when `auto`), else a name of
    this host. Returns (interface, None) or (None, why)."""
    from .config import DISCOVERED, ConfigError, is_ifname, load_config, resolve_interfaces
    if name in ("inside", "outside"):
        try:
            cfg = load_config(config_path)
            if any(DISCOVERED.match(getattr(cfg, r) or "") for r in ("outside", "inside")):
                from .aws.bootstrap import discover_roles
                cfg = resolve_interfaces(cfg, discover=discover_roles)
        except ConfigError as e:
            return None, "\n".join(e.problems)
        name = getattr(cfg, name)
    if not is_ifname(name):
        return None, f"--iface: {name!r} is not inside, outside or an interface name"
    if not os.path.exists(f"/sys/class/net/{name}"):
        return None, f"--iface: interface {name!r} does not exist on this host"
    return name, None


def main_capture(args):
    ap = argparse.ArgumentParser(prog="appliance capture",
                                 description="capture an interface's packets to a pcapng file, bounded by "
                                             "time, size and count; never touches the datapath (root)")
    ap.add_argument("--iface", required=True, metavar="inside|outside|NAME",
                    help="the config's inside or outside interface, or an interface name")
    ap.add_argument("--filter", default="", metavar="BPF", help="a capture filter (tcpdump/pcap-filter syntax)")
    ap.add_argument("--duration", type=float, required=True, metavar="S",
                    help=f"stop after S seconds (at most {MAX_DURATION})")
    ap.add_argument("--out", required=True, metavar="FILE", help="the pcapng file to write (replaced)")
    ap.add_argument("--max-bytes", type=_size, default=100 << 20, metavar="N",
                    help="the file never grows past N bytes (default 100M): the packet that would pass it "
                         "ends the capture")
    ap.add_argument("--count", type=int, default=None, metavar="N", help="stop after N packets")
    ap.add_argument("--snaplen", type=int, default=65535, metavar="N", help="bytes kept of each packet")
    ap.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                    help=f"for inside/outside: the appliance config (default {DEFAULT_CONFIG})")
    o = ap.parse_args(args)
    if not 0 < o.duration <= MAX_DURATION:
        ap.error(f"--duration must be more than 0 and at most {MAX_DURATION} seconds")
    if o.count is not None and o.count < 1:
        ap.error("--count must be at least 1")
    if not 64 <= o.snaplen <= 262144:
        ap.error("--snaplen must be from 64 to 262144")
    iface, why = _interface(o.iface, o.config)
    if why:
        print(f"appliance capture: {why}", file=sys.stderr)
        return 2
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        print("appliance capture: needs tcpdump (apt install tcpdump)", file=sys.stderr)
        return 2
    check = subprocess.run([tcpdump, "-d", "-i", iface, "-s", str(o.snaplen), *([o.filter] if o.filter else [])],
                           capture_output=True, text=True)
    if check.returncode != 0:             # a bad filter (or no permission): tcpdump says which
        print(f"appliance capture: {check.stderr.strip().splitlines()[-1] if check.stderr.strip() else 'tcpdump failed'}",
              file=sys.stderr)
        return 2
    return capture(tcpdump, iface, o)


def capture(tcpdump, iface, o):
    cmd = [tcpdump, "-i", iface, "-p", "-n", "-U", "-s", str(o.snaplen), "-w", "-"]
    if o.count is not None:
        cmd += ["-c", str(o.count)]
    if o.filter:
        cmd.append(o.filter)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    timed_out = threading.Event()
    timer = threading.Timer(o.duration, lambda: (timed_out.set(), _stop(proc)))
    timer.daemon = True
    timer.start()
    old = signal.signal(signal.SIGINT, lambda *_: _stop(proc))   # Ctrl-C: a clean end, the file complete
    packets, size, why = 0, 0, "tcpdump ended"
    fd = os.open(o.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # payloads: for root's eyes
    try:
        r = proc.stdout
        head = _read(r, 24)
        if len(head) == 24 and head[:4] in _PCAP_HEADERS:
            order, div = _PCAP_HEADERS[head[:4]]
            linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
            rec = struct.Struct(order + "IIII")
            start = section_header() + interface_description(o.snaplen, iface, linktype)
            os.write(fd, start)
            size = len(start)
            while True:
                hdr = _read(r, 16)
                if len(hdr) < 16:
                    break
                sec, frac, caplen, wirelen = rec.unpack(hdr)
                data = _read(r, caplen)
                if len(data) < caplen:
                    break
                block = enhanced_packet(0, sec + frac / div, data, o.snaplen)
                if size + len(block) > o.max_bytes:
                    why = f"the file reached its size bound ({o.max_bytes} bytes)"
                    break
                os.write(fd, block)
                size += len(block)
                packets += 1
                if o.count is not None and packets >= o.count:
                    why = f"{packets} packets captured"
                    break
    finally:
        os.close(fd)
        timer.cancel()
        _stop(proc)
        try:
            err = proc.communicate(timeout=10)[1].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
        signal.signal(signal.SIGINT, old)
    if why == "tcpdump ended" and timed_out.is_set():
        why = f"{o.duration:g} s passed"
    drops = [line for line in err.splitlines() if "dropped by" in line and not line.startswith("0 ")]
    if size == 0:
        print(f"appliance capture: tcpdump did not start: {err.strip()}", file=sys.stderr)
        return 1
    print(f"appliance capture: {iface}: {packets} packets, {size} bytes in {o.out} ({why})"
          + (f"; tcpdump: {'; '.join(drops)}" if drops else ""), file=sys.stderr)
    return 0


def _read(f, n):
    """n bytes, or fewer at the end of the stream."""
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _stop(proc):
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)   # tcpdump writes what it holds and its counts, then exits
        except ProcessLookupError:
            pass
