"""gntkit.training"""
