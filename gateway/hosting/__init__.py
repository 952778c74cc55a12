"""Hosting: how an agent declared in ``agent_cards/`` runs as A2A tasks.

- ``registry``: the loaded agent specs;
- ``runtimes``: a spec's ``runtime:`` resolved to an executor (by import string; adapters are never imported here);
- ``executor``: the runtime contract (``gateway.runtime``) mapped onto the A2A task lifecycle;
- ``local_tasks``: the request handler and the in-process runner of new tasks;
- ``required_fields``, ``data_parts``: the wire checks and conversions every task goes through;
- ``cleanup``: work that must finish under any cancellation (final saves, cancels at peers).
"""
