"""gntkit.models"""
