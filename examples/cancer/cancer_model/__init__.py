"""A breast-cancer classifier with a feature transformer of its own."""
