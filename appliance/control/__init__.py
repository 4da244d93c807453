"""The control plane of `appliance run`: what the workers report, /metrics, /healthz,
/readyz, /status, and the `appliance status` / `appliance flows` commands (docs/operations.md).

  report.py   worker side: a counter snapshot every second, the flow table on request
  board.py    supervisor side: the latest snapshot per worker, requests and their replies
  kernel.py   what only the kernel knows: NFQUEUE, conntrack, our chains' counters
  metrics.py  the Prometheus collector (prometheus_client), built from the board and kernel
  server.py   the HTTP server (a thread of the supervisor) and its bind check
  client.py   `appliance status` / `appliance flows`: read /status and /flows
"""
