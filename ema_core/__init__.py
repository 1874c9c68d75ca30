"""emaboard's training-side library: EMA/SWA averaging, weight statistics, snapshots, streaming."""
