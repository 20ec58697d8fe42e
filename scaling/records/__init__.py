"""Results on disk and in the shared database: loading files into one table (`load`), the SQL
store (`store`, `database`). The record contract itself is `scaling.schema`."""
