"""Compile searches (filter AST, order terms, experiments, paging) into ONE parameterised SQL query.

Every value in a filter becomes a bound parameter, never SQL text, so a filter such as
``tags.x = '; DROP TABLE runs;--'`` is matched literally.

Two plans, chosen by the shape of the search:

- *all matches* (no limit): each condition on a metric, param, tag or environment fact is an
  uncorrelated ``IN (SELECT run_id ...)`` over that table's (key, value) index, evaluated once;
- *the first N* (a limit): conditions are correlated ``EXISTS`` probes of the (run, key) primary keys,
  and the scan follows the order, so it stops after N matches. Ordering by a metric that the filter
  also constrains (``metrics.acc > 0.9`` ... ``order_by metrics.acc desc``), the scan walks that
  metric's (key, value) index itself: the top 100 of 100k runs costs milliseconds, not a full scan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, false, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from labtrack.core.errors import InvalidInput
from labtrack.core.filters import And, Compare, Field, InList, IsNull, Like, Node, Not, Or
from labtrack.core.model import Lifecycle, Search
from labtrack.core.query import OrderTerm
from labtrack.store import schema as db
from labtrack.store.versions import version_key

__all__ = ["lifecycle_condition", "search_queries", "search_query", "status_expression"]

_OPS = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}
_METRIC_COLUMNS = {
    "last": db.metrics.c.last_value,
    "min": db.metrics.c.min_value,
    "max": db.metrics.c.max_value,
    "count": db.metrics.c.count,
}
_ENV_NAMES = (
    "fingerprint", "python", "python.implementation", "os", "kernel", "libc", "cpu", "cpu.arch", "cpu.cores",
    "memory_gb", "gpu.count", "gpu.name", "gpu.driver", "gpu.cuda", "gpu.compute_capability",
)
_ENV_PREFIXES = ("packages.", "frameworks.")
_VERSIONED = ("python", "kernel", "gpu.driver", "gpu.cuda", "packages.", "frameworks.")
_ORDER_ATTRIBUTES = ("start_time", "end_time", "status", "name", "id", "run_id", "heartbeat_time", "experiment")


def status_expression(stale_before: float) -> Any:
    """The status a reader shows: RUNNING with a heartbeat older than ``stale_before`` is CRASHED."""
    return case(
        (and_(db.runs.c.status == "RUNNING", db.runs.c.heartbeat_time < stale_before), literal("CRASHED")),
        else_=db.runs.c.status,
    )


def lifecycle_condition(lifecycle: Lifecycle, deleted_time: Any) -> Any:
    """The condition on a ``deleted_time`` column that selects live rows, deleted ones, or all."""
    if lifecycle is Lifecycle.ACTIVE:
        return deleted_time.is_(None)
    if lifecycle is Lifecycle.DELETED:
        return deleted_time.is_not(None)
    return true()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad(field: Field, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", field=str(field))


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _timestamp(field: Field, value: Any) -> float:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()  # naive = local time, as `labtrack runs` shows
        except ValueError:
            pass
    raise _bad(field, f"compare with a date such as '2026-11-01' or '2026-11-01 14:30', got {value!r}")


class _Compiler:
    def __init__(self, stale_before: float, dialect: str, *, correlated: bool = False) -> None:
        self.status = status_expression(stale_before)
        self.dialect = dialect
        self.correlated = correlated

    def compile(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self.compile(item) for item in node.items))
        if isinstance(node, Or):
            return or_(*(self.compile(item) for item in node.items))
        if isinstance(node, Not):
            return not_(self.compile(node.item))
        kind = node.field.kind
        return getattr(self, f"_{kind}")(node)

    # -- value conditions on one column ---------------------------------------------------------

    def _condition(self, node: Compare | InList | Like, number: Any, text: Any, field: Field) -> Any:
        """The condition on a (number, text) column pair: numbers compare as numbers, the rest as text."""
        if isinstance(node, Compare):
            if _is_number(node.value) and number is not None:
                return _OPS[node.op](number, node.value)
            if text is None:
                raise _bad(field, f"compares with numbers, got {node.value!r}")
            return _OPS[node.op](text, _text(node.value))
        if isinstance(node, InList):
            numbers = [v for v in node.values if _is_number(v)]
            texts = [_text(v) for v in node.values if not _is_number(v) or number is None]
            parts = []
            if numbers and number is not None:  # as floats: the list takes its SQL type from its first item
                parts.append(number.in_([float(v) for v in numbers]))
            if texts:
                if text is None:
                    raise _bad(field, f"compares with numbers, got {texts[0]!r}")
                parts.append(text.in_(texts))
            return or_(*parts)
        if text is None:
            raise _bad(field, "LIKE needs a text field; metrics are numbers")
        # The backslash escapes %, _ and itself on both backends (ESCAPE '\'), so a literal % can be matched.
        # ILIKE folds case with lower() (a Unicode-aware one is installed on SQLite connections).
        if node.case_insensitive:
            return text.ilike(node.pattern, escape="\\")
        return text.like(node.pattern, escape="\\")

    def _has(self, table: Any, key: str, condition: Any = None) -> Any:
        """The run has a row for ``key`` in ``table`` (meeting ``condition``): an IN list or an EXISTS probe."""
        where = [table.c.key == key] + ([condition] if condition is not None else [])
        if self.correlated:
            return exists().where(table.c.run_id == db.runs.c.id, *where)
        return db.runs.c.id.in_(select(table.c.run_id).where(*where))

    def _keyed(self, node: Node, table: Any, key: str, number: Any, text: Any) -> Any:
        """The run has a row for ``key`` meeting the condition (IS NULL: has no row for ``key``)."""
        field = node.field  # type: ignore[union-attr]
        if isinstance(node, IsNull):
            present = self._has(table, key)
            return present if node.negated else not_(present)
        condition = self._condition(node, number, text, field)  # type: ignore[arg-type]
        if getattr(node, "negated", False):  # NOT IN / NOT LIKE, like !=, only speak of runs that have the key
            condition = not_(condition)
        return self._has(table, key, condition)

    # -- field kinds --------------------------------------------------------------------------

    def _metrics(self, node: Node) -> Any:
        field = node.field  # type: ignore[union-attr]
        return self._keyed(node, db.metrics, field.key, _METRIC_COLUMNS[field.aggregate], None)

    def _params(self, node: Node) -> Any:
        return self._keyed(node, db.params, node.field.key, db.params.c.num, db.params.c.text)  # type: ignore[union-attr]

    def _tags(self, node: Node) -> Any:
        return self._keyed(node, db.tags, node.field.key, None, db.tags.c.value)  # type: ignore[union-attr]

    def _attributes(self, node: Node) -> Any:
        field = node.field  # type: ignore[union-attr]
        name = field.key
        if name in ("start_time", "end_time"):
            column = db.runs.c[name]
            if isinstance(node, IsNull):
                return column.is_not(None) if node.negated else column.is_(None)
            if isinstance(node, Compare):
                return _OPS[node.op](column, _timestamp(field, node.value))
            if isinstance(node, InList):
                condition = column.in_([_timestamp(field, v) for v in node.values])
                return not_(condition) if node.negated else condition
            raise _bad(field, "LIKE does not apply to times")
        special: Any = {"experiment": db.experiments.c.name, "status": self.status}.get(name)
        column = special if special is not None else db.runs.c[name]
        if isinstance(node, IsNull):
            return column.is_not(None) if node.negated else column.is_(None)
        if isinstance(node, Compare) and name == "status":
            node = Compare(field, node.op, _text(node.value).upper())
        condition = self._condition(node, None, column, field)  # type: ignore[arg-type]
        return not_(condition) if getattr(node, "negated", False) else condition

    def _env(self, node: Node) -> Any:
        field = node.field  # type: ignore[union-attr]
        name = field.key
        if name.startswith("packages."):
            name = "packages." + re.sub(r"[-_.]+", "-", name[len("packages."):]).lower()
        if name == "fingerprint":
            return self._attributes(_with_field(node, Field("attributes", "env_fingerprint")))
        if name not in _ENV_NAMES and not name.startswith(_ENV_PREFIXES):
            raise _bad(field, f"unknown environment fact; use one of {', '.join(_ENV_NAMES)}, packages.<name> "
                              "or frameworks.<name>")
        facts = db.env_facts
        # Environments are few (one per machine set-up): an IN list over them is small in either plan.
        by_name = select(facts.c.fingerprint).where(facts.c.name == name)
        if isinstance(node, IsNull):
            missing = or_(db.runs.c.env_fingerprint.is_(None), db.runs.c.env_fingerprint.not_in(by_name))
            return not_(missing) if node.negated else missing
        versioned = name.startswith(_VERSIONED)
        if isinstance(node, Compare) and versioned and isinstance(node.value, str) and "+" not in node.value:
            key = version_key(node.value)
            if key is not None:
                condition = and_(facts.c.vkey.is_not(None), _OPS[node.op](facts.c.vkey, key))
                return db.runs.c.env_fingerprint.in_(by_name.where(condition))
        condition = self._condition(node, facts.c.num, facts.c.text, field)  # type: ignore[arg-type]
        if getattr(node, "negated", False):
            condition = not_(condition)
        return db.runs.c.env_fingerprint.in_(by_name.where(condition))

    def metric_bound(self, node: Node, column: Any) -> Any:
        """A top-level condition on the driving metric, as a condition on the driver's own column."""
        return self._condition(node, column, None, node.field)  # type: ignore[arg-type,union-attr]


