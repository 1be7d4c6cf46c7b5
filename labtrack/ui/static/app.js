// labtrack UI: theme, keyboard, selection, filter completion, pinned columns. Pages are rendered by the
// server; this only adds behaviour. Every user string reaches the DOM through textContent, never innerHTML.
import { initCharts } from "./charts.js";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// -- theme: system -> dark -> light, remembered ------------------------------------------------------------
function currentTheme() { return document.documentElement.dataset.theme || "system"; }
function setTheme(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  try { theme === "system" ? localStorage.removeItem("labtrack-theme") : localStorage.setItem("labtrack-theme", theme); } catch (e) { /* private mode */ }
  const button = $("#theme");
  if (button) button.textContent = "Theme: " + theme;
  document.dispatchEvent(new CustomEvent("labtrack:theme"));
}

// -- selection: checkboxes <-> the URL's sel=... -----------------------------------------------------------
function selected() {
  return new URL(location.href).searchParams.getAll("sel");
}
function writeSelection(ids) {
  const url = new URL(location.href);
  url.searchParams.delete("sel");
  ids.forEach((id) => url.searchParams.append("sel", id));
  history.replaceState(null, "", url);
  const link = $("#compare");
  if (link) {
    link.href = "/compare?" + ids.map((id) => "run=" + encodeURIComponent(id)).join("&");
    link.classList.toggle("disabled", ids.length < 2);
    $("#selected-count").textContent = String(ids.length);
  }
  // the other forms of the page carry the selection along
  $$("form[action='/runs'] input[name=sel]").forEach((el) => el.remove());
  $$("form[action='/runs']").forEach((form) => ids.forEach((id) => {
    const input = document.createElement("input");
    input.type = "hidden"; input.name = "sel"; input.value = id;
    form.appendChild(input);
  }));
  const csv = $("#csv");
  if (csv) { const u = new URL(csv.href, location.href); u.searchParams.delete("sel"); csv.href = u.pathname + u.search; }
}
function syncRows(root = document) {
  const ids = new Set(selected());
  $$("#runs tbody tr[data-id]", root).forEach((tr) => {
    const on = ids.has(tr.dataset.id);
    tr.classList.toggle("selected", on);
    const box = $("input.sel", tr);
    if (box) box.checked = on;
  });
}
function toggleRow(tr, force) {
  const ids = selected();
  const id = tr.dataset.id;
  const on = force === undefined ? !ids.includes(id) : force;
  const next = on ? (ids.includes(id) ? ids : ids.concat([id])) : ids.filter((x) => x !== id);
  writeSelection(next);
  syncRows();
}

// -- pinned columns stick at their offsets ------------------------------------------------------------------
function pinColumns() {
  const table = $("#runs");
  if (!table) return;
  const head = $$("thead th", table);
  let left = 0;
  const offsets = new Map();
  head.forEach((th, i) => {
    if (th.classList.contains("pinned")) { offsets.set(i, left); left += th.getBoundingClientRect().width; }
  });
  $$("tr", table).forEach((tr) => Array.from(tr.children).forEach((cell, i) => {
    if (offsets.has(i) && cell.classList.contains("pinned")) cell.style.left = offsets.get(i) + "px";
  }));
}

// -- keyboard -----------------------------------------------------------------------------------------------
let current = -1;
function rows() { return $$("#runs tbody tr[data-id]"); }
function move(delta) {
  const all = rows();
  if (!all.length) return;
  current = Math.max(0, Math.min(all.length - 1, current + delta));
  all.forEach((tr, i) => tr.classList.toggle("current", i === current));
  all[current].scrollIntoView({ block: "nearest" });
}
function typing(target) {
  return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(event.target)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const all = rows();
  switch (event.key) {
    case "/": { const f = $("#filter"); if (f) { event.preventDefault(); f.focus(); f.select(); } break; }
    case "j": move(1); break;
    case "k": move(-1); break;
    case "x": if (all[current]) toggleRow(all[current]); break;
    case "o": case "Enter": if (all[current]) location.href = $("a[href^='/run/']", all[current]).href; break;
    case "c": { const link = $("#compare"); if (link && !link.classList.contains("disabled")) location.href = link.href; break; }
    case "?": { const d = $("#keys"); if (d && !d.open) d.showModal(); break; }
    default: return;
  }
});

