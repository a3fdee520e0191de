"""The live HPA controller: informers, work queue, /scale, status, events, leader election.

Every replica count, condition, event and status comes from :func:`autoscaler.hpa.decide`;
this package only gathers the inputs (HPA, Scale, pods, metrics) and applies the outcome.
"""
