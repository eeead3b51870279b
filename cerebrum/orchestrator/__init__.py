"""The orchestrator (runs on the Pi): correlation, load shedding, prompt preparation,
circuit-broken SSE streaming to one or more OpenAI-compatible backends.

It never imports llama-cpp-python: the Pi only forwards.
"""
