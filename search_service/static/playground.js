// search-service playground: plain JS against the public API (no build step, no CDN).
// The key the user pastes lives in sessionStorage (or localStorage when "remember" is ticked) and
// goes out as `Authorization: Bearer ...`. Every value from the server is written with textContent.
"use strict";

const KEY_NAME = "search-service.api-key";
const POLL_MS = 700;
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function storedKey() {
  return localStorage.getItem(KEY_NAME) || sessionStorage.getItem(KEY_NAME) || "";
}

function saveKey(key, remember) {
  localStorage.removeItem(KEY_NAME);
  sessionStorage.removeItem(KEY_NAME);
  if (key) (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

// One call to the API; resolves to the parsed JSON body, rejects with an ApiError carrying the
// server's {"error": {"code", "message"}} (or the HTTP status when the body is not that shape).
async function api(method, path, { json, form } = {}) {
  const headers = {};
  const key = storedKey();
  if (key) headers["Authorization"] = `Bearer ${key}`;
  const init = { method, headers };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, init); // relative: works behind a path prefix too
  } catch (err) {
    throw new ApiError(0, "network_error", `the server could not be reached (${err.message})`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || text.slice(0, 300) || response.statusText);
  }
  return body;
}

function showError(err) {
  const box = $("error");
  box.replaceChildren();
  const code = document.createElement("code");
  code.textContent = err.code || "error";
  const status = err.status ? ` (HTTP ${err.status})` : "";
  box.append(code, `${status}: ${err.message}`);
  if (err.status === 401) box.append("\nPaste an API key above (`search-service keys create --role write ...`).");
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

// Runs an action; its errors land in the error box instead of the console.
function guarded(action) {
  return async (event) => {
    if (event) event.preventDefault();
    try {
      await action();
    } catch (err) {
      if (!(err instanceof ApiError)) console.error(err);
      showError(err instanceof ApiError ? err : new ApiError(0, "client_error", String(err)));
    }
  };
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

const fixed = (value, digits = 4) => (typeof value === "number" ? value.toFixed(digits) : null);
const collectionPath = (name) => `v1/collections/${encodeURIComponent(name)}`;

// ---- key and collections -------------------------------------------------------------------

async function refreshCollections(select) {
  const status = $("auth-status");
  let body;
  try {
    body = await api("GET", "v1/collections");
  } catch (err) {
    if (err.status === 401) {
      status.textContent = storedKey()
        ? "The server rejected this key (invalid or revoked)."
        : "This server needs an API key (RAG_AUTH=on): paste one above.";
      $("collection").replaceChildren();
      $("collection-info").textContent = "";
      clearKeyView();
    }
    throw err;
  }
  status.textContent = storedKey()
    ? `Connected with key ${storedKey().split("_")[1] || ""}… (${body.collections.length} collection(s) visible).`
    : `Connected without a key (${body.collections.length} collection(s)).`;
  const chooser = $("collection");
  const current = select || chooser.value;
  chooser.replaceChildren();
  for (const collection of body.collections) {
    const option = new Option(collection.name, collection.name);
    option.dataset.documents = collection.documents;
    option.dataset.chunks = collection.chunks;
    option.dataset.embedder = collection.embedder_model;
    chooser.add(option);
  }
  if (current && body.collections.some((c) => c.name === current)) chooser.value = current;
  describeCollection();
  clearError();
}

function describeCollection() {
  if (shownFor !== null && shownFor !== $("collection").value) clearResults();
  const option = $("collection").selectedOptions[0];
  $("collection-info").textContent = option
    ? `${option.dataset.documents} document(s), ${option.dataset.chunks} chunk(s); embedder ${option.dataset.embedder}`
    : "No collection yet: create one.";
}

async function loadRerankers() {
  try {
    const body = await api("GET", "v1/rerankers");
    const box = $("rerank");
    box.disabled = !body.default;
    box.checked = Boolean(body.default);
    box.parentElement.title = body.default ? `default reranker: ${body.default}` : "no reranker is loaded";
    $("fusion-weight").disabled = !body.default;
  } catch (_) {
    /* no key yet: leave the box as it is */
  }
}

function selectedCollection() {
  const name = $("collection").value;
  if (!name) throw new ApiError(0, "no_collection", "create or pick a collection first");
  return name;
}

// ---- uploads and jobs ----------------------------------------------------------------------

function jobRow(fileName) {
  const table = $("jobs");
  table.hidden = false;
  const row = table.tBodies[0].insertRow(0);
  cell(row, fileName);
  cell(row, "…", "num");
  cell(row, "uploading", "status-pending");
  cell(row, "");
  return row;
}

function showJob(row, job) {
  row.dataset.jobId = job.job_id;
  row.dataset.status = job.status;
  row.cells[1].textContent = job.job_id.slice(0, 8);
  row.cells[1].title = job.job_id;
  row.cells[2].textContent = job.status;
  row.cells[2].className = `status-${job.status}`;
  let detail = "";
  if (job.status === "failed" || job.status === "cancelled") detail = job.error || job.status;
  else if (job.status === "indexed" || job.status === "indexed_with_errors") {
    const docs = (job.result && job.result.documents) || [];
    detail = docs.map((d) => `${d.document_id}: ${d.status}, ${d.chunks} chunk(s)`).join("; ");
  } else if (job.hint) detail = job.hint;
  else if (job.attempts > 1) detail = `attempt ${job.attempts}`;
  row.cells[3].textContent = detail;
}

const FINAL_JOB_STATES = ["indexed", "indexed_with_errors", "failed", "cancelled"];

async function pollJob(row, jobId) {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const job = await api("GET", `v1/jobs/${encodeURIComponent(jobId)}`);
    showJob(row, job);
    if (FINAL_JOB_STATES.includes(job.status)) return job;
  }
}

async function upload() {
  const name = selectedCollection();
  const files = Array.from($("files").files);
  if (!files.length) throw new ApiError(0, "no_file", "choose one or more files first");
  const polls = [];
  for (const file of files) {
    const row = jobRow(file.name);
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const accepted = await api("POST", `${collectionPath(name)}/documents`, { form });
      showJob(row, { ...accepted, attempts: 1 });
      polls.push(pollJob(row, accepted.job_id));
    } catch (err) {
      row.cells[2].textContent = "rejected";
      row.cells[2].className = "status-failed";
      row.cells[3].textContent = `${err.code}: ${err.message}`;
      throw err;
    }
  }
  $("files").value = "";
  clearError();
  await Promise.all(polls);
  await refreshCollections(name);
}

