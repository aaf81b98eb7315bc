"""gntkit: read CASIA handwriting files (GNT, POT, DGRL, in zips and ALZip archives) and the
MNIST family exactly and fast, convert them to training shards, feed PyTorch and TensorFlow,
and train reference models.

`import gntkit` loads only numpy, numba, pillow and rich; the heavy frameworks are
imported by the modules that use them.
"""

__version__ = "0.1.0"


def open(sources, charset="data", preprocess=None, **options):
    """Open source files of any format gntkit reads (.gnt, .pot, .dgrl, MNIST IDX), folders or
    archives: `len()`, iterate samples, or `.batches()`.

    See gntkit.samples.stream.Source for the arguments.
    """
    from gntkit.samples.stream import open_source

    return open_source(sources, charset, preprocess, **options)
