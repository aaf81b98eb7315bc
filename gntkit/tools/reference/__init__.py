"""Plain-Python references: readers of every source format and the kernels' arithmetic written the
obvious way, independent of gntkit's kernels. The tests hold every kernel to them; the benchmarks
time them as the simplest baseline."""
