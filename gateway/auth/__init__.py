"""Inbound identity and policy: who is calling, and may they call this agent or skill.

- ``policy``: ``AuthPolicy`` (API keys and OAuth issuers, scopes per agent and skill, ``may_call``);
- ``api_keys``, ``jwt``: the two kinds of credentials a caller presents;
- ``http``, ``grpc``: the guards that apply the policy on each wire.
"""
