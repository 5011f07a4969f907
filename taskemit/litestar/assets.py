"""The dashboard's stylesheet and script, inlined into every page (no build step, no CDN).

The script keeps the page live: every element with ``data-src`` polls that JSON API URL and
re-renders its tables (``data-rows``: where the rows are in the JSON, ``data-columns``: the
same column specs the server rendered them with) and fields (``data-field``). Cells are built
with ``textContent``, never HTML from the data. ``renderCell`` mirrors ``html.render_cell``.
Every element with ``data-html`` (the charts of the overview and listener pages) polls that
URL of the dashboard itself for the same server-rendered fragment, escaped there like the page,
and swaps it in.
"""

from __future__ import annotations

__all__ = ("SCRIPT", "STYLE")

STYLE = """
:root { --fg:#1d232a; --muted:#65717d; --line:#dde2e7; --bg:#f6f8fa; --accent:#0b5fbd; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif; color:var(--fg); background:#fff; }
header { background:#15202b; color:#fff; padding:.6rem 1.2rem; display:flex; gap:1.2rem; align-items:baseline; }
header strong { font-size:1.05rem; margin-right:.6rem; }
header a { color:#cfe3ff; text-decoration:none; }
header a.here { color:#fff; font-weight:600; border-bottom:2px solid #fff; }
main { padding:1rem 1.2rem 3rem; }
h1 { font-size:1.3rem; margin:.2rem 0 1rem; }
h2 { font-size:1.05rem; margin:1.6rem 0 .6rem; }
table { border-collapse:collapse; width:100%; margin:.4rem 0 1rem; }
th, td { text-align:left; padding:.35rem .55rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:var(--bg); font-weight:600; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.empty { color:var(--muted); font-style:italic; }
code, .code { font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace; word-break:break-all; }
code[title], a[title] { white-space:nowrap; word-break:normal; }
pre { background:var(--bg); padding:.6rem; overflow:auto; font-size:12px; }
a { color:var(--accent); }
.status { display:inline-block; padding:0 .45rem; border-radius:.7rem; font-size:12px; background:#e8ecf0;
  white-space:nowrap; margin:0 .2rem .1rem 0; }
.status-complete { background:#dcf5e3; color:#126b2f; }
.status-failed, .status-aborted, .status-unknown, .status-dead { background:#fde2e1; color:#a4161a; }
.status-retrying, .status-paused { background:#fff3cd; color:#7a5a00; }
.status-in_progress { background:#d9ecff; color:#0b4f99; }
.history { margin:0; padding:0; list-style:none; font-size:12px; color:var(--muted); }
.notice { background:#e9f5ff; border:1px solid #b6dcff; padding:.5rem .8rem; border-radius:.3rem; }
.muted { color:var(--muted); }
form.inline { display:inline; margin:0; }
form.filters { display:flex; gap:.6rem; align-items:end; flex-wrap:wrap; margin-bottom:.6rem; }
form.filters label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); }
input, select, button { font:inherit; padding:.25rem .5rem; }
button { cursor:pointer; border:1px solid #9aa6b2; border-radius:.3rem; background:#fff; }
button.danger { border-color:#d9a3a3; color:#a4161a; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:.3rem 1rem; margin:0 0 1rem; }
dt { color:var(--muted); }
dd { margin:0; }
.live-state { float:right; font-size:12px; color:var(--muted); }
.stale .live-state { color:#a4161a; }
nav.spans { margin:.2rem 0 .6rem; }
nav.spans a { margin-right:.6rem; }
nav.spans a.here { font-weight:600; color:var(--fg); text-decoration:none; }
.charts { display:grid; grid-template-columns:repeat(auto-fill, minmax(540px, 1fr)); gap:.8rem 1.2rem; }
figure.chart-box { margin:0; border:1px solid var(--line); border-radius:.3rem; padding:.5rem .6rem .3rem; }
figure.chart-box figcaption { font-weight:600; margin-bottom:.2rem; }
svg.chart { width:100%; height:auto; display:block; }
svg.chart .grid { stroke:#e5e9ee; stroke-width:1; }
svg.chart .axis { font-size:12px; fill:var(--muted); }
svg.chart .hover { fill:transparent; }
svg.chart .hover:hover { fill:rgba(11, 95, 189, .08); }
ul.legend { list-style:none; margin:.2rem 0 0; padding:0; display:flex; flex-wrap:wrap; gap:.2rem 1rem;
  font-size:12px; color:var(--muted); }
.swatch { display:inline-block; width:1.2rem; border-top:3px solid; vertical-align:middle; margin-right:.3rem; }
.swatch.dashed { border-top-style:dashed; }
"""

