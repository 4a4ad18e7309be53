"""Benchmarks: a local site, loopback servers, baselines and the driver.

Layering: `site` writes pages to disk; `servers` serves them (nginx or aiohttp)
and runs the latency server; `bare` and `scrapy_spider` are the baselines;
`run` is the driver that launches every tool as a subprocess and measures it.
Nothing here imports `scraper`: our scraper is measured only through its CLI.
"""