def _with_field(node: Node, field: Field) -> Node:
    if isinstance(node, Compare):
        return Compare(field, node.op, node.value)
    if isinstance(node, InList):
        return InList(field, node.values, node.negated)
    if isinstance(node, Like):
        return Like(field, node.pattern, node.case_insensitive, node.negated)
    if isinstance(node, IsNull):
        return IsNull(field, node.negated)
    return node


def _order_terms(i: int, term: OrderTerm, query: Any, status: Any) -> tuple[Any, list[Any]]:
    """ORDER BY terms for one key, with the joins they need. Missing values sort last."""

    def direction(column: Any) -> Any:
        return (column.desc() if term.descending else column.asc()).nulls_last()

    if term.kind == "attributes":
        if term.key not in _ORDER_ATTRIBUTES:
            raise InvalidInput(
                f"cannot order by attributes.{term.key}; choose from {', '.join(_ORDER_ATTRIBUTES)}",
                field="order_by",
            )
        column = {"experiment": db.experiments.c.name, "status": status, "run_id": db.runs.c.id}.get(term.key)
        return query, [direction(column if column is not None else db.runs.c[term.key])]
    if term.kind == "metrics":
        alias = db.metrics.alias(f"om{i}")
        query = query.outerjoin(alias, and_(alias.c.run_id == db.runs.c.id, alias.c.key == term.key))
        return query, [direction(alias.c[_METRIC_COLUMNS[term.aggregate].name])]
    if term.kind == "params":
        alias = db.params.alias(f"op{i}")
        query = query.outerjoin(alias, and_(alias.c.run_id == db.runs.c.id, alias.c.key == term.key))
        return query, [direction(alias.c.num), direction(alias.c.text)]
    if term.kind == "tags":
        alias = db.tags.alias(f"ot{i}")
        query = query.outerjoin(alias, and_(alias.c.run_id == db.runs.c.id, alias.c.key == term.key))
        return query, [direction(alias.c.value)]
    raise InvalidInput(f"cannot order by {term.kind}.{term.key}", field="order_by")


