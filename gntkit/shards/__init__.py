"""samples -> files: the output formats (writers), manifest, convert, verify, digests, remote folders."""
