"""The meta-learning methods, each wrapping the agents of metarl.agents: meta_critic, metagenrl/,
model_based_critic/, outer_value/, lirpg, epg, rl2 (with their outputs and protocols)."""
