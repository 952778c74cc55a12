"""Bridges from the gateway to agent runtimes, resolved by import string."""
