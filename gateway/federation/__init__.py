"""Federation: agents of partner gateways hosted here, trusted by their signed cards, called over A2A.

``hub.Federation`` holds the peers and remote agents; ``discovery`` imports a peer's agents;
``remote_cards`` fetches, caches and verifies cards; ``republish`` rewrites a remote card for
this gateway; ``peers`` builds the SDK client of each remote agent; ``credentials`` authenticates
this gateway to a peer; ``hops`` carries the hop count, path and trace context and stops loops;
``mirror`` and ``links`` keep a local task in step with its remote task. The relay executor is
``adapters/a2a_remote.py``. Nothing is imported here, so the engine can use ``hops`` alone.
"""
