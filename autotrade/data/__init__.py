"""The data stage: market bars from a source, validated, split into windows and prepared once into `data/`.

- `ohlcv`: the canonical OHLCV frame (column names and order) and the validating CSV and frame reader.
- `sources`: where bars come from, behind one `Source` protocol: a bundled sample, a CSV file, a yfinance download.
- `splits`: the `Window` names, split dates, the default rule that picks them and each window's rows.
- `prepared`: `prepare_data` writes the prepared files and meta.json; `load_prepared` reads them back.

Later stages import `prepared` (and `splits` for windows); nothing here imports a later stage.
"""
