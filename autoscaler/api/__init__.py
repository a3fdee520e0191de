"""The ``metrics.k8s.io`` API (v1 and v1beta1): objects index, REST resources, rendering, tables, discovery, OpenAPI."""
