"""What makes two strategies the same: a block's structure, up to names, numbers, comments and docstrings.

The report counts distinct strategies with it; rejecting a proposal that repeats one already tried needs the
same definition, so it lives with the fixed metric rather than in the report.
"""

from __future__ import annotations

import ast
import hashlib

from autotrade.data.ohlcv import COLUMN_ORDER

INPUT_COLUMNS = frozenset(COLUMN_ORDER)  # input columns: their names say what is computed, so they stay


class _Normaliser(ast.NodeTransformer):
    """Renames identifiers and feature-column strings by order of first use, and blanks numbers.

    Two blocks that differ only in names, feature-column names, parameters, comments or docstrings
    normalise to the same tree: an SMA 10/30 crossover and an SMA 20/50 crossover are one strategy.
    OHLCV column names, attributes (the operations) and keyword names stay, since they change what is computed.
    """

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}

    def _alias(self, key: str) -> str:
        return self.aliases.setdefault(key, f"v{len(self.aliases)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._alias(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._alias(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._alias(node.name)
        node.returns = None
        node.body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))] or [
            ast.Pass()
        ]
        self.generic_visit(node)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, str):
            node.value = value if value in INPUT_COLUMNS else self._alias("str:" + value)
        elif isinstance(value, int | float | complex) and not isinstance(value, bool):
            node.value = 0
        return node


def structure_hash(tree: ast.Module) -> str:
    """sha256 (first 12 hex digits) of the normalised syntax tree; docstrings and bare constants dropped."""
    copy = ast.parse(ast.unparse(tree))
    copy.body = [s for s in copy.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    normal = _Normaliser().visit(copy)
    dumped = ast.dump(normal, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dumped.encode()).hexdigest()[:12]
