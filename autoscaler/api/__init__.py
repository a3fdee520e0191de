"""The ``metrics.k8s.io/v1beta1`` API: objects index, REST resources, rendering, tables, discovery, OpenAPI."""
