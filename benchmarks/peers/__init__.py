"""The throughput benchmark's peers: each runs in a virtual environment of its own (pinned in the
*_requirements.txt here, created on first use) and is driven from benchmarks/throughput.py through
benchmarks/peers/drivers.py. The *_sac.py / *_td3.py / rejax_peer.py scripts run inside those venvs."""
