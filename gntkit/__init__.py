"""gntkit: read CASIA HWDB handwriting archives exactly and fast, convert them to
training shards, feed PyTorch and TensorFlow, and train reference models.

`import gntkit` loads only numpy, numba and pillow; the heavy frameworks are
imported by the modules that use them.
"""

__version__ = "0.1.0"
