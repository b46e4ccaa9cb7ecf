"""A run: the settings from options and files, measuring one planned check, and the results
document with its metadata."""
