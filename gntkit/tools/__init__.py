"""The edge: synth, demo, preview, warm-up, compile-ahead and host malloc tuning. May import any layer; only the CLI imports it."""
