"""The replay simulator: traces (trace, csvtrace, recorder), the load model (load), the engine
that drives the real HPA decision core on a virtual clock (engine), scores, what-if sweeps
(sweep), plots and reports, and the `autoscaler sim replay` / `autoscaler record` commands."""
