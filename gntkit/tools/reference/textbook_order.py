"""The textbook layer order of a gntkit network, for tests and benchmarks: each ReLU before its max pool.

gntkit's builders put each 2x2 max pool before its convolution's ReLU
(gntkit.models.configs.feature_layers); tutorials write conv, ReLU, pool. The
tests compare the two orders and bench_train times the textbook one as its baseline.
"""


def textbook_layers(layers, max_pool_type, relu_type) -> tuple[list, int]:
    """`layers` (the same objects, so the same weights) with each (max pool, ReLU) pair swapped back.

    Works on any framework's layers: `max_pool_type` and `relu_type` are its classes
    (torch.nn.MaxPool2d and torch.nn.ReLU, or keras' MaxPooling2D and ReLU).

    Returns:
        The reordered list and how many pairs were swapped.
    """
    layers = list(layers)
    swapped = [i for i in range(len(layers) - 1)
               if isinstance(layers[i], max_pool_type) and isinstance(layers[i + 1], relu_type)]
    for i in swapped:
        layers[i], layers[i + 1] = layers[i + 1], layers[i]
    return layers, len(swapped)
