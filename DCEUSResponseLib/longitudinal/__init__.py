"""Exams over time: response rules and comparisons of analyses."""
