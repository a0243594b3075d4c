"""The report: what a run means and how it is shown.

Leaderboard, overfitting statistics, the held-out window, diversity and spend; text, HTML and plots.
"""
