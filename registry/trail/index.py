"""Finding audit records: the run tags of experiment ``tailor-audit`` are an index, nothing more.

A record is one MLflow run whose ``record_<i>`` tags hold its JSON; ``seq``, ``tenant`` (the
scope), ``action`` and ``phase`` are tags to search and order by. Anyone who can write the
tracking store can set them, so whatever is found here is checked by its content (``audit``):
a run whose ``seq`` tag lies is skipped, a record whose content names another scope is left out.
"""
from __future__ import annotations

import json

from registry.storage import store

GENESIS = "0" * 64
EXPERIMENT = "tailor-audit"
BASE_KEY = "_base"  # the lock/record key of tailor-base's transitions
_CHUNK = 7000  # MLflow tag values hold 8,000 characters: longer records are split over tags
_PAGE = 200


def scope_of(record: dict) -> str:
    """The sub-chain a record belongs to: its tenant, ``_base`` (tailor-base) or ``_keys``."""
    return record.get("scope") or record.get("tenant") or BASE_KEY


def experiment() -> str:
    return store.experiment_id(EXPERIMENT)


def remote_head(exp_id: str | None) -> dict:
    """The experiment's ``head`` tag: only a hint where the log ends (a store writer can set it)."""
    if exp_id is None:  # read-only, before the first record
        return {"count": 0, "hash": GENESIS}
    tags = store.client().get_experiment(exp_id).tags
    try:
        head = json.loads(tags["head"])
        return {"count": int(head["count"]), "hash": str(head["hash"])}
    except (KeyError, ValueError, TypeError):
        return {"count": 0, "hash": GENESIS}


def tags_of(record: dict) -> dict[str, str]:
    text = json.dumps(record, sort_keys=True, ensure_ascii=False)
    tags = {"seq": f"{record['seq']:09d}", "tenant": scope_of(record),
            "action": record["action"], "phase": record.get("phase") or "event"}
    for i in range(0, len(text), _CHUNK):
        tags[f"record_{i // _CHUNK}"] = text[i:i + _CHUNK]
    return tags


def parse(run) -> dict | None:
    tags, parts, i = run.data.tags, [], 0
    while f"record_{i}" in tags:
        parts.append(tags[f"record_{i}"])
        i += 1
    try:
        record = json.loads("".join(parts))
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
        return None
    record["_run_id"] = run.info.run_id
    return record


def search(filter_string: str = "", max_results: int | None = None) -> list[dict | None]:
    """Records matching ``filter_string``, in the order of their ``seq`` tag (unparseable runs are
    returned as None)."""
    c, out, token = store.client(), [], None
    exp = experiment()
    if exp is None:  # read-only, before the first record
        return out
    while True:
        page = c.search_runs([exp], filter_string=filter_string, order_by=["tags.seq ASC"],
                             max_results=min(max_results or 50000, 50000), page_token=token)
        out.extend(parse(run) for run in page)
        token = page.token
        if not token or (max_results and len(out) >= max_results):
            return out


def by_seq(seq: int) -> dict | None:
    """The record whose *content* says ``seq`` among the runs tagged so (a run whose tag lies is skipped)."""
    return next((r for r in search(f"tags.seq = '{seq:09d}'") if r and r["seq"] == seq), None)


def records_after(count: int, expect: int = 0) -> tuple[list[dict | None], dict | None]:
    """(the runs tagged above ``count`` as records, oldest first; the record tagged ``count``), read
    newest first and stopping there, so the cost is that of the new records, not of the log."""
    exp = experiment()
    if exp is None:
        return [], None
    c, out, token = store.client(), [], None
    size = max(2, min(_PAGE, expect + 2))
    while True:
        page = c.search_runs([exp], order_by=["tags.seq DESC"], max_results=size, page_token=token)
        for run in page:
            tag = run.data.tags.get("seq", "")
            if tag.isdigit() and int(tag) <= count:
                record = parse(run)
                return out[::-1], record if record and record["seq"] == count else None
            if tag.isdigit():
                out.append(parse(run))
        token = page.token
        if not token:
            return out[::-1], None
        size = _PAGE


def descending():
    exp, token = experiment(), None
    while exp is not None:
        page = store.client().search_runs([exp], order_by=["tags.seq DESC"], max_results=_PAGE, page_token=token)
        yield from (parse(run) for run in page)
        token = page.token
        if not token:
            return


def all_records() -> list[dict | None]:
    return search()


def records(ws: Workspace | None = None, tenant: str | None = None) -> list[dict]:
    """Every record (of one scope: a tenant, ``_base``, ``_keys``), oldest first. The index only
    finds them: a record whose content names another scope is left out, unreadable ones are
    skipped (``verify`` names them), an exact copy of a record counts once."""
    found = search("" if tenant is None else f"tags.tenant = '{tenant}'")
    out, seen = [], set()
    for r in sorted((r for r in found if r), key=lambda r: r["seq"]):
        if tenant is not None and scope_of(r) != tenant:
            continue
        if (r["seq"], r.get("hash")) not in seen:
            seen.add((r["seq"], r.get("hash")))
            out.append(r)
    return out
