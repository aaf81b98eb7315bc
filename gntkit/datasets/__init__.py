"""gntkit.datasets"""
