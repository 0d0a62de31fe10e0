"""Dataset modules register themselves at import; add new ones here."""

from bench.datasets import community, dfew, ferv39k, folder, mafw, synthetic  # noqa: F401
