"""The edge: synth, demo, preview, warm-up and compile-ahead. May import any layer; only the CLI imports it."""
