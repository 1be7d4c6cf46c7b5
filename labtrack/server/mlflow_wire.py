"""What labtrack's records look like to an MLflow client, and what an MLflow client's requests mean to labtrack.

Pure mapping, no I/O: the routes (``labtrack.server.mlflow_api``) read the request, call these, call the store.

- Experiment ids are labtrack's experiment ids as strings, except that the experiment named ``Default`` is
  always ``"0"``: an MLflow script that never calls ``set_experiment`` logs into experiment 0, and MLflow's
  convention is that experiment 0 is the default one. Ids are stable (database ids), on SQLite as on PostgreSQL.
- Run ids are labtrack's run ids (32 lowercase hex: what MLflow's own stores use too).
- The run name is the ``mlflow.runName`` tag (set on creation, as MLflow does), falling back to labtrack's name;
  ``run_name`` in a filter or an ordering means that tag, so renaming a run through MLflow is searched right.
- The user is the ``mlflow.user`` tag. Times are milliseconds on the MLflow side, seconds in labtrack.
- Status: RUNNING, FINISHED, FAILED, KILLED map to themselves; labtrack's CRASHED (the process died) is FAILED
  for MLflow, which has no such state; SCHEDULED (MLflow's) is accepted as RUNNING.
- Metric values: NaN and ±inf travel as protobuf's JSON strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
- Filters: MLflow's search grammar (``metrics.acc > 0.9 and params.lr = '0.01' and tags."a b" = 'x'``,
  ``attributes.status``, ``run_name``, ``run_id IN (...)``, ``start_time`` in ms, LIKE/ILIKE, IN, IS NULL, and
  also OR and parentheses) is parsed here into labtrack's filter AST (``labtrack.core.filters``): the store
  compiles it to SQL as it does any labtrack search.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labtrack.core.errors import (
    ArtifactNotFound,
    AuthenticationFailed,
    ExperimentNotFound,
    InvalidInput,
    LabtrackError,
    PermissionDenied,
    RequestTooLarge,
    RunNotFound,
    StoreError,
)
from labtrack.core.filters import And, Compare, Field, InList, IsNull, Like, Node, Not, Or
from labtrack.core.model import Experiment, Lifecycle, RunRecord, RunStatus
from labtrack.core.query import OrderTerm
from labtrack.core.series import Chunk
from labtrack.core.validation import (
    check_key,
    coerce_foreign_param_value,
    coerce_step,
    coerce_tag_value,
    coerce_timestamp,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "MAX_FILTER_DEPTH",
    "MAX_ORDER_TERM",
    "NOTE_TAG",
    "RUN_NAME_TAG",
    "USER_TAG",
    "MlflowError",
    "artifact_root",
    "experiment_id",
    "experiment_json",
    "experiment_matches",
    "experiment_order",
    "from_ms",
    "int_field",
    "lifecycle_of",
    "metric_value",
    "metrics_of",
    "mlflow_error",
    "number_json",
    "page_offset",
    "page_token",
    "params_of",
    "parse_order_by",
    "parse_search_filter",
    "run_info_json",
    "run_json",
    "run_name_of",
    "status_of",
    "string_field",
    "tags_of",
    "to_ms",
]

DEFAULT_EXPERIMENT = "Default"  # MLflow's experiment "0"
MAX_FILTER_DEPTH = 50  # parentheses and NOTs inside each other in a search filter
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
NOTE_TAG = "mlflow.note.content"


class MlflowError(Exception):
    """An error in MLflow's JSON shape ``{"error_code": ..., "message": ...}`` with its HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error_code": self.code, "message": self.message}


# labtrack's errors as MLflow's codes (MLflow's client reads the code; its retries follow the status: 5xx, 429).
_CODES: list[tuple[type[LabtrackError], str]] = [
    (AuthenticationFailed, "UNAUTHENTICATED"),
    (PermissionDenied, "PERMISSION_DENIED"),
    (RunNotFound, "RESOURCE_DOES_NOT_EXIST"),  # before InvalidInput: AmbiguousRunId is a RunNotFound
    (ExperimentNotFound, "RESOURCE_DOES_NOT_EXIST"),
    (ArtifactNotFound, "RESOURCE_DOES_NOT_EXIST"),
    (RequestTooLarge, "INVALID_PARAMETER_VALUE"),
    (InvalidInput, "INVALID_PARAMETER_VALUE"),
    (StoreError, "TEMPORARILY_UNAVAILABLE"),
]


