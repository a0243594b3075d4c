"""The data stage: market bars from a source, validated, split into windows and prepared once into `data/`.

- `ohlcv`: the canonical OHLCV frame (column names and order) and the validating CSV and frame reader.
- `sources`: where bars come from, behind one `Source` protocol: a bundled sample, a CSV file, a yfinance download.
- `windows`: the `Window` names (train, val, test, full); pandas-free, so the CLI can offer them.
- `splits`: the split dates, the default rule that picks them and each window's rows.
- `prepared`: `prepare_data` writes the prepared files and meta.json; `load_prepared` reads them back.
- `plan`: `EvalPlan`, what one evaluation runs a candidate on (assets × windows) and the bars that gives it.

Later stages import `prepared`, `windows` and `plan`; nothing here imports a later stage.
"""
