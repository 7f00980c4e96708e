"""Run TensorZero's gateway (embedded in its Python package) as an HTTP server on loopback.

    python bench/tensorzero_gateway.py tensorzero.toml url-file

Writes the gateway's OpenAI-compatible base URL to ``url-file`` and serves until SIGTERM. Run
with the Python of the environment TensorZero is installed in (``make bench-peers`` makes it).
"""

import signal
import sys

from tensorzero import _start_http_gateway  # the HTTP gateway its OpenAI client patch starts

if __name__ == "__main__":
    config, url_file = sys.argv[1], sys.argv[2]
    gateway = _start_http_gateway(
        config_file=config, clickhouse_url=None, postgres_url=None, valkey_url=None, async_setup=False
    )
    with open(url_file, "w", encoding="utf-8") as f:
        f.write(gateway.base_url)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    gateway.close()
