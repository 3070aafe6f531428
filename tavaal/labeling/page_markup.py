"""The labeling page itself: one self-contained HTML document with its CSS and JavaScript.

`tavaal.labeling.page.LabelingServer` serves it with the per-server secret token in place of
``{{TOKEN}}``; the script reads the token from its meta tag and sends it with every POST.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="tavaal-token" content="{{TOKEN}}">
<title>tavaal labeling</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
  header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc;
           padding: 8px 12px; z-index: 1; }
  h1 { font-size: 16px; margin: 0 0 6px; }
  #classes button { margin: 2px 4px 2px 0; padding: 3px 8px; cursor: pointer; }
  #classes kbd, .help kbd { background: #eee; border: 1px solid #bbb; border-radius: 3px;
                            padding: 0 4px; font-family: monospace; }
  #progress { font-weight: bold; margin-right: 16px; }
  .help { color: #555; }
  #done { display: none; background: #d7f5d7; border: 1px solid #6b6; padding: 8px;
          margin-top: 6px; font-weight: bold; }
  #error { display: none; background: #fbd; border: 1px solid #c66; padding: 8px;
           margin-top: 6px; }
  #conflicts { display: none; background: #fff3c4; border: 1px solid #c9a227; padding: 8px;
               margin-top: 6px; }
  #grid { display: flex; flex-wrap: wrap; gap: 8px; padding: 12px; }
  .cell { width: 168px; background: #fff; border: 3px solid #ddd; border-radius: 4px;
          cursor: pointer; text-align: center; }
  .cell img { width: 160px; height: 160px; object-fit: contain; background: #eee;
              display: block; margin: 4px auto 0; }
  .cell .caption { font-size: 12px; color: #666; }
  .cell .label { min-height: 18px; font-weight: bold; padding-bottom: 2px; }
  .cell.labeled { border-color: #6b6; }
  .cell.current { border-color: #1565c0; box-shadow: 0 0 0 3px #90caf9; }
</style>
</head>
<body>
<header>
  <h1 id="title">tavaal labeling</h1>
  <div id="classes"></div>
  <div><span id="progress">loading...</span>
    <span class="help">class key: label the current image and go to the next unlabeled one;
    <kbd>&larr;</kbd><kbd>&rarr;</kbd> or <kbd>k</kbd><kbd>j</kbd>: move;
    <kbd>Backspace</kbd>/<kbd>Delete</kbd>: clear; click an image to select it.
    Saved at once to <code id="labels-file"></code>.</span></div>
  <div id="done">All labeled &mdash; close this page and rerun snakemake.</div>
  <div id="error"></div>
  <div id="conflicts"></div>
</header>
<div id="grid"></div>
<script>
"use strict";
let state = null, cursor = 0, pending = 0, queue = Promise.resolve();
const keyToClass = {};
// Only this page knows the server's token; it proves to the server that a change comes from here.
const token = document.querySelector('meta[name="tavaal-token"]').content;

function el(tag, props, children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children || []) node.append(child);
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.style.display = message ? "block" : "none";
}

function showConflicts(conflicts) {
  const box = document.getElementById("conflicts");
  box.textContent = conflicts.map(c =>
    `Row ${c.row} (id ${c.sample_id}) was changed in the labels file elsewhere to ` +
    `"${c.file || "no label"}" while you chose "${c.page || "no label"}": the file keeps ` +
    `"${c.file || "no label"}"; choose again to replace it.`).join(" ");
  box.style.display = conflicts.length ? "block" : "none";
}

function render() {
  const samples = state.samples;
  const labeled = samples.filter(s => s.label).length;
  document.getElementById("progress").textContent =
    `labeled ${labeled} of ${samples.length}`;
  document.getElementById("done").style.display =
    labeled === samples.length ? "block" : "none";
  samples.forEach((s, i) => {
    const cell = document.getElementById(`cell-${s.sample_id}`);
    cell.classList.toggle("labeled", Boolean(s.label));
    cell.classList.toggle("current", i === cursor);
    cell.querySelector(".label").textContent = s.label;
  });
  document.body.dataset.pending = String(pending);
}

function moveTo(index) {
  if (!state.samples.length) return;
  cursor = Math.max(0, Math.min(state.samples.length - 1, index));
  render();
  document.getElementById(`cell-${state.samples[cursor].sample_id}`)
    .scrollIntoView({block: "nearest"});
}

function nextUnlabeled(from) {
  const n = state.samples.length;
  for (let step = 1; step <= n; step++) {
    const i = (from + step) % n;
    if (!state.samples[i].label) return i;
  }
  return from;
}

function setLabel(index, label) {
  const sample = state.samples[index];
  sample.label = label;
  pending++;
  render();
  // Chained, so the server sees changes in the order they were made.
  queue = queue.then(async () => {
    try {
      const response = await fetch("/label", {
        method: "POST", headers: {"Content-Type": "application/json", "X-Tavaal-Token": token},
        body: JSON.stringify({sample_id: sample.sample_id, label: label}),
      });
      const reply = await response.json();
      if (!response.ok) throw new Error(reply.error);
      showError("");
      showConflicts(reply.conflicts);
      // The file may hold labels written elsewhere: show them, unless a later change of this
      // page is still on its way (its own reply will bring the file's state).
      if (pending === 1) {
        for (const s of state.samples) s.label = reply.labels[s.sample_id] || "";
      }
    } catch (err) {
      showError(`not saved: ${err.message}; reload the page`);
    } finally {
      pending--;
      render();
    }
  });
}

document.addEventListener("keydown", event => {
  if (!state || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (key in keyToClass) {
    setLabel(cursor, keyToClass[key]);
    moveTo(nextUnlabeled(cursor));
  } else if (key === "ArrowRight" || key === "ArrowDown" || key === "j") {
    moveTo(cursor + 1);
  } else if (key === "ArrowLeft" || key === "ArrowUp" || key === "k") {
    moveTo(cursor - 1);
  } else if (key === "Backspace" || key === "Delete") {
    setLabel(cursor, "");
  } else {
    return;
  }
  event.preventDefault();
});

async function load() {
  state = await (await fetch("/state")).json();
  document.getElementById("title").textContent =
    `tavaal labeling: ${state.experiment} / ${state.method} / seed ${state.seed} / ` +
    `stage ${state.stage}`;
  document.getElementById("labels-file").textContent = state.labels_file;
  const classes = document.getElementById("classes");
  state.classes.forEach((name, i) => {
    const key = state.keys[i];
    if (key !== null) keyToClass[key] = name;
    const button = el("button", {type: "button"},
      key === null ? [name] : [el("kbd", {textContent: key}), " " + name]);
    button.addEventListener("click", () => {
      button.blur();  // so Enter or Space cannot label again by pressing the button
      setLabel(cursor, name);
      moveTo(nextUnlabeled(cursor));
    });
    classes.append(button);
  });
  const grid = document.getElementById("grid");
  state.samples.forEach((s, i) => {
    const cell = el("div", {className: "cell", id: `cell-${s.sample_id}`, title: s.name}, [
      el("img", {src: `/image/${s.sample_id}`, alt: s.name, loading: "lazy"}),
      el("div", {className: "caption", textContent: `#${s.row} \\u00b7 id ${s.sample_id}`}),
      el("div", {className: "label"}),
    ]);
    cell.addEventListener("click", () => moveTo(i));
    grid.append(cell);
  });
  const first = state.samples.findIndex(s => !s.label);
  moveTo(first === -1 ? 0 : first);
  document.body.dataset.ready = "1";
}

load().catch(err => showError(`cannot load the batch: ${err.message}`));
</script>
</body>
</html>
"""
