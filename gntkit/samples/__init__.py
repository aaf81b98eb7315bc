"""records -> samples: charset, preprocessing, splits, the SampleBatch stream."""
