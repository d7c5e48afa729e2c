"""Minimal baseline servers: the same queries and JSON as Agora's endpoints, nothing else."""
