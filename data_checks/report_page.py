"""One self-contained HTML page per validation, readable offline: Great Expectations' own Data Docs
load Bootstrap, jQuery and their tables from CDNs (its index is blank without them), so every
validation (ingest, ``validate``, adaptation) also gets this page, with nothing fetched from
elsewhere. Escaped by Jinja2 (a tenant's text or label is data, never markup)."""
from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment

from workspace.tenants import check_tenant_id

_PAGE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ r.suite }} {{ run }}: {{ verdict }}</title>
<style>body{font:15px/1.45 sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f5f5f5}
.passed{color:#11702a}.failed{color:#b00020}</style></head><body>
<h1>{{ tenant }}: validation <span class="{{ verdict }}">{{ verdict }}</span></h1>
<p>data version md5:{{ run }} &middot; suite {{ r.suite }} &middot; Great Expectations {{ r.gx_version }}
&middot; checked {{ r.checked_at }}</p>
<h2>Failures</h2>{% if r.failures %}<ul>{% for f in r.failures %}<li>{{ f }}</li>{% endfor %}</ul>
{% else %}<p>none</p>{% endif %}
{% if r.warnings %}<h2>Warnings</h2><ul>{% for w in r.warnings %}<li>{{ w }}</li>{% endfor %}</ul>{% endif %}
<h2>Statistics</h2><table>{% for k, v in stats %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% if labels %}<h2>Examples per label</h2><table><tr><th>label</th><th>rows</th></tr>
{% for k, v in labels %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Leakage</h2><table>{% for k, v in leakage %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
</body></html>
""")


_INDEX = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tailor validations</title>
<style>body{font:15px/1.45 sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:left}</style></head><body>
<h1>Validations, newest first</h1><table><tr><th>tenant</th><th>data version</th><th>checked</th></tr>
{% for tenant, run, stamp, href in rows %}<tr><td>{{ tenant }}</td><td>md5:{{ run }}</td>
<td><a href="{{ href }}">{{ stamp }}</a></td></tr>{% endfor %}</table></body></html>
""")


def write_index(site: Path) -> Path:
    """``site``/tailor/index.html: every page of ``write_page``, newest first (relative links)."""
    root = Path(site) / "tailor"
    pages = sorted(root.glob("*/*/*.html"), key=lambda p: p.stem, reverse=True)
    rows = [(p.parts[-3], p.parts[-2], p.stem, p.relative_to(root).as_posix()) for p in pages]
    index = root / "index.html"
    tmp = root / f".index.html.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(_INDEX.render(rows=rows), encoding="utf-8")
    tmp.replace(index)
    return index


def write_page(site: Path, tenant: str, report, run_name: str) -> str:
    """Write ``report``'s page under ``site``/tailor/<tenant>/<run_name>/, list it in that folder's
    index, and return the page's file:// URI."""
    check_tenant_id(tenant)
    r = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    stats = {k: v for k, v in r["stats"].items() if k != "label_counts"}
    folder = Path(site) / "tailor" / tenant / str(run_name)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    page = folder / f"{stamp}.html"
    page.write_text(_PAGE.render(r=r, tenant=tenant, run=run_name, verdict="passed" if r["passed"] else "failed",
                                 stats=sorted(stats.items()), labels=sorted(r["stats"].get("label_counts", {}).items()),
                                 leakage=sorted((k, v) for k, v in r["leakage"].items())), encoding="utf-8")
    write_index(site)
    return page.resolve().as_uri()
