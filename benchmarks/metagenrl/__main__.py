"""``python -m benchmarks.metagenrl``: the MetaGenRL benchmark's command line (benchmarks.metagenrl.command)."""
from benchmarks.metagenrl.command import main

if __name__ == "__main__":
    main()
