"""The base layer: errors, the check-family type, statistics, file writing and the option table.

Nothing here imports torch or any other layer of the package.
"""
