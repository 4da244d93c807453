"""The raw baseline: an accept-all netfilterqueue consumer, the Python ceiling for one queue.

    python3 -m bench.rawqueue QUEUE

Binds QUEUE, accepts every packet, prints "ready" once bound; on SIGTERM prints
{"verdicts": n} and exits.
"""
import json
import signal
import sys

from netfilterqueue import NetfilterQueue


def main(argv):
    q = int(argv[0])
    n = [0]

    def accept(pkt):
        pkt.accept()
        n[0] += 1

    def stop(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    nfq = NetfilterQueue()
    nfq.bind(q, accept, max_len=4096)
    print("ready", flush=True)
    try:
        nfq.run()
    except KeyboardInterrupt:
        pass
    finally:
        nfq.unbind()
        print(json.dumps({"verdicts": n[0]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
