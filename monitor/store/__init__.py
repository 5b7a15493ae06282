"""The SQL store: tables, queries and the writer that commits batches."""
