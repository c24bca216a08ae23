"""The HTML report: one self-contained file (styles inline, images as base64 data URIs, no external links)."""
from __future__ import annotations

import base64
from typing import Any

import jinja2

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:2px} h2{font-size:18px;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
.sub{color:#666;margin-top:0} table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4} .kv td:first-child{font-weight:600;background:#fafafa} .grid{display:flex;flex-wrap:wrap;gap:12px}
.tile{width:240px;border:1px solid #ddd;border-radius:4px;padding:6px;font-size:12px;background:#fff}
.tile img{width:100%;display:block;border-radius:2px} .tile .n{font-weight:600;word-break:break-all}
.TP{color:#1e7e34}.TN{color:#1e7e34}.FP{color:#c0392b;font-weight:700}.FN{color:#c0392b;font-weight:700}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}
.card .v{font-size:22px;font-weight:700}.card .l{font-size:12px;color:#666}
.confusion td{text-align:center;min-width:90px} .num{text-align:right;font-variant-numeric:tabular-nums}
.charts img{max-width:100%} footer{margin-top:40px;color:#888;font-size:12px}
</style></head><body>
<h1>{{ title }}</h1>
<p class="sub">{{ subtitle }}</p>

<h2>Summary</h2>
<div class="cards">
{% for c in cards %}<div class="card"><div class="v">{{ c.value }}</div><div class="l">{{ c.label }}</div></div>
{% endfor %}</div>

<h2>Dataset</h2>
<table><tr><th>split</th><th>label</th><th class="num">items</th></tr>
{% for s in dataset.rows %}<tr><td>{{ s.split }}</td><td>{{ s.label }}</td><td class="num">{{ s.n }}</td></tr>
{% endfor %}<tr><th colspan="2">total</th><th class="num">{{ dataset.n_items }}</th></tr></table>
<p>Analyst review: {{ dataset.verdicts.normal }} normal, {{ dataset.verdicts.anomalous }} anomalous,
{{ dataset.verdicts.unsure }} unsure; {{ dataset.n_verified }} verified; {{ dataset.n_annotations }} annotation(s).
{% if dataset.label_classes %}Label classes:
{% for name, color in dataset.label_classes.items() %}<span style="color:{{ color }}">&#9632;</span> {{ name }}{% if not loop.last %}, {% endif %}{% endfor %}.{% endif %}</p>
{% if dataset.imports %}<p>Imported from: {% for i in dataset.imports %}{{ i.root }} ({{ i.format }}, {{ i.n_items }} items){% if not loop.last %}; {% endif %}{% endfor %}</p>{% endif %}

<h2>Model and parameters</h2>
{% if run %}<table class="kv">
{% for k, v in run_rows %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>
{% endfor %}</table>
{% if params %}<h3>Parameters</h3><table class="kv">{% for k, v in params %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% else %}<p>No run with scores in this project yet: the report covers the dataset and the analyst's labels only.</p>{% endif %}

<h2>Decision</h2>
<table class="kv"><tr><td>threshold</td><td>{{ threshold }}</td></tr><tr><td>minimum defect area</td><td>{{ min_area }} px</td></tr>
<tr><td>ground truth</td><td>{{ truth_text }}</td></tr></table>

<h2>Metrics</h2>
<table class="kv">{% for k, v in metric_rows %}<tr><td>{{ k }}</td><td class="num">{{ v }}</td></tr>{% endfor %}</table>
{% if confusion %}<h3>Confusion counts at the threshold</h3>
<table class="confusion"><tr><th></th><th>predicted anomalous</th><th>predicted normal</th></tr>
<tr><th>truly anomalous</th><td>TP {{ confusion.tp }}</td><td>FN {{ confusion.fn }}</td></tr>
<tr><th>truly normal</th><td>FP {{ confusion.fp }}</td><td>TN {{ confusion.tn }}</td></tr></table>{% endif %}
<div class="charts"><img alt="ROC, precision-recall and score histogram" src="data:image/png;base64,{{ charts_png }}"></div>

{% for g in galleries %}<h2>{{ g.title }}</h2>
<div class="grid">{% for t in g.tiles %}<div class="tile"><img alt="{{ t.name }}" src="data:image/jpeg;base64,{{ t.jpeg }}">
<div class="n">{{ t.name }}</div><div>score {{ t.score }} &middot; truth {{ t.truth }} &middot; <span class="{{ t.outcome }}">{{ t.outcome or t.predicted }}</span></div>
{% if t.verdict %}<div>analyst: {{ t.verdict }}{% if t.verified %} (verified){% endif %}</div>{% endif %}</div>{% endfor %}
{% if not g.tiles %}<p>No scored items.</p>{% endif %}</div>
{% endfor %}

<h2>Items ({{ rows|length }})</h2>
<table><tr><th>#</th><th>item</th><th>split</th><th>label</th><th class="num">score</th><th>predicted</th><th>truth</th><th>outcome</th><th class="num">regions</th><th class="num">defect px</th><th>analyst</th><th>note</th></tr>
{% for r in rows %}<tr><td>{{ r.item_id }}</td><td>{{ r.name }}</td><td>{{ r.split }}</td><td>{{ r.label }}</td><td class="num">{{ r.score_text }}</td>
<td>{{ r.predicted_text }}</td><td>{{ r.truth_text }}</td><td class="{{ r.outcome }}">{{ r.outcome }}</td><td class="num">{{ r.n_regions }}</td>
<td class="num">{{ r.area_text }}</td><td>{{ r.verdict }}{% if r.verified %} &#10003;{% endif %}</td><td>{{ r.note }}</td></tr>
{% endfor %}</table>
<footer>{{ footer }}</footer>
</body></html>
"""


def render_html(ctx: dict[str, Any]) -> str:
    """Fill the template; `ctx` comes from `report.build_context` (PNG bytes are base64-encoded here)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    data = dict(ctx)
    data["charts_png"] = base64.b64encode(ctx["charts_png"]).decode("ascii")
    data["galleries"] = [
        {**g, "tiles": [{**t, "jpeg": base64.b64encode(t["jpeg"]).decode("ascii")} for t in g["tiles"]]}
        for g in ctx["galleries"]
    ]
    return env.from_string(TEMPLATE).render(**data)
