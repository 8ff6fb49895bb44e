"""`python -m metarl.train`: the off-policy training command line (metarl.train.command)."""
from metarl.train.command import main

if __name__ == "__main__":
    main()
