"""Retrieval: exact search, metrics, evaluation at every Matryoshka dim, quantization and the
storage frontier, paired statistics, and hard-negative mining. `settings` is light (no FAISS)."""
