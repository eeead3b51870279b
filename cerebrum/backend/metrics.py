"""The backend's own metrics: model loads, unloads, load time, loaded models and their RAM."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ModelMetrics:
    """Updated by the ModelManager at each load and unload."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.loads = Counter("cerebrum_model_loads", "Model loads", ["model"], registry=registry)
        self.unloads = Counter("cerebrum_model_unloads", "Model unloads, by reason",
                               ["model", "reason"], registry=registry)
        self.load_seconds = Histogram("cerebrum_model_load_seconds", "Time to load a model",
                                      ["model"], registry=registry,
                                      buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.loaded = Gauge("cerebrum_model_loaded", "1 while the model is loaded", ["model"],
                            registry=registry)
        self.ram_bytes = Gauge("cerebrum_model_ram_bytes",
                               "Estimated RAM of each loaded model (file size + KV cache)",
                               ["model"], registry=registry)

    def loaded_model(self, model: str, seconds: float, ram_mb: float) -> None:
        self.loads.labels(model).inc()
        self.load_seconds.labels(model).observe(seconds)
        self.loaded.labels(model).set(1)
        self.ram_bytes.labels(model).set(ram_mb * 1024 * 1024)

    def unloaded_model(self, model: str, reason: str) -> None:
        self.unloads.labels(model, reason).inc()
        self.loaded.labels(model).set(0)
        self.ram_bytes.labels(model).set(0)
