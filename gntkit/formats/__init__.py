"""gntkit.formats"""
