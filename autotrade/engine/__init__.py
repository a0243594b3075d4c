"""The engine: a backtest of signals (fills after the signal, costs charged), its metrics, and statistics.

The statistics (PSR, DSR, PBO) say how much of a result is luck.
"""
