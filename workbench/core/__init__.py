"""Low helpers every layer may use: errors, metrics, tables, distributed ranks, progress, keys and settings."""
