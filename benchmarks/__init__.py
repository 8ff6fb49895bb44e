"""What `make bench*` runs: each paper's tables beside ours, the throughput benchmark and its peers, the GPU kit."""
