"""Challenge rules as data, ranking and rendering. Imports no torch."""
