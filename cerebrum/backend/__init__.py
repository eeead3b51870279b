"""The inference backend: llama.cpp models served over an OpenAI-compatible API."""
