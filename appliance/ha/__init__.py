"""High availability: two appliances, one active, the VPC's route tables saying which (docs/ha.md).

machine.py    the state machine (pure: observations in, a decision with its reason out)
heartbeat.py  authenticated UDP heartbeats and probes (HMAC-SHA256, sequence + time window)
routes.py     the `routes` takeover method: read the route tables, ReplaceRoute when justified
settings.py   the `ha:` section of appliance.yaml
service.py    `appliance ha` (the loop) and `appliance ha status`
"""
