"""The aggregated API server around the metrics API: TLS, delegated authn/authz, health, self-metrics, `run`."""