def search_query(search: Search, dialect: str) -> Any:
    """SELECT runs.id ... for a search; the caller loads the records of the ids it returns."""
    return search_queries(search, dialect)[0]


def search_queries(search: Search, dialect: str) -> list[Any]:
    """The queries that select a search's ids, to run in turn until ``max_results`` are found (the caller
    lowers each later query's limit to what is still missing): usually one.

    Two for the first page of runs sorted by a metric that no condition constrains: the runs that have the
    metric, walking its index in order (stopping after ``max_results``), then the runs without it. In one
    query those need an outer join of every run to the metric and a sort of them all (~150 ms at 100k runs,
    against ~1 ms)."""
    compiler = _Compiler(search.stale_before, dialect, correlated=search.max_results is not None)
    driver = _metric_driver(search.filter, search.order_by) if search.max_results is not None else None
    if driver is not None:
        return [_driven_query(driver, compiler, search)]
    if search.max_results is not None and search.offset == 0 and search.order_by and search.order_by[0].kind == "metrics":
        term = search.order_by[0]
        column = _METRIC_COLUMNS[term.aggregate]
        with_metric = _driven_query((term, [], _top_level(search.filter)), compiler, search)
        has_it = exists().where(db.metrics.c.run_id == db.runs.c.id, db.metrics.c.key == term.key,
                                db.metrics.c[column.name].is_not(None))
        return [with_metric, _generic_query(search, compiler, [not_(has_it)])]
    return [_generic_query(search, compiler, [])]