// -- filter completion: field names (env keys too) at the cursor --------------------------------------------
function completion(input) {
  let fields = null;  // one request for the field names, shared by every keystroke that waits for it
  const load = () => fields || (fields = fetch("/ui/keys?experiment=" + encodeURIComponent(input.dataset.experiment || ""),
                                               { headers: { Accept: "application/json" } })
    .then((answer) => (answer.ok ? answer.json() : { fields: [] })).then((data) => data.fields).catch(() => []));
  const list = document.createElement("ul");
  list.className = "suggest hidden";
  list.setAttribute("role", "listbox");
  input.parentElement.appendChild(list);
  let active = -1;
  const word = () => {
    const upto = input.value.slice(0, input.selectionStart);
    const m = /[A-Za-z_][\w.\-/:`]*$/.exec(upto);
    return m ? { text: m[0], start: m.index } : null;
  };
  const close = () => { list.classList.add("hidden"); active = -1; };
  const choose = (name) => {
    const w = word();
    if (!w) return;
    const end = input.selectionStart;
    input.value = input.value.slice(0, w.start) + name + " " + input.value.slice(end);
    const at = w.start + name.length + 1;
    input.setSelectionRange(at, at);
    close();
  };
  const show = async () => {
    const names = await load();
    const w = word();  // the word at the cursor now, not when the keystroke came: keystrokes overtake the request
    if (!w || w.text.length < 1) return close();
    const needle = w.text.toLowerCase();
    const found = names.filter((f) => f.toLowerCase().startsWith(needle) || f.toLowerCase().includes("." + needle)).slice(0, 12);
    list.replaceChildren(...found.map((f, i) => {
      const li = document.createElement("li");
      li.textContent = f; li.setAttribute("role", "option"); li.dataset.index = String(i);
      li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(f); });
      return li;
    }));
    active = -1;
    list.classList.toggle("hidden", found.length === 0);
  };
  input.addEventListener("input", show);
  input.addEventListener("blur", () => setTimeout(close, 100));
  input.addEventListener("keydown", (event) => {
    const items = $$("li", list);
    if (list.classList.contains("hidden") || !items.length) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      active = (active + (event.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      items.forEach((li, i) => li.setAttribute("aria-selected", String(i === active)));
    } else if ((event.key === "Tab" || event.key === "Enter") && (active >= 0 || event.key === "Tab")) {
      event.preventDefault();
      choose(items[Math.max(active, 0)].textContent);
    } else if (event.key === "Escape") {
      close();
    }
  });
}

// -- MLflow's links: its client prints "View run at http://host/#/experiments/<id>/runs/<run id>" -------------
function followMlflowLink() {
  const link = /^#\/experiments\/\d+\/runs\/([0-9a-f]{32})(?:[/?].*)?$/.exec(location.hash);
  if (link && location.pathname === "/") location.replace("/run/" + link[1]);
}
followMlflowLink();

// -- wiring -------------------------------------------------------------------------------------------------
function init(root) {
  syncRows(root);
  pinColumns();
  initCharts(root);
}

document.addEventListener("DOMContentLoaded", () => {
  const theme = $("#theme");
  if (theme) {
    theme.textContent = "Theme: " + currentTheme();
    theme.addEventListener("click", () => {
      const order = ["system", "dark", "light"];
      setTheme(order[(order.indexOf(currentTheme()) + 1) % order.length]);
    });
  }
  const help = $("#keys-help");
  if (help) help.addEventListener("click", () => $("#keys").showModal());
  const filter = $("#filter");
  if (filter) completion(filter);
  const diff = $("#diff-only");
  if (diff) diff.addEventListener("change", () => diff.form.requestSubmit());
  document.addEventListener("change", (event) => {
    const box = event.target;
    if (box.matches && box.matches("input.sel")) toggleRow(box.closest("tr"), box.checked);
  });
  document.addEventListener("click", (event) => {
    const tr = event.target.closest && event.target.closest("#runs tbody tr[data-id]");
    if (tr) { current = rows().indexOf(tr); rows().forEach((r, i) => r.classList.toggle("current", i === current)); }
  });
  if (selected().length) writeSelection(selected());
  init(document);
  document.body.addEventListener("htmx:afterSettle", (event) => init(event.detail.elt.parentElement || document));
  window.addEventListener("resize", pinColumns);
});
