"""Research: the loop that proposes, evaluates and keeps the best.

Its typed attempts, population, learnings, run directory and the reward entry point.
"""
