"""Analysis tools: parameter/FLOPs/memory/cost, mask pictures, attention rank, emergence metrics."""
