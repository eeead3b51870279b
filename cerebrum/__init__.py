"""Cerebrum: a two-host LLM system for coding help on cheap hardware.

- ``cerebrum.backend``: the inference backend (llama.cpp, runs on the VPS).
- ``cerebrum.orchestrator``: the orchestrator (runs on the Raspberry Pi).
- ``cerebrum.prompt``: pure prompt optimisation used by the orchestrator.
- Shared pieces: ``config``, ``errors``, ``log``, ``middlewares``, ``openai_wire``
  (request types), ``bodies`` (bounded body reading), ``protocol`` (wire names),
  ``completion_log``.
"""

__version__ = "0.1.0"
