"""Kubelet collector: node targets, HTTPS client, payload decoders and the scrape loop.

Entry points: :class:`autoscaler.scraper.collector.Collector`, :class:`ScrapeOptions`,
``add_arguments`` / ``options_from_args`` (metrics-server's kubelet flags).
"""
