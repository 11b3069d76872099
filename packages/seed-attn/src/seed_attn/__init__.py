"""seed-attn: block-sparse, INT8/INT4 and PARO attention backends for seed-core's attention dispatch."""

__version__ = "0.1.0"
