"""`appliance rules test DIR`: rule unit tests, the way Suricata users run suricata-verify.

cases.py reads the test files (FILE:LINE for every problem), packets.py turns a small YAML
description of traffic into a capture, runner.py replays each case through the same
pipeline as `appliance replay` and prints expected vs got. docs/rules.md has the format.
"""
