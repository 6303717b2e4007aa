"""Documents to training data: readers (.txt/.md/.html/.pdf), structure-aware chunking, structure
pairs, LLM question generation and its filters. `prepare.py` is the command line."""