// ---- search --------------------------------------------------------------------------------

function movement(result) {
  if (typeof result.dense_rank !== "number" || typeof result.rank !== "number") return "";
  const moved = result.dense_rank - result.rank;
  if (moved > 0) return ` ↑${moved}`;
  if (moved < 0) return ` ↓${-moved}`;
  return "";
}

// The collection the results on the page answered for; other results are cleared away.
let shownFor = null;

function clearResults() {
  shownFor = null;
  $("results").hidden = true;
  $("results").tHead.replaceChildren();
  $("results").tBodies[0].replaceChildren();
  $("context").hidden = true;
  $("search-info").textContent = "";
}

// A key change: nothing the previous key was shown stays on the page.
function clearKeyView() {
  clearResults();
  $("jobs").hidden = true;
  $("jobs").tBodies[0].replaceChildren();
}

const present = (results, field) => results.some((r) => r[field] !== null && r[field] !== undefined);

// Columns of the result table: those whose values this response carries, in pipeline order.
function resultColumns(body) {
  const results = body.results;
  const columns = [{ title: "#", tip: "final rank", value: (r) => r.rank }];
  if (present(results, "dense_rank")) {
    columns.push({ title: "dense rank", tip: "rank among the dense (vector) candidates",
      value: (r) => (r.dense_rank === null ? null : `${r.dense_rank}${movement(r)}`), moved: true });
    columns.push({ title: "dense score", tip: "cosine similarity", value: (r) => fixed(r.dense_score) });
  }
  if (present(results, "sparse_rank")) {
    columns.push({ title: "sparse rank", tip: "rank among the BM25 candidates", value: (r) => r.sparse_rank });
    columns.push({ title: "sparse score", tip: "BM25 score", value: (r) => fixed(r.sparse_score) });
  }
  if (present(results, "fusion_score")) {
    columns.push({ title: "fusion score", tip: "the hybrid fusion of the dense and sparse lists",
      value: (r) => fixed(r.fusion_score, 5) });
  }
  if (body.reranked) columns.push({ title: "rerank score", tip: "reranker logit", value: (r) => fixed(r.rerank_score) });
  if (body.rerank_fusion) {
    const f = body.rerank_fusion;
    columns.push({ title: "fused score", tip: `${f.rerank_weight} × z(rerank score) + ${f.dense_weight} × z(${f.first_stage_score}), z-scores over this query's candidates`,
      value: (r) => fixed(r.rerank_fusion_score) });
  }
  columns.push({ title: "score", tip: "returned score", value: (r) => fixed(r.score) });
  return columns;
}

function orderLabel(body) {
  const mode = body.mode || "dense";
  const fused = body.rerank_fusion;
  if (body.reranked && fused) {
    return `${mode} candidates, reranked by ${body.reranker}, fused with ${fused.first_stage_score} (dense weight ${fused.dense_weight})`;
  }
  if (body.reranked) return `${mode} candidates, reranked by ${body.reranker}`;
  return `${mode}, not reranked (${mode === "hybrid" ? "fusion" : mode} order)`;
}