SCRIPT = r"""
(() => {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const get = (row, path) => path === "" ? row :
    path.split(".").reduce((v, k) => (v === null || v === undefined) ? v : v[k], row);
  const fill = (pattern, row) => pattern.replace(/\{(\w+)\}/g,
    (_, k) => encodeURIComponent(get(row, k) ?? ""));
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const time = v => v ? new Date(v * 1000).toISOString().replace("T", " ").slice(0, 23) : "";
  const duration = v => (v === null || v === undefined) ? "" :
    (v < 10 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(1) + " s");
  const status = v => el("span", "status status-" + v, v);
  const errorText = e => e ? (e.type + ": " + e.message) : "";
  const shortId = id => {
    const token = id.split("}:").pop();
    const named = token.charAt(32) === ".";  // names its event: the event's first digits and the suffix
    return named ? token.slice(0, 8) + "\u2026" + token.slice(32, 41) : token.slice(0, 12) + "\u2026";
  };
  const idText = (col, v, e) => {
    const text = String(v ?? "");
    if (col.short && text) { e.title = text; e.textContent = shortId(text); } else e.textContent = text;
    return e;
  };
  const shown = (col, row) => !col.when || col.when[1].includes(String(get(row, col.when[0])));

  function renderCell(col, row) {
    const td = el("td", col.kind === "number" || col.kind === "rate" ? "num" : "");
    if (!shown(col, row)) return td;
    const v = get(row, col.field);
    switch (col.kind) {
      case "code": td.append(idText(col, v, el("code"))); break;
      case "number": td.textContent = v ?? ""; break;
      case "rate": td.textContent = (v ?? 0).toFixed(2); break;
      case "time": td.textContent = time(v); break;
      case "duration": td.textContent = duration(v); break;
      case "age": td.textContent = v ? ((Date.now() / 1000 - v).toFixed(1) + " s ago") : ""; break;
      case "status": if (v) td.append(status(v)); break;
      case "flag": if (v) td.append(status(col.label)); break;
      case "list": td.textContent = (v || []).join(", "); break;
      case "error": td.textContent = errorText(v); break;
      case "tries":
        td.textContent = row.max_tries ? row.attempts + "/" + row.max_tries : String(row.attempts || "");
        break;
      case "link": {
        const a = col.label ? el("a", "", col.label) : idText(col, v, el("a"));
        a.href = fill(col.href, row);
        td.append(a);
        break;
      }
      case "jobs":
        for (const job of v || []) {
          const s = status(job.listener.split(":").pop() + "=" + job.status);
          s.className = "status status-" + job.status;
          s.title = job.listener;
          td.append(s);
        }
        break;
      case "outcome": {
        let text = row.error ? errorText(row.error) : (row.result || "");
        if (row.next_attempt_at) text += " (next attempt " + time(row.next_attempt_at) + ")";
        if (row.note) text = row.note + (text ? "; " + text : "");
        td.textContent = text;
        break;
      }
      case "history": {
        const ul = el("ul", "history");
        for (const a of v || []) {
          const what = a.replay_of ? "replayed as " + a.new_job_id :
            "#" + (a.attempt ?? "") + " " + a.status + (a.error ? " " + errorText(a.error) : "");
          ul.append(el("li", "", time(a.started || a.at) + " " + what));
        }
        td.append(ul);
        break;
      }
      case "action": {
        const form = el("form", "inline");
        form.method = "post";
        form.action = fill(col.href, row);
        if (col.confirm) form.dataset.confirm = col.confirm;
        const token = el("input");
        token.type = "hidden"; token.name = "_csrf_token"; token.value = csrf;
        form.append(token, el("button", col.danger ? "danger" : "", col.label));
        td.append(form);
        break;
      }
      default: td.textContent = v ?? "";
    }
    return td;
  }

  function renderTable(table, data) {
    const cols = JSON.parse(table.dataset.columns);
    const rows = get(data, table.dataset.rows) || [];
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr");
      for (const col of cols) tr.append(renderCell(col, row));
      body.append(tr);
    }
    if (!rows.length) {
      const td = el("td", "empty", table.dataset.empty || "nothing");
      td.colSpan = cols.length;
      const tr = el("tr");
      tr.append(td);
      body.append(tr);
    }
    table.tBodies[0].replaceWith(body);
  }

  async function refresh(box) {
    try {
      const response = await fetch(box.dataset.src,
        {headers: {accept: "application/json"}, credentials: "same-origin"});
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const text = await response.text();
      box.classList.remove("stale");
      if (text === box.dataset.last) return;
      box.dataset.last = text;
      const data = JSON.parse(text);
      box.querySelectorAll("table[data-columns]").forEach(t => renderTable(t, data));
      box.querySelectorAll("[data-field]").forEach(f => {
        const col = {kind: f.dataset.kind || "text", field: f.dataset.field, label: f.dataset.label};
        f.replaceChildren(...renderCell(col, data).childNodes);
      });
      const state = box.querySelector(".live-state");
      if (state) state.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      box.classList.add("stale");
      const state = box.querySelector(".live-state");
      if (state) state.textContent = "not updated: " + err.message;
    }
  }

  async function refreshHtml(box) {
    const state = box.querySelector(".live-state");
    try {
      const response = await fetch(box.dataset.html, {headers: {accept: "text/html"}, credentials: "same-origin"});
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const text = await response.text();
      box.classList.remove("stale");
      if (text !== box.dataset.last) {
        box.dataset.last = text;
        const fresh = new DOMParser().parseFromString(text, "text/html").body;
        box.querySelector(".live-body").replaceChildren(...fresh.childNodes);
      }
      if (state) state.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      box.classList.add("stale");
      if (state) state.textContent = "not updated: " + err.message;
    }
  }

  document.querySelectorAll("[data-src]").forEach(box => {
    setInterval(() => refresh(box), Number(box.dataset.interval) || 2000);
  });
  document.querySelectorAll("[data-html]").forEach(box => {
    setInterval(() => refreshHtml(box), Number(box.dataset.interval) || 2000);
  });
  document.addEventListener("submit", e => {
    const question = e.target.dataset.confirm;
    if (question && !window.confirm(question)) e.preventDefault();
  });
})();
"""
