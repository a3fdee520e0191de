"""Emulated kubelets: per-node stats (:mod:`.stats`), payloads (:mod:`.payload`), HTTPS endpoints
with kubelet authn/authz and fault injection (:mod:`.server`), and the pod lifecycle (:mod:`.pods`)."""
