"""Data: readers, table joins, splits, behaviour histories, the processor, batches, synthetic logs."""