def mlflow_error(exc: LabtrackError) -> MlflowError:
    """A labtrack error as MLflow's client expects it: the code it knows, the status labtrack gives."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            if code == "RESOURCE_DOES_NOT_EXIST":
                return MlflowError(code, str(exc), 404)
            return MlflowError(code, str(exc), 400 if exc.status_code == 409 else exc.status_code)  # ParamConflict
    return MlflowError("INTERNAL_ERROR", str(exc), exc.status_code)


# -- plain values ----------------------------------------------------------------------------------


def to_ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def from_ms(ms: float) -> float:
    return ms / 1000.0


def string_field(body: Mapping[str, Any], name: str, *, required: bool = True, default: str | None = None) -> Any:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Missing value for required parameter '{name}'.")
        return default
    if not isinstance(value, str):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Parameter '{name}' must be a string, got {type(value).__name__}.")
    return value


def int_field(body: Mapping[str, Any], name: str, default: int | None = None) -> Any:
    """An int64 field: a number, or a string of digits (protobuf's JSON writes int64 so)."""
    value = body.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Parameter '{name}' must be an integer, got {value!r}.")
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Parameter '{name}' must be a 64-bit integer, got {value!r}.")
    return value


_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def metric_value(value: Any, key: str) -> float:
    """A metric value as MLflow sends it: a number, or protobuf's ``"NaN"``/``"Infinity"``/``"-Infinity"``."""
    if isinstance(value, str):
        if value in _SPECIAL:
            return _SPECIAL[value]
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise MlflowError("INVALID_PARAMETER_VALUE", f"Got invalid value {value!r} for metric '{key}': send a number.")


def number_json(value: float) -> float | str:
    """A double as protobuf's JSON writes it (NaN and ±inf as strings: plain JSON has no such numbers)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


# -- what a request logs ----------------------------------------------------------------------------


def tags_of(items: Any, field: str = "tags") -> dict[str, str]:
    """MLflow's ``[{key, value}]`` tags, each key and value checked as labtrack checks its own."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"'{field}' must be a list of {{key, value}} objects.")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Each of '{field}' must be a {{key, value}} object.")
        key = check_key(item.get("key"), "tag key")
        out[key] = coerce_tag_value(item.get("value", ""), key)
    return out


def params_of(items: Any) -> dict[str, Any]:
    """MLflow's ``[{key, value}]`` params (strings), checked; one key twice with two values is refused."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise MlflowError("INVALID_PARAMETER_VALUE", "'params' must be a list of {key, value} objects.")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict):
            raise MlflowError("INVALID_PARAMETER_VALUE", "Each of 'params' must be a {key, value} object.")
        key = check_key(item.get("key"), "param key")
        value = item.get("value", "")
        if not isinstance(value, str):
            raise MlflowError("INVALID_PARAMETER_VALUE", f"The value of param '{key}' must be a string.")
        if key in out and out[key] != value:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Duplicate parameter keys with different values: '{key}'.")
        out[key] = coerce_foreign_param_value(value, key)
    return out


def metrics_of(items: Any, now_ms: int) -> dict[str, Chunk]:
    """MLflow's ``[{key, value, timestamp, step}]`` points as a chunk per key (timestamps ms -> s; a point without
    one is stamped ``now_ms``, without a step is step 0)."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise MlflowError("INVALID_PARAMETER_VALUE", "'metrics' must be a list of {key, value, timestamp, step}.")
    chunks: dict[str, Chunk] = defaultdict(Chunk.empty)
    for item in items:
        if not isinstance(item, dict):
            raise MlflowError("INVALID_PARAMETER_VALUE", "Each of 'metrics' must be a {key, value, timestamp, step}.")
        key = check_key(item.get("key"), "metric key")
        value = metric_value(item.get("value"), key)
        step = coerce_step(int_field(item, "step", 0), key)
        timestamp = coerce_timestamp(from_ms(int_field(item, "timestamp", now_ms)), key)
        chunk = chunks[key]
        chunk.steps.append(step)
        chunk.timestamps.append(timestamp)
        chunk.values.append(value)
    return dict(chunks)


