"""The trade.py contract is stated once (autotrade/contract.py) and every part of the harness holds to it."""

from __future__ import annotations

import ast

from autotrade.candidate import baseline_source, extract_block, is_guarded, runnable_source
from autotrade.contract import ALLOWED_MODULES, BUY, FUNCTIONS, HOLD, MODULES, SELL, SIGNALS, SIGNATURES
from autotrade.propose.prompts import engine_rules
from autotrade.propose.reply import FORMAT_HINT
from autotrade.sandbox.execute import exec_block
from autotrade.sandbox.vet import ALLOWED_IMPORTS, PROVIDED_NAMES


def test_the_packaged_trade_py_defines_each_entry_point_with_its_parameter_and_is_written_guarded() -> None:
    source = baseline_source()
    assert is_guarded(runnable_source(source, extract_block(source)))
    functions = {node.name: node for node in ast.parse(extract_block(source)).body if isinstance(node, ast.FunctionDef)}
    assert {name: [a.arg for a in functions[name].args.args] for name in FUNCTIONS} == {
        name: [param] for name, param in FUNCTIONS.items()
    }


def test_the_block_is_given_the_contract_modules_under_their_aliases() -> None:
    namespace = exec_block(extract_block(baseline_source()))
    assert {alias: namespace[alias].__name__ for alias in MODULES} == dict(MODULES)
    assert PROVIDED_NAMES == set(MODULES) and set(ALLOWED_IMPORTS) == set(ALLOWED_MODULES)


def test_the_model_is_told_the_contract_signals_and_signatures() -> None:
    assert SIGNALS == {BUY, SELL, HOLD} == {1, -1, 0}
    rules = engine_rules("next-open", 2.0)
    assert f"returns {BUY} = buy" in rules and f"{SELL} = sell" in rules and f"{HOLD} = hold" in rules
    assert SIGNATURES == "generate_features(df) and strategy_logic(row)" and SIGNATURES in FORMAT_HINT
