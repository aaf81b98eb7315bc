"""gntkit.kernels"""