function showResults(body, collection) {
  const table = $("results");
  const columns = resultColumns(body);
  const head = table.tHead.insertRow();
  for (const column of [...columns, { title: "document" }, { title: "passage" }]) {
    const th = document.createElement("th");
    th.textContent = column.title;
    if (column.tip) th.title = column.tip;
    head.append(th);
  }
  const rows = table.tBodies[0];
  for (const result of body.results) {
    const row = rows.insertRow();
    row.dataset.documentId = result.document_id;
    row.dataset.rank = result.rank;
    for (const column of columns) {
      const td = cell(row, column.value(result), "num");
      if (column.moved && result.dense_rank !== null && result.dense_rank > result.rank) td.classList.add("up");
      if (column.moved && result.dense_rank !== null && result.dense_rank < result.rank) td.classList.add("down");
    }
    const where = cell(row, result.document_id);
    where.append(document.createElement("br"), Object.assign(document.createElement("small"), {
      className: "muted", textContent: `chars ${result.start}–${result.end}`,
    }));
    const text = result.text.length > 600 ? `${result.text.slice(0, 600)}…` : result.text;
    cell(row, text, "passage").title = result.text;
  }
  table.hidden = body.results.length === 0;
  shownFor = collection;
  const timings = body.timings_ms || {};
  const stages = ["embed", "search", "sparse", "rerank", "context"]
    .filter((s) => timings[s]).map((s) => `${s} ${timings[s].toFixed(0)}`).join(", ");
  $("search-info").textContent = `${body.results.length} passage(s) · ${orderLabel(body)}` +
    ` · ${(timings.total || 0).toFixed(0)} ms${stages ? ` (${stages})` : ""}`;
}

function showContext(context) {
  const box = $("context");
  if (!context) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  $("context-meta").textContent = `(${context.tokens} / ${context.budget_tokens} tokens, ${context.tokenizer}` +
    (context.skipped_ranks && context.skipped_ranks.length ? `; skipped ranks ${context.skipped_ranks.join(", ")}` : "") + ")";
  $("context-text").textContent = context.text;
  const list = $("citations");
  list.replaceChildren();
  for (const citation of context.citations) {
    const item = document.createElement("li");
    item.value = citation.id;
    item.dataset.documentId = citation.document_id;
    const parts = [`[${citation.id}] ${citation.document_id}`, `chars ${citation.start}–${citation.end}`];
    if (citation.page !== null && citation.page !== undefined) parts.push(`page ${citation.page}`);
    if (citation.heading_path && citation.heading_path.length) parts.push(citation.heading_path.join(" › "));
    parts.push(`ranks ${citation.ranks.join(", ")}`);
    if (citation.truncated) parts.push("truncated");
    if (citation.source && citation.source !== citation.document_id) parts.push(`source ${citation.source}`);
    item.textContent = parts.join(" · ");
    list.append(item);
  }
}

async function search() {
  const query = $("query").value.trim();
  if (!query) throw new ApiError(0, "no_query", "type a question first");
  const collection = selectedCollection();
  const body = { collection, query, top_k: 5 };
  const budget = parseInt($("budget").value, 10);
  if (budget > 0) body.context_budget_tokens = budget;
  if ($("mode").value) body.mode = $("mode").value;
  if (!$("rerank").checked) body.rerank = false;
  const weight = $("fusion-weight").value.trim();
  if ($("rerank").checked && weight !== "") {
    const value = Number(weight);
    if (!(value >= 0 && value <= 1)) throw new ApiError(0, "invalid_weight", "the dense weight is a number from 0 to 1");
    body.rerank_fusion = { dense_weight: value };
  }
  clearResults();
  $("search-info").textContent = "searching…";
  try {
    const response = await api("POST", "v1/search", { json: body });
    showResults(response, collection);
    showContext(response.context);
    clearError();
  } catch (err) {
    $("search-info").textContent = "";
    throw err;
  }
}

// ---- wiring --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = storedKey();
  $("remember-key").checked = Boolean(localStorage.getItem(KEY_NAME));
  $("key-form").addEventListener("submit", guarded(async () => {
    saveKey($("api-key").value.trim(), $("remember-key").checked);
    clearKeyView();
    await refreshCollections();
    await loadRerankers();
  }));
  $("forget-key").addEventListener("click", guarded(async () => {
    saveKey("", false);
    $("api-key").value = "";
    clearKeyView();
    await refreshCollections();
  }));
  $("refresh-collections").addEventListener("click", guarded(() => refreshCollections()));
  $("collection").addEventListener("change", describeCollection);
  $("collection-form").addEventListener("submit", guarded(async () => {
    const name = $("new-collection").value.trim();
    if (!name) throw new ApiError(0, "no_name", "type a name for the new collection");
    await api("POST", "v1/collections", { json: { name } });
    $("new-collection").value = "";
    await refreshCollections(name);
  }));
  $("upload-form").addEventListener("submit", guarded(upload));
  $("search-form").addEventListener("submit", guarded(search));
  guarded(async () => {
    if (!storedKey()) {
      const health = await api("GET", "healthz"); // open: says whether keys are needed
      if (health.auth_required) {
        $("auth-status").textContent = "This server needs an API key (RAG_AUTH=on): paste one above.";
        return; // nothing else to ask before a key is entered
      }
    }
    try {
      await refreshCollections();
    } catch (err) {
      if (err.status === 401) return; // the status line already asks for a key
      throw err;
    }
    await loadRerankers();
  })();
});