# -- experiments and runs --------------------------------------------------------------------------


def experiment_id(experiment: Experiment) -> str:
    return "0" if experiment.name == DEFAULT_EXPERIMENT else str(experiment.id)


def artifact_root(exp_id: str) -> str:
    return f"mlflow-artifacts:/{exp_id}"


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    exp_id = experiment_id(experiment)
    created = to_ms(experiment.created_time)
    updated = to_ms(experiment.deleted_time) if experiment.deleted_time is not None else created
    return {"experiment_id": exp_id, "name": experiment.name, "artifact_location": artifact_root(exp_id),
            "lifecycle_stage": "deleted" if experiment.deleted_time is not None else "active",
            "creation_time": created, "last_update_time": updated}


def run_name_of(record: RunRecord) -> str:
    from labtrack.core.names import run_name

    return record.tags.get(RUN_NAME_TAG) or record.name or run_name(record.id)


def _param_text(value: Any) -> str:
    """A labtrack param as MLflow's string: strings as they are, other values as JSON (a run logged through
    labtrack's own API may hold numbers, lists, dicts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def status_of(record: RunRecord) -> str:
    return "FAILED" if record.status is RunStatus.CRASHED else str(record.status)


def run_info_json(record: RunRecord, exp_id: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": record.id, "run_uuid": record.id, "run_name": run_name_of(record), "experiment_id": exp_id,
        "user_id": record.tags.get(USER_TAG, ""), "status": status_of(record), "start_time": to_ms(record.start_time),
        "artifact_uri": f"{artifact_root(exp_id)}/{record.id}/artifacts",
        "lifecycle_stage": "deleted" if record.deleted_time is not None else "active",
    }
    if record.end_time is not None:
        info["end_time"] = to_ms(record.end_time)
    return info


def run_json(record: RunRecord, exp_id: str) -> dict[str, Any]:
    """A run as MLflow's ``Run`` message: info, and data with each metric's latest point, params and tags."""
    tags = dict(record.tags)
    if record.note and NOTE_TAG not in tags:  # labtrack's note is MLflow's description
        tags[NOTE_TAG] = record.note
    metrics = [{"key": s.key, "value": number_json(s.last), "timestamp": to_ms(s.last_timestamp), "step": s.last_step}
               for s in record.metrics.values()]
    return {"info": run_info_json(record, exp_id),
            "data": {"metrics": metrics,
                     "params": [{"key": k, "value": _param_text(v)} for k, v in record.params.items()],
                     "tags": [{"key": k, "value": v} for k, v in tags.items()]},
            "inputs": {}}


_VIEW_TYPES = {"ACTIVE_ONLY": Lifecycle.ACTIVE, "DELETED_ONLY": Lifecycle.DELETED, "ALL": Lifecycle.ALL,
               1: Lifecycle.ACTIVE, 2: Lifecycle.DELETED, 3: Lifecycle.ALL}


def lifecycle_of(view_type: Any) -> Lifecycle:
    """MLflow's ViewType (a name, or its number in the protobuf enum) as labtrack's lifecycle."""
    if view_type is None or view_type == "":
        return Lifecycle.ACTIVE
    try:
        return _VIEW_TYPES[view_type]
    except (KeyError, TypeError):
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"Invalid view type {view_type!r}: choose ACTIVE_ONLY, DELETED_ONLY or ALL.") from None


# -- pages -----------------------------------------------------------------------------------------


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: Any) -> int:
    """The offset a page token (from ``page_token``) stands for; 0 for none."""
    if token is None or token == "":
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        offset = data["offset"]
        if isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset < 2**53:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid page token {str(token)[:80]!r}: use the one a search returned.")


# -- search: MLflow's filter and order_by in labtrack's terms --------------------------------------

_ENTITIES = {"metric": "metrics", "metrics": "metrics", "param": "params", "params": "params",
             "parameter": "params", "parameters": "params", "tag": "tags", "tags": "tags",
             "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes"}
# MLflow's run attributes: (labtrack field, whether its values are times in ms)
_ATTRIBUTES: dict[str, tuple[Field, bool]] = {
    "run_id": (Field("attributes", "id"), False), "run_uuid": (Field("attributes", "id"), False),
    "run_name": (Field("tags", RUN_NAME_TAG), False), "status": (Field("attributes", "status"), False),
    "start_time": (Field("attributes", "start_time"), True), "end_time": (Field("attributes", "end_time"), True),
    "user_id": (Field("tags", USER_TAG), False), "created": (Field("attributes", "start_time"), True),
    "Created": (Field("attributes", "start_time"), True),
}

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<backtick>`[^`]*`)
    | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][\w\-/:]*)
    | (?P<dot>\.)
    )""", re.VERBOSE)


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[pos:].lstrip())
            raise _bad_filter(text, f"unexpected character {text[start]!r} at column {start + 1}")
        out.append(_Tok(match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
        pos = match.end()
    out.append(_Tok("end", "", len(text)))
    return out


def _bad_filter(text: str, why: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", f"Invalid filter {text[:200]!r}: {why}.")


def _unquote(token: str) -> str:
    quote, body = token[0], token[1:-1]
    return re.sub(r"\\(.)", r"\1", body.replace(quote * 2, quote))


class _FilterParser:
    """MLflow's search filter: comparisons joined by AND (and, beyond MLflow, OR, NOT and parentheses)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0  # parentheses and NOTs open: bounded, so a hostile filter is refused, not a RecursionError

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def take(self) -> _Tok:
        tok = self.tok
        self.i += 1
        return tok

    def fail(self, why: str) -> MlflowError:
        return _bad_filter(self.text, f"{why} at column {self.tok.pos + 1}")

    def parse(self) -> Node:
        node = self.disjunction()
        if self.tok.kind != "end":
            raise self.fail(f"unexpected {self.tok.text!r}")
        return node

    def disjunction(self) -> Node:
        items = [self.conjunction()]
        while self.word("or"):
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Node:
        items = [self.negation()]
        while self.word("and"):
            self.take()
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self) -> Node:
        if self.word("not") or (self.tok.kind == "punct" and self.tok.text == "("):
            self.depth += 1
            if self.depth > MAX_FILTER_DEPTH:
                raise self.fail(f"more than {MAX_FILTER_DEPTH} parentheses or NOTs inside each other")
            try:
                if self.take().text == "(":
                    node = self.disjunction()
                    if not (self.tok.kind == "punct" and self.tok.text == ")"):
                        raise self.fail("expected ')'")
                    self.take()
                    return node
                return Not(self.negation())
            finally:
                self.depth -= 1
        return self.comparison()

    def identifier(self) -> tuple[Field, bool]:
        first = self.take()
        if first.kind not in ("word", "backtick"):
            raise _bad_filter(self.text, f"expected an identifier such as metrics.acc at column {first.pos + 1}")
        name = first.text.strip("`")
        if self.tok.kind != "dot":
            if name in _ATTRIBUTES:
                return _ATTRIBUTES[name]
            raise _bad_filter(self.text, f"unknown identifier {name!r}: write metrics.<key>, params.<key>, "
                                         "tags.<key> or attributes.<name>")
        entity = _ENTITIES.get(name.lower())
        if entity is None:
            raise _bad_filter(self.text, f"unsupported entity {name!r}: use metrics, params, tags or attributes")
        self.take()  # the dot
        key_tok = self.take()
        if key_tok.kind in ("string", "backtick"):
            key = _unquote(key_tok.text) if key_tok.kind == "string" else key_tok.text[1:-1]
        elif key_tok.kind == "word":
            key = key_tok.text
            while self.tok.kind == "dot":  # tags.mlflow.source.type: the rest of the dotted name is the key
                self.take()
                if self.tok.kind not in ("word", "number"):
                    raise self.fail("expected a key after '.'")
                key += "." + self.take().text
        else:
            raise _bad_filter(self.text, f"expected a key after {name}. at column {key_tok.pos + 1}")
        if entity == "attributes":
            if key not in _ATTRIBUTES:
                raise _bad_filter(self.text, f"unsupported attribute {key!r}: choose from run_id, run_name, status, "
                                             "start_time, end_time, user_id")
            return _ATTRIBUTES[key]
        check_key(key, f"{entity} key in filter")
        return Field(entity, key), False

    def value(self, field: Field, times: bool) -> Any:
        tok = self.take()
        if tok.kind == "string":
            value: Any = _unquote(tok.text)
            if times:
                raise _bad_filter(self.text, f"{field} takes a number of milliseconds, not {tok.text}")
            return value
        if tok.kind == "number":
            number = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            if field.kind in ("params", "tags") or (field.kind == "attributes" and not times):
                raise _bad_filter(self.text, f"{field} holds strings: quote the value ({tok.text} -> '{tok.text}')")
            return from_ms(number) if times else number
        raise _bad_filter(self.text, f"expected a value at column {tok.pos + 1}")

    def comparison(self) -> Node:
        field, times = self.identifier()
        if self.word("is"):
            self.take()
            negated = bool(self.word("not")) and self.take() is not None
            if not self.word("null"):
                raise self.fail("expected NULL")
            self.take()
            return IsNull(field, negated)
        negated = bool(self.word("not")) and self.take() is not None
        if self.word("in"):
            self.take()
            if not (self.tok.kind == "punct" and self.tok.text == "("):
                raise self.fail("expected '(' after IN")
            self.take()
            values = [self.value(field, times)]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
                values.append(self.value(field, times))
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.fail("expected ')' to close IN (...)")
            self.take()
            return InList(field, tuple(values), negated)
        if self.word("like", "ilike"):
            insensitive = self.take().text.lower() == "ilike"
            pattern = self.value(field, times)
            if not isinstance(pattern, str):
                raise self.fail("LIKE takes a quoted pattern")
            return Like(field, pattern, insensitive, negated)
        if negated:
            raise self.fail("expected IN, LIKE or ILIKE after NOT")
        if self.tok.kind != "op":
            raise self.fail("expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN)")
        op = {"==": "=", "<>": "!="}.get(self.tok.text, self.tok.text)
        self.take()
        value = self.value(field, times)
        if field == Field("attributes", "status") and isinstance(value, str) and value.upper() == "SCHEDULED":
            value = "RUNNING"
        return Compare(field, op, value)


def parse_search_filter(text: str | None) -> Node | None:
    """MLflow's ``filter`` string as labtrack's filter AST (None for no filter)."""
    if text is None or not text.strip():
        return None
    if len(text) > 10_000:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Filter is {len(text)} characters; at most 10000.")
    return _FilterParser(text).parse()


MAX_ORDER_TERM = 600  # characters of one order_by term: a key is at most 250, quoted, with its entity and ASC/DESC


def parse_order_by(terms: Any) -> list[OrderTerm]:
    """MLflow's ``order_by`` (``metrics.acc DESC``, ``attributes.start_time``, ``params.`lr` ASC``) as labtrack's."""
    if terms is None:
        return []
    if isinstance(terms, str):
        terms = [terms]
    if not isinstance(terms, list) or len(terms) > 20:
        raise MlflowError("INVALID_PARAMETER_VALUE", "order_by must be a list of at most 20 terms.")
    out = []
    for term in terms:
        if not isinstance(term, str) or not term.strip() or len(term) > MAX_ORDER_TERM:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid order_by term {str(term)[:100]!r}: write "
                                                         "<metrics|params|tags|attributes>.<key> [ASC|DESC].")
        words = term.split()
        field, direction = term.strip(), "asc"
        if len(words) > 1 and words[-1].lower() in ("asc", "desc"):  # (split, not a regex: no backtracking)
            field, direction = term.strip()[:-len(words[-1])].rstrip(), words[-1].lower()
        parser = _FilterParser(field)
        try:
            key, _ = parser.identifier()
        except MlflowError:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid order_by term {term!r}: write "
                                                         "<metrics|params|tags|attributes>.<key> [ASC|DESC].") from None
        if parser.tok.kind != "end":
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid order_by term {term[:100]!r}.")
        out.append(OrderTerm(key.kind, key.key, direction == "desc"))
    return out


# -- searching experiments (few: matched here, not in SQL) -------------------------------------------

_EXPERIMENT_CLAUSE = re.compile(r"""\s*(?:(?P<tag>tags?\.(?:`[^`]*`|"[^"]*"|[\w.\-]+))|(?:attr(?:ibutes?)?\.)?(?P<field>name|
    creation_time|last_update_time))\s*(?P<op>!=|<>|<=|>=|==|=|<|>|\bnot\s+ilike\b|\bnot\s+like\b|\bilike\b|\blike\b)
    \s*(?P<value>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|[+-]?\d+(?:\.\d*)?)\s*(?:\band\b|$)""",
                               re.IGNORECASE | re.VERBOSE)


def _like(pattern: str, text: str, insensitive: bool) -> bool:
    """SQL's LIKE (``%`` any run, ``_`` one character) without backtracking: the pieces between ``%`` have fixed
    lengths, so each found leftmost is as good as any (one regex of ``.*`` per ``%`` took exponential time on a
    pattern like ``%a%a%a...b``)."""
    flags = re.DOTALL | (re.IGNORECASE if insensitive else 0)
    pieces = [re.compile("".join("." if c == "_" else re.escape(c) for c in piece), flags)
              for piece in pattern.split("%")]
    if len(pieces) == 1:
        return pieces[0].fullmatch(text) is not None
    first, *middle, last = pieces
    found = first.match(text)
    if found is None:
        return False
    at = found.end()
    for piece in middle:
        found = piece.search(text, at)
        if found is None:
            return False
        at = found.end()
    start = len(text) - (len(pattern) - pattern.rindex("%") - 1)  # the last piece's length: one per character
    return start >= at and last.fullmatch(text, start) is not None


def experiment_matches(text: Any) -> Callable[[Experiment], bool]:
    """SearchExperiments' filter: clauses on ``name`` (=, !=, LIKE, ILIKE), ``creation_time`` and
    ``last_update_time`` (ms) joined by AND; a clause on tags matches nothing (labtrack experiments have none)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return lambda _: True
    if not isinstance(text, str) or len(text) > 10_000:
        raise MlflowError("INVALID_PARAMETER_VALUE", "'filter' must be a string of at most 10000 characters.")
    clauses, pos = [], 0
    while pos < len(text):
        match = _EXPERIMENT_CLAUSE.match(text, pos)
        if match is None or match.end() == pos:
            raise _bad_filter(text, f"cannot read it from column {pos + 1}: write name = 'x', name LIKE 'x%', "
                                    "creation_time > <ms>, joined by AND")
        clauses.append(match)
        pos = match.end()

    def test(experiment: Experiment, clause: re.Match[str]) -> bool:
        if clause.group("tag"):
            return False
        op = " ".join(clause.group("op").lower().split())
        raw = clause.group("value")
        value: Any = _unquote(raw) if raw[0] in "'\"" else float(raw)
        field = clause.group("field").lower()
        have: Any = experiment.name if field == "name" else experiment_json(experiment)[field]
        if isinstance(value, str) != isinstance(have, str):
            raise _bad_filter(text, f"{field} compares with a {'string' if isinstance(have, str) else 'number'}")
        if op.endswith("like"):
            if not isinstance(value, str):
                raise _bad_filter(text, "LIKE takes a quoted pattern")
            return _like(value, have, "ilike" in op) != op.startswith("not")
        return {"=": have == value, "==": have == value, "!=": have != value, "<>": have != value,
                "<": have < value, "<=": have <= value, ">": have > value, ">=": have >= value}[op]

    return lambda experiment: all(test(experiment, c) for c in clauses)


_EXPERIMENT_KEYS = {"name": lambda e: e.name, "experiment_id": lambda e: int(experiment_id(e)),
                    "creation_time": lambda e: e.created_time,
                    "last_update_time": lambda e: e.deleted_time or e.created_time}


def experiment_order(experiments: list[Experiment], order_by: Any) -> list[Experiment]:
    """SearchExperiments' order_by (``name``, ``experiment_id``, ``creation_time``, ``last_update_time``, each
    ASC or DESC); by default the newest first, as MLflow."""
    terms = order_by if isinstance(order_by, list) else [order_by] if isinstance(order_by, str) else []
    out = sorted(experiments, key=lambda e: e.id)
    out.sort(key=lambda e: e.created_time, reverse=True)
    for term in reversed([t for t in terms if isinstance(t, str)]):
        words = term.split()
        name = words[0].split(".")[-1] if words else ""
        if name not in _EXPERIMENT_KEYS or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid order_by term {term[:100]!r}: choose name, "
                                                         "experiment_id, creation_time or last_update_time [ASC|DESC].")
        out.sort(key=_EXPERIMENT_KEYS[name], reverse=len(words) == 2 and words[1].lower() == "desc")
    return out
