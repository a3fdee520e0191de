"""Emulated Kubernetes cluster (API server, kubelets, workloads) and the replay simulator."""
