"""Fleet mode: the appliance as a target of an AWS Gateway Load Balancer (docs/gwlb.md).

settings.py    the `gwlb:` section of appliance.yaml
steering.py    which worker's socket a GENEVE datagram lands on (SO_REUSEPORT + classic BPF)
worker.py      one GENEVE worker process (appliance.source.gwlb in the one loop, reloads, stats)
health.py      the target group's health check endpoint
supervisor.py  `appliance run` in fleet mode: sockets, workers, restarts, SIGHUP, SIGTERM drain
"""
