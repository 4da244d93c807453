"""Inline firewall / IDS appliance: NFQUEUE + one Python inspection pipeline."""
__version__ = "0.1.0"
