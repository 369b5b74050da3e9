"""Models: LLM backends (HRM and EBM later). Knows nothing of the bus, API or store."""
