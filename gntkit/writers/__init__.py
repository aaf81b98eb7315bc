"""gntkit.writers"""
