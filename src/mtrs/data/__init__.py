"""Data: readers, table joins, splits, histories, the processor, batches, synthetic logs."""
