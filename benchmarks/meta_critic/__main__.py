"""``python -m benchmarks.meta_critic``: the Online Meta-Critic benchmark's command line."""
from benchmarks.meta_critic.command import main

if __name__ == "__main__":
    main()
