"""Agent cards: building them, signing them, the keys that sign, and verifying other gateways' cards.

- ``build``: the card served for a hosted agent (``build_card``, ``CardDocument``);
- ``signing``: JWS over the canonical card, JWKS, trust policies for peers' cards;
- ``keys``: the key ring (generated, loaded, rotated, retired);
- ``verify``: ``switchboard card verify`` and what it reports.
"""
