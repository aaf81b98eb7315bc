"""samples -> files: the output formats (`registry`; one module each: writer + stock reader), the
manifest, convert (its stages in plan, output, finalise), verify, digests, remote folders."""
