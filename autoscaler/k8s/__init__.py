"""Kubernetes conventions shared by every stage: quantities, selectors, times, Status errors.

Each module follows apimachinery's behaviour so that what we print and parse matches what
kubectl, kube-apiserver and the upstream controllers print and parse.
"""