def _generic_query(search: Search, compiler: _Compiler, extra: list[Any]) -> Any:
    query = select(db.runs.c.id).join(db.experiments, db.experiments.c.id == db.runs.c.experiment_id)
    conditions = _scope(search) + extra
    if search.filter is not None:
        conditions.append(compiler.compile(search.filter))
    query = query.where(and_(*conditions))
    ordering: list[Any] = []
    for i, term in enumerate(search.order_by):
        query, terms = _order_terms(i, term, query, compiler.status)
        ordering.extend(terms)
    if not search.order_by:
        ordering.append(db.runs.c.start_time.desc())
    ordering.append(db.runs.c.id)
    query = query.order_by(*ordering).offset(search.offset)
    if search.max_results is not None:
        query = query.limit(search.max_results)
    return query


def _scope(search: Search) -> list[Any]:
    """The conditions on which runs a search looks at, before its filter: live or deleted, of which
    experiments, with which run key."""
    conditions: list[Any] = [lifecycle_condition(search.lifecycle, db.runs.c.deleted_time)]
    if search.experiments is not None:
        conditions.append(db.experiments.c.name.in_(list(search.experiments)) if search.experiments else false())
    if search.run_key is not None:
        conditions.append(db.runs.c.run_key == search.run_key)
    return conditions


def _top_level(node: Node | None) -> list[Node]:
    if node is None:
        return []
    return list(node.items) if isinstance(node, And) else [node]


def _metric_driver(
    node: Node | None, order_by: Sequence[OrderTerm]
) -> tuple[OrderTerm, list[Node], list[Node]] | None:
    """When the first order term is a metric that a top-level AND condition constrains (so runs without
    it cannot match), the scan can walk that metric's index in order: (the term, those conditions, the
    other top-level conditions)."""
    if not order_by or order_by[0].kind != "metrics":
        return None
    term = order_by[0]
    bounds: list[Node] = [
        item for item in _top_level(node)
        if isinstance(item, (Compare, InList)) and item.field.kind == "metrics"
        and item.field.key == term.key and item.field.aggregate == term.aggregate
        and all(_is_number(v) for v in ([item.value] if isinstance(item, Compare) else item.values))
    ]
    others = [item for item in _top_level(node) if not any(item is b for b in bounds)]
    return (term, bounds, others) if bounds else None


def _driven_query(driver: tuple[OrderTerm, list[Node], list[Node]], compiler: _Compiler, search: Search) -> Any:
    term, bounds, others = driver
    om = db.metrics.alias("om0")
    column = om.c[_METRIC_COLUMNS[term.aggregate].name]
    query = (
        select(db.runs.c.id)
        .select_from(om)
        .join(db.runs, db.runs.c.id == om.c.run_id)
        .join(db.experiments, db.experiments.c.id == db.runs.c.experiment_id)
    )
    conditions: list[Any] = [om.c.key == term.key, column.is_not(None)]
    conditions += [compiler.metric_bound(b, column) for b in bounds]
    conditions += [compiler.compile(item) for item in others]
    conditions += _scope(search)
    query = query.where(and_(*conditions))
    ordering: list[Any] = [column.desc() if term.descending else column.asc()]
    for i, later in enumerate(search.order_by[1:], start=1):
        query, terms = _order_terms(i, later, query, compiler.status)
        ordering.extend(terms)
    ordering.append(db.runs.c.id)
    return query.order_by(*ordering).offset(search.offset).limit(search.max_results)
