"""Control-plane telemetry: Prometheus metric families from the actors' statistics, and a small /metrics server."""
