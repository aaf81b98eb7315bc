"""gntkit: read CASIA HWDB handwriting archives exactly and fast, convert them to
training shards, feed PyTorch and TensorFlow, and train reference models.

`import gntkit` loads only numpy, numba and pillow; the heavy frameworks are
imported by the modules that use them.
"""

__version__ = "0.1.0"


def open(sources, charset="data", preprocess=None, **options):
    """Open .gnt files, folders or zips: `len()`, iterate samples, or `.batches()`.

    See gntkit.stream.GntSource for the arguments.
    """
    from gntkit.stream import open_source

    return open_source(sources, charset, preprocess, **options)
