"""Switchboard: a protocol gateway for multi-agent systems."""
