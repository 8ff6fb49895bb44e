"""``python -m benchmarks.throughput``: the throughput benchmark's command line (benchmarks.throughput.command)."""
from benchmarks.throughput.command import main

if __name__ == "__main__":
    main()
