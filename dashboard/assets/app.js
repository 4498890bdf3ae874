// modelplane dashboard: reads and changes everything through the API's /v1 routes, with the
// session cookie and, on every change, the session's CSRF token. Live parts poll every
// POLL_MS; forms are never redrawn under the user's hands.
const POLL_MS = 1500;
const csrfMeta = document.querySelector('meta[name="csrf-token"]');
const CSRF = csrfMeta ? csrfMeta.content : "";
const B = document.body.dataset;

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api sends a request to the API; a JSON body for data. Errors carry the API's message.
async function api(method, path, data) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET" && method !== "HEAD") opts.headers["X-CSRF-Token"] = CSRF;
  if (data !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(data); }
  const res = await fetch(path, opts);
  let body = null;
  const text = await res.text();
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (res.status === 401) { location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search)); }
  if (!res.ok) {
    const msg = body && body.error && body.error.message ? body.error.message : `${res.status} ${res.statusText}`;
    throw new APIError(res.status, msg);
  }
  return body;
}

// h builds an element: h("a", {href: "/"}, "text", child...). Text is never parsed as HTML.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const kid of kids) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

const enc = encodeURIComponent;
const modelPath = (m) => `/v1/models/${enc(m)}`;

function notice(text, bad) {
  const n = document.getElementById("notice");
  n.textContent = text || "";
  n.classList.toggle("bad", !!bad);
}

function statusClass(st) {
  if (["ACTIVE", "SUCCEEDED", "READY", "RAMPING_UP", "HEALTHY"].includes(st)) return "status ok";
  if (["FAILED", "UNHEALTHY", "BUILD_FAILED", "DEPLOY_FAILED", "BUILD_STOPPED", "DOWN"].includes(st)) return "status bad";
  if (["INACTIVE", "SCALED_TO_ZERO", "CANCELED", "STOPPED"].includes(st)) return "status";
  return "status busy";
}
function badge(st) { return h("span", { class: statusClass(st) }, st || "—"); }

function temporalLink(workflowID, label) {
  if (!B.temporalUi) return null;
  return h("a", { href: `${B.temporalUi}/namespaces/${enc(B.temporalNs)}/workflows/${enc(workflowID)}`, target: "_blank", rel: "noopener" },
    label || "workflow", h("span", { class: "visually-hidden" }, " (opens the Temporal UI)"));
}
const deploymentWorkflow = (d) => `deployment:${d}`;
const promotionWorkflow = (m, env) => `promotion:${m}:${env}`;

// poll runs fn now and then POLL_MS after each run ends (or every ms).
function poll(fn, ms) {
  const run = async () => {
    try { await fn(); } catch (e) { if (!(e instanceof APIError) || e.status !== 401) notice(e.message, true); }
    setTimeout(run, ms || POLL_MS);
  };
  run();
}

// act runs a change and reports it; the error goes to the notice area.
async function act(what, fn) {
  notice(`${what}…`);
  try { await fn(); notice(`${what}: done.`); return true; } catch (e) { notice(`${what}: ${e.message}`, true); return false; }
}

function confirmDialog(text) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    document.getElementById("confirm-ok").focus();
  });
}

// showFieldError puts the API's message next to the field it names ("a.b.max_replica: ..."),
// or under the form when it names none of the form's fields.
function clearErrors(form) {
  for (const p of form.querySelectorAll(".error")) p.textContent = "";
  for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
}
function showFieldError(form, message) {
  const m = /^([A-Za-z0-9_.\[\]]+): /.exec(message);
  let input = null;
  if (m) {
    const path = m[1], last = path.split(".").pop().replace(/\[\d+\]$/, "");
    input = form.querySelector(`[data-path="${CSS.escape(path)}"]`) || form.querySelector(`[name="${CSS.escape(last)}"]`);
  }
  if (!input) {
    for (const i of form.querySelectorAll("[name]")) if (i.name && new RegExp(`\\b${i.name}\\b`).test(message)) { input = i; break; }
  }
  const target = input && document.getElementById(input.id + "-error");
  if (target) {
    target.textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  } else {
    form.querySelector(".form-error").textContent = message;
  }
}

const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "—");

/* ---------- models ---------- */

async function modelsPage() {
  const tbody = document.querySelector("#models-table tbody");
  poll(async () => {
    const { models } = await api("GET", "/v1/models");
    const rows = await Promise.all(models.map(async (m) => {
      const { deployments } = await api("GET", `${modelPath(m.id)}/deployments`);
      const byID = Object.fromEntries(deployments.map((d) => [d.id, d]));
      const prod = byID[m.production_deployment_id], dev = byID[m.development_deployment_id];
      const main = prod || dev;
      const link = (d) => (d ? h("a", { href: `/m/${enc(m.id)}/d/${enc(d.id)}` }, d.name) : "—");
      return h("tr", { id: `model-${m.id}` },
        h("th", { scope: "row" }, h("a", { href: `/m/${enc(m.id)}` }, m.name)),
        h("td", { class: "production" }, link(prod)),
        h("td", { class: "development" }, link(dev)),
        h("td", { class: "status-cell" }, main ? badge(main.status) : "—"),
        h("td", { class: "replicas" }, main ? String(main.active_replica_count) : "—"));
    }));
    tbody.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5 }, "No models yet: push one with `modelplane push`."))]));
  });
}

/* ---------- model ---------- */

async function modelPage() {
  const m = B.modelId;
  let envNames = [];
  const envBox = document.getElementById("environments");
  const tbody = document.querySelector("#deployments-table tbody");
  const envSelect = document.getElementById("settings-env");
  const envCards = new Map(), depRows = new Map();
  let environments = {};

  const promoAction = (env, action, label) => h("button", { type: "button", "data-action": action, onclick: () =>
    act(`${label} (${env})`, () => api("POST", `${modelPath(m)}/environments/${enc(env)}/${action}`, {})) }, label);

  function envCard(env) {
    const card = h("article", { class: "card env", id: `env-${env}`, "aria-labelledby": `env-${env}-h` },
      h("h3", { id: `env-${env}-h` }, env),
      h("p", {}, "Serves: ", h("span", { class: "current" }, "—"), " ", h("span", { class: "current-status" })),
      h("p", { class: "meta" }, h("span", { class: "instance" }), " ", temporalLink(promotionWorkflow(m, env), "promotion workflow")),
      h("p", { class: "meta schedule", hidden: true }),
      h("div", { class: "promo", hidden: true },
        h("p", {}, "Promotion ", h("span", { class: "promo-status" }), " of ", h("span", { class: "candidate" }), ": ",
          h("progress", { max: 100, value: 0, "aria-label": `Traffic to the new deployment in ${env}` }), " ",
          h("strong", { class: "percent" }, "0"), "% to the new deployment"),
        h("p", { class: "error promo-error" }),
        h("div", { class: "actions" },
          promoAction(env, "cancel_promotion", "Cancel"),
          promoAction(env, "pause_promotion", "Pause"),
          promoAction(env, "resume_promotion", "Resume"),
          promoAction(env, "force_roll_forward_promotion", "Force roll forward"),
          promoAction(env, "force_cancel_promotion", "Force cancel"))),
      h("div", { class: "shadow", hidden: true },
        h("p", {}, "Shadow: ", h("span", { class: "shadow-deployment" }), " gets ",
          h("strong", { class: "shadow-percent" }, "0"), "% of requests"),
        h("p", { class: "shadow-agreement" }),
        h("p", { class: "meta shadow-figures" })));
    return card;
  }

  // updateShadow shows the environment's shadow deployment and what its copies came to.
  async function updateShadow(card, e, deps) {
    const sh = e.shadow_settings, box = card.querySelector(".shadow");
    box.hidden = !(sh && sh.deployment_id);
    if (box.hidden) return;
    const d = deps.find((x) => x.id === sh.deployment_id);
    card.querySelector(".shadow-deployment").replaceChildren(
      h("a", { href: `/m/${enc(m)}/d/${enc(sh.deployment_id)}`, "data-deployment-id": sh.deployment_id }, d ? d.name : sh.deployment_id));
    card.querySelector(".shadow-percent").textContent = String(sh.percent);
    const s = await api("GET", `${modelPath(m)}/environments/${enc(e.name)}/shadow`);
    const compared = s.equal + s.different + s.errors;
    card.querySelector(".shadow-agreement").textContent = compared
      ? `${(100 * s.equal / compared).toFixed(1)}% agreement over ${compared} compared copies`
      : "No copy compared yet";
    card.querySelector(".shadow-figures").textContent =
      `${s.copied} copied: ${s.equal} equal, ${s.different} different, ${s.errors} errors; ${s.dropped} dropped · ` +
      `p99 ${s.primary_p99_ms} ms serving, ${s.shadow_p99_ms} ms shadow`;
  }

  function updateEnv(card, e, deps) {
    const cur = e.current_deployment;
    card.querySelector(".current").replaceChildren(cur ? h("a", { href: `/m/${enc(m)}/d/${enc(cur.id)}`, "data-deployment-id": cur.id }, cur.name) : "none");
    card.querySelector(".current-status").replaceChildren(cur ? badge(cur.status) : "");
    card.querySelector(".instance").textContent = e.instance_type && e.instance_type.id ? `on ${e.instance_type.id}` : "";
    // The autoscaling schedule in force on the deployment (it may be another environment's).
    const sch = e.autoscaling_schedules || {}, applied = sch.applied_state, line = card.querySelector(".schedule");
    line.hidden = !(applied && applied.schedule_id);
    if (!line.hidden) {
      const s = (sch.schedules || []).find((x) => x.id === applied.schedule_id), as = applied.autoscaling_settings;
      line.textContent = `Schedule ${s ? s.name : applied.schedule_id} in force: ${as.min_replica} to ${as.max_replica} replicas`;
    }
    const p = e.in_progress_promotion, box = card.querySelector(".promo");
    box.hidden = !p;
    if (p) {
      const cand = e.candidate_deployment;
      card.querySelector(".promo-status").replaceChildren(badge(p.status));
      card.querySelector(".candidate").textContent = cand ? cand.name : "—";
      card.querySelector("progress").value = p.percent_traffic_to_new_version;
      card.querySelector(".percent").textContent = String(p.percent_traffic_to_new_version);
      card.querySelector(".promo-error").textContent = p.error_message || "";
      card.querySelector('[data-action="pause_promotion"]').disabled = p.status === "PAUSED";
      card.querySelector('[data-action="resume_promotion"]').disabled = p.status !== "PAUSED";
    }
  }

  function depRow(d) {
    const rename = h("form", { class: "rowform", onsubmit: async (ev) => {
      ev.preventDefault();
      const name = rename.elements.name.value.trim();
      clearErrors(rename);
      try { await api("PATCH", `${modelPath(m)}/deployments/${enc(d.id)}`, { name }); notice(`Renamed to ${name}.`); rename.reset(); }
      catch (e) { showFieldError(rename, e.message); }
    } },
      h("label", { for: `rename-${d.id}`, class: "visually-hidden" }, `New name for ${d.name}`),
      h("input", { id: `rename-${d.id}`, name: "name", type: "text", placeholder: "new name", required: true, "aria-describedby": `rename-${d.id}-error` }),
      h("button", { type: "submit" }, "Rename"),
      h("p", { class: "error", id: `rename-${d.id}-error` }), h("p", { class: "error form-error" }));
    const promote = h("form", { class: "rowform promote", onsubmit: async (ev) => {
      ev.preventDefault();
      const env = promote.elements.env.value, ramp = promote.elements.ramp.checked;
      const secs = parseInt(promote.elements.ramp_up_duration_seconds.value, 10);
      clearErrors(promote);
      notice(`Promoting ${d.name} to ${env}…`);
      try {
        const ps = { ramp_up_while_promoting: ramp };
        if (ramp && !Number.isNaN(secs)) ps.ramp_up_duration_seconds = secs;
        const res = await api("PATCH", `${modelPath(m)}/environments/${enc(env)}`, { promotion_settings: ps });
        environments[env] = res.environment;
        if (envSelect.value === env) fillSettings();
        await api("POST", `${modelPath(m)}/environments/${enc(env)}/promote`, { deployment_id: d.id });
        notice(`Promotion of ${d.name} to ${env} started.`);
      } catch (e) { notice(""); showFieldError(promote, e.message); }
    } },
      h("label", { for: `promote-env-${d.id}`, class: "visually-hidden" }, `Environment to promote ${d.name} to`),
      h("select", { id: `promote-env-${d.id}`, name: "env" }),
      h("input", { id: `promote-ramp-${d.id}`, name: "ramp", type: "checkbox" }),
      h("label", { for: `promote-ramp-${d.id}` }, "ramp"),
      h("label", { for: `promote-secs-${d.id}`, class: "visually-hidden" }, "Ramp duration in seconds"),
      h("input", { id: `promote-secs-${d.id}`, name: "ramp_up_duration_seconds", type: "number", value: 600, min: 10, "aria-describedby": `promote-secs-${d.id}-error` }),
      h("span", { "aria-hidden": "true" }, "s"),
      h("button", { type: "submit", class: "primary" }, "Promote"),
      h("p", { class: "error", id: `promote-secs-${d.id}-error` }), h("p", { class: "error form-error" }));
    const tr = h("tr", { id: `dep-${d.id}`, "data-name": d.name },
      h("th", { scope: "row" }, h("a", { href: `/m/${enc(m)}/d/${enc(d.id)}`, class: "name" }, d.name), h("br"), h("small", { class: "meta" }, d.id)),
      h("td", { class: "status-cell" }), h("td", { class: "env-cell" }), h("td", { class: "replicas" }),
      h("td", {}, h("div", { class: "actions" },
        promote,
        h("button", { type: "button", "data-action": "activate", onclick: () => act(`Activate ${d.name}`, () => api("POST", `${modelPath(m)}/deployments/${enc(d.id)}/activate`)) }, "Activate"),
        h("button", { type: "button", "data-action": "deactivate", onclick: () => act(`Deactivate ${d.name}`, () => api("POST", `${modelPath(m)}/deployments/${enc(d.id)}/deactivate`)) }, "Deactivate"),
        h("button", { type: "button", class: "danger", "data-action": "delete", onclick: async () => {
          if (!(await confirmDialog(`Delete deployment ${tr.dataset.name} (${d.id})? This cannot be undone.`))) return;
          if (await act(`Delete ${tr.dataset.name}`, () => api("DELETE", `${modelPath(m)}/deployments/${enc(d.id)}`))) refresh();
        } }, "Delete"),
        temporalLink(deploymentWorkflow(d.id))),
        rename));
    return tr;
  }

  function fillEnvSelect(sel) {
    const keep = sel.value;
    sel.replaceChildren(...envNames.map((n) => h("option", { value: n }, n)));
    if (envNames.includes(keep)) sel.value = keep;
  }

  async function refresh() {
    const [model, envs, deps] = await Promise.all([
      api("GET", modelPath(m)), api("GET", `${modelPath(m)}/environments`), api("GET", `${modelPath(m)}/deployments`)]);
    document.getElementById("model-name").textContent = model.name;
    document.title = `${model.name} · modelplane`;
    document.getElementById("model-meta").textContent = `${model.id} · ${model.deployments_count} deployments · created ${fmtTime(model.created_at)}`;
    const list = envs.environments || [];
    environments = Object.fromEntries(list.map((e) => [e.name, e]));
    const names = list.map((e) => e.name);
    const changed = names.join() !== envNames.join();
    envNames = names;
    for (const e of list) {
      if (!envCards.has(e.name)) { const c = envCard(e.name); envCards.set(e.name, c); envBox.append(c); }
      updateEnv(envCards.get(e.name), e, deps.deployments);
    }
    for (const [n, c] of envCards) if (!environments[n]) { c.remove(); envCards.delete(n); }
    if (changed) { fillEnvSelect(envSelect); fillSettings(); }
    const seen = new Set();
    if (tbody.querySelector("td[colspan]")) tbody.replaceChildren();
    for (const d of deps.deployments) {
      seen.add(d.id);
      let tr = depRows.get(d.id);
      if (!tr) { tr = depRow(d); depRows.set(d.id, tr); tbody.append(tr); fillEnvSelect(tr.querySelector("select")); }
      else if (changed) fillEnvSelect(tr.querySelector("select"));
      tr.dataset.name = d.name;
      tr.querySelector(".name").textContent = d.name;
      tr.querySelector(".status-cell").replaceChildren(badge(d.status), d.status_reason ? h("p", { class: "meta" }, d.status_reason) : "");
      const envs = list.filter((e) => e.current_deployment && e.current_deployment.id === d.id).map((e) => e.name);
      if (d.is_development) envs.push("development");
      tr.querySelector(".env-cell").textContent = envs.join(", ") || "—";
      tr.querySelector(".replicas").textContent = String(d.active_replica_count);
      tr.querySelector('[data-action="activate"]').disabled = !["INACTIVE", "DEACTIVATING", "FAILED", "UNHEALTHY"].includes(d.status);
      tr.querySelector('[data-action="deactivate"]').disabled = ["INACTIVE", "DEACTIVATING"].includes(d.status);
    }
    for (const [id, tr] of depRows) if (!seen.has(id)) { tr.remove(); depRows.delete(id); }
    if (!deps.deployments.length) tbody.replaceChildren(h("tr", {}, h("td", { colspan: 5 }, "No deployments.")));
    await Promise.all(list.map((e) => updateShadow(envCards.get(e.name), e, deps.deployments)));
  }

  // The settings forms show the chosen environment's settings, refilled only when the
  // environment changes or after a save, so that polling never overwrites what is typed.
  const asForm = document.getElementById("autoscaling-form"), psForm = document.getElementById("promotion-form");
  function fillSettings() {
    const e = environments[envSelect.value];
    if (!e) return;
    clearErrors(asForm); clearErrors(psForm);
    for (const i of asForm.querySelectorAll("input[name]")) i.value = e.autoscaling_settings[i.name] ?? "";
    const ps = e.promotion_settings || {};
    for (const i of psForm.querySelectorAll("[name]")) {
      if (i.type === "checkbox") i.checked = !!ps[i.name]; else i.value = ps[i.name] ?? "";
    }
  }
  envSelect.addEventListener("change", fillSettings);
  async function save(form, key, values) {
    clearErrors(form);
    try {
      const res = await api("PATCH", `${modelPath(m)}/environments/${enc(envSelect.value)}`, { [key]: values });
      environments[envSelect.value] = res.environment;
      notice(`${envSelect.value}: ${res.message || res.status}`);
      fillSettings();
    } catch (e) { showFieldError(form, e.message); }
  }
  asForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = {};
    for (const i of asForm.querySelectorAll("input[name]")) if (i.value !== "") v[i.name] = Number(i.value);
    save(asForm, "autoscaling_settings", v);
  });
  psForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = {};
    for (const i of psForm.querySelectorAll("[name]")) {
      if (i.type === "checkbox") v[i.name] = i.checked;
      else if (i.type === "number") { if (i.value !== "") v[i.name] = Number(i.value); }
      else v[i.name] = i.value;
    }
    save(psForm, "promotion_settings", v);
  });

  poll(refresh);
}

/* ---------- deployment ---------- */

function lineChart(title, series, fmt) {
  const W = 400, H = 150, L = 44, R = 8, T = 8, Bm = 22;
  const pts = series.flatMap((x) => x.points.filter((p) => p[1] !== null && p[1] !== undefined));
  const xs = series.flatMap((x) => x.points.map((p) => p[0]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const ymax = Math.max(1e-9, ...pts.map((p) => p[1]));
  const X = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - v / ymax) * (H - T - Bm);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: chart of the last hour` });
  svg.append(s("title", {}, title));
  svg.append(s("line", { x1: L, y1: H - Bm, x2: W - R, y2: H - Bm, stroke: "#8a93a3" }));
  svg.append(s("line", { x1: L, y1: T, x2: L, y2: H - Bm, stroke: "#8a93a3" }));
  svg.append(s("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmt(ymax)));
  svg.append(s("text", { x: L - 4, y: H - Bm, "text-anchor": "end" }, fmt(0)));
  if (xs.length) {
    svg.append(s("text", { x: L, y: H - 6 }, new Date(x0).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    svg.append(s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, new Date(x1).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  }
  for (const ser of series) {
    let d = "", pen = false;
    for (const [t, v] of ser.points) {
      if (v === null || v === undefined) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${X(t).toFixed(1)},${Y(v).toFixed(1)}`;
      pen = true;
    }
    const lone = ser.points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (lone.length === 1) svg.append(s("circle", { cx: X(lone[0][0]), cy: Y(lone[0][1]), r: 3, fill: ser.color }));
    if (d) svg.append(s("path", { d, fill: "none", stroke: ser.color, "stroke-width": 2 }));
  }
  const last = (ser) => { const p = ser.points.filter((q) => q[1] !== null && q[1] !== undefined).pop(); return p ? fmt(p[1]) : "no data"; };
  return h("figure", { class: "chart-box" }, h("figcaption", {}, h("strong", {}, title)), svg,
    h("div", { class: "legend" }, series.map((ser) => { const sp = h("span", {}, `${ser.label}: ${last(ser)}`); sp.style.setProperty("--c", ser.color); return sp; })));
}

async function deploymentPage() {
  const m = B.modelId, dID = B.deploymentId;
  const dPath = `${modelPath(m)}/deployments/${enc(dID)}`;
  api("GET", modelPath(m)).then((model) => { document.getElementById("model-link").textContent = model.name; }).catch(() => {});

  poll(async () => {
    const d = await api("GET", dPath);
    document.getElementById("deployment-name").replaceChildren(d.name, " ", badge(d.status));
    document.title = `${d.name} · modelplane`;
    const meta = document.getElementById("deployment-meta");
    meta.replaceChildren(`${d.id} · ${d.instance_type_name} · ${d.active_replica_count} active replicas · created ${fmtTime(d.created_at)}`,
      d.status_reason ? ` · ${d.status_reason}` : "", " ", temporalLink(deploymentWorkflow(d.id), "deployment workflow") || "");
  });

  const rbody = document.querySelector("#replicas-table tbody");
  poll(async () => {
    let nodes;
    try { ({ nodes } = await api("GET", "/v1/nodes")); }
    catch (e) {
      if (e.status === 403) { rbody.replaceChildren(h("tr", {}, h("td", { colspan: 5 }, "Replicas and nodes need an admin key."))); return; }
      throw e;
    }
    const rows = [];
    for (const n of nodes) {
      const gpus = Object.fromEntries((n.gpus || []).map((g) => [g.uuid, g]));
      for (const r of n.replicas || []) {
        if (r.deployment_id !== dID || r.state === "STOPPED") continue;
        const gs = (r.gpu_uuids || []).map((u) => (gpus[u] ? `#${gpus[u].index} ${gpus[u].name}` : u)).join(", ") || "none";
        rows.push(h("tr", { "data-replica-id": r.id }, h("th", { scope: "row" }, r.id), h("td", {}, n.name),
          h("td", {}, gs), h("td", {}, badge(r.state), r.error ? h("p", { class: "meta" }, r.error) : ""), h("td", {}, fmtTime(r.ready_at || r.created_at))));
      }
    }
    rbody.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5 }, "No replicas running."))]));
  });

  const charts = document.getElementById("charts");
  poll(async () => {
    const end = Date.now(), start = end - 3600e3;
    const r = await api("GET", `${dPath}/metrics?mode=SERIES&start_epoch_millis=${start}&end_epoch_millis=${end}&metrics=` +
      "baseten_inference_requests_total,baseten_end_to_end_response_time_seconds,modelplane_replicas,modelplane_replica_starts");
    const idx = Object.fromEntries(r.metric_descriptors.map((d, i) => [d.name, i]));
    const step = r.step_seconds || 60;
    const col = (name, pick) => r.metric_values.map((v) => [v.start_epoch_millis, pick(v.values[idx[name]] || [])]);
    const labels = (name) => r.metric_descriptors[idx[name]].label_sets;
    const li = (name, key, val) => labels(name).findIndex((l) => l[key] === val);
    const req = "baseten_inference_requests_total", lat = "baseten_end_to_end_response_time_seconds";
    const i5 = li(req, "status", "5xx"), io = li(req, "status", "other");
    const sum = (a, b) => (a === null && b === null ? null : (a || 0) + (b || 0));
    const rps = col(req, (v) => { const t = sum(v[i5], v[io]); return t === null ? null : t / step; });
    const errRate = col(req, (v) => { const t = sum(v[i5], v[io]); return !t ? (t === 0 ? 0 : null) : (v[i5] || 0) / t * 100; });
    const p50 = col(lat, (v) => v[li(lat, "quantile", "0.5")]), p99 = col(lat, (v) => v[li(lat, "quantile", "0.99")]);
    const replicas = col("modelplane_replicas", (v) => v[0]), starts = col("modelplane_replica_starts", (v) => v[0]);
    const n2 = (x) => (Math.round(x * 100) / 100).toString();
    charts.replaceChildren(
      lineChart("Requests per second", [{ label: "req/s", color: "#1d4ed8", points: rps }], n2),
      lineChart("Latency", [{ label: "p50", color: "#166534", points: p50 }, { label: "p99", color: "#b42318", points: p99 }], (x) => `${n2(x * 1000)} ms`),
      lineChart("Error rate (5xx)", [{ label: "errors", color: "#b42318", points: errRate }], (x) => `${n2(x)}%`),
      lineChart("Replicas", [{ label: "replicas", color: "#1d4ed8", points: replicas }, { label: "cold starts", color: "#92400e", points: starts }], n2));
  }, 10000);

  const queue = document.getElementById("queue");
  poll(async () => {
    const q = await api("GET", `/dashboard${dPath}/async_queue`);
    queue.textContent = `${q.num_queued_requests} queued, ${q.num_in_progress_requests} in progress.`;
  });

  logsPanel(dPath);
}

function logsPanel(dPath) {
  const list = document.getElementById("logs"), status = document.getElementById("logs-status");
  const follow = document.getElementById("logs-follow"), level = document.getElementById("logs-level");
  let since = Date.now() - 3600e3;
  const seen = new Set();
  async function fetchLogs() {
    const q = new URLSearchParams({ start_epoch_millis: String(since), end_epoch_millis: String(Date.now() + 1000), direction: "asc", limit: "500" });
    if (level.value) q.set("min_level", level.value);
    let r;
    try { r = await api("GET", `${dPath}/logs?${q}`); }
    catch (e) { status.textContent = `Logs unavailable: ${e.message}`; return; }
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    for (const l of r.logs || []) {
      const key = `${l.timestamp}|${l.replica}|${l.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const ms = Math.floor(Number(BigInt(l.timestamp) / 1000000n));
      since = Math.max(since, ms);
      list.append(h("li", { class: `lvl-${l.level}` }, h("time", { datetime: new Date(ms).toISOString() }, new Date(ms).toLocaleTimeString()),
        l.replica ? h("span", { class: "rep" }, l.replica) : "", h("span", { class: "lvl" }, `${l.level} `), l.message));
    }
    while (list.children.length > 2000) list.firstElementChild.remove();
    const un = (r.unavailable || []).map((u) => `${u.replica} on ${u.node}: ${u.reason}`);
    status.textContent = (un.length ? `Some replicas' logs are unavailable: ${un.join("; ")}. ` : "") + `${list.children.length} lines.`;
    if (follow.checked && atBottom) list.scrollTop = list.scrollHeight;
  }
  level.addEventListener("change", () => { list.replaceChildren(); seen.clear(); since = Date.now() - 3600e3; fetchLogs(); });
  const loop = async () => { if (follow.checked || !list.children.length) await fetchLogs(); setTimeout(loop, POLL_MS); };
  loop();
}

/* ---------- nodes ---------- */

async function nodesPage() {
  const box = document.getElementById("nodes");
  const gib = (b) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  poll(async () => {
    let nodes;
    try { ({ nodes } = await api("GET", "/v1/nodes")); }
    catch (e) { if (e.status === 403) { box.replaceChildren(h("p", {}, "Nodes need an admin key.")); return; } throw e; }
    box.replaceChildren(...(nodes.length ? nodes.map((n) => {
      const byReplica = Object.fromEntries((n.replicas || []).map((r) => [r.id, r]));
      return h("article", { class: "card node", id: `node-${n.id}`, "aria-labelledby": `node-${n.id}-h` },
        h("h2", { id: `node-${n.id}-h` }, n.name, " ", badge(n.state)),
        h("p", { class: "meta" }, `${n.gpu_profile || "no GPU profile"} · last heartbeat ${fmtTime(n.last_heartbeat_at)} · isolation ${n.isolation ? n.isolation.mode : "unknown"}`),
        n.isolation && n.isolation.warning ? h("p", { class: "warning", role: "note" }, "Isolation: ", n.isolation.warning) : "",
        h("div", { class: "table-wrap" }, h("table", {},
          h("caption", { class: "visually-hidden" }, `GPUs of ${n.name}`),
          h("thead", {}, h("tr", {}, ["GPU", "Memory", "MIG", "Health", "Replica"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, (n.gpus || []).map((g) => {
            const r = g.assigned_replica_id && byReplica[g.assigned_replica_id];
            return h("tr", {},
              h("th", { scope: "row" }, `#${g.index} ${g.name}`),
              h("td", {}, `${gib(g.memory_used_bytes)} / ${gib(g.memory_total_bytes)}`),
              h("td", {}, g.mig_mode ? "on" : "off"),
              h("td", {}, g.healthy ? badge("HEALTHY") : h("span", { class: "status bad" }, `UNHEALTHY ${g.unhealthy_reason || ""}`)),
              h("td", {}, g.assigned_replica_id ? [g.assigned_replica_id, r ? [" of ", h("a", { href: `/d/${enc(r.deployment_id)}` }, r.deployment_id)] : ""] : "free"));
          })))));
    }) : [h("p", {}, "No nodes have registered.")]));
  });
}

/* ---------- usage ---------- */

function usagePage() {
  const form = document.getElementById("usage-form"), csv = document.getElementById("usage-csv");
  const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const now = new Date();
  form.elements.start.value = local(new Date(now.getTime() - 24 * 3600e3));
  // The field has minutes only: the end is the next whole minute, so that what runs now counts.
  form.elements.end.value = local(new Date(Math.ceil((now.getTime() + 1) / 60e3) * 60e3));
  function query() {
    const q = new URLSearchParams({ group_by: form.elements.group_by.value });
    if (form.elements.start.value) q.set("start", new Date(form.elements.start.value).toISOString());
    if (form.elements.end.value) q.set("end", new Date(form.elements.end.value).toISOString());
    return q;
  }
  async function show() {
    clearErrors(form);
    const q = query();
    const cq = new URLSearchParams(q); cq.set("format", "csv");
    csv.href = `/v1/usage?${cq}`;
    let r;
    try { r = await api("GET", `/v1/usage?${q}&format=json`); } catch (e) { showFieldError(form, e.message); return; }
    const hours = (x) => (x / 3600).toFixed(2);
    // Every hour of the window has a point, so that an hour without usage shows as 0.
    const replicaByHour = new Map(), gpuByHour = new Map();
    const first = Math.floor(Date.parse(r.start) / 3600e3) * 3600e3;
    for (let t = first; t < Date.parse(r.end); t += 3600e3) { replicaByHour.set(t, 0); gpuByHour.set(t, 0); }
    for (const row of r.rows) {
      const t = Date.parse(row.hour);
      replicaByHour.set(t, (replicaByHour.get(t) || 0) + row.replica_seconds / 3600);
      gpuByHour.set(t, (gpuByHour.get(t) || 0) + row.gpu_seconds / 3600);
    }
    const series = (m) => [...m.entries()].sort((a, b) => a[0] - b[0]);
    document.getElementById("usage-chart").replaceChildren(lineChart("Usage per hour", [
      { label: "replica hours", color: "#1d4ed8", points: series(replicaByHour) },
      { label: "GPU hours", color: "#b45309", points: series(gpuByHour) }], (x) => x.toFixed(2)));
    document.getElementById("usage-totals").textContent = `Totals: ${hours(r.totals.replica_seconds)} replica hours, ${hours(r.totals.gpu_seconds)} GPU hours.`;
    document.querySelector("#usage-table tbody").replaceChildren(...(r.rows.length ? r.rows.map((row) => h("tr", {},
      h("td", {}, fmtTime(row.hour)), h("td", {}, row.model_name || row.model_id || "—"), h("td", {}, row.deployment_name || row.deployment_id || "—"),
      h("td", {}, row.gpu_type || "—"), h("td", {}, row.mig_profile || "—"), h("td", {}, hours(row.replica_seconds)), h("td", {}, hours(row.gpu_seconds))))
      : [h("tr", {}, h("td", { colspan: 7 }, "No usage in this window."))]));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
  show();
}

/* ---------- keys ---------- */

function keysPage() {
  const form = document.getElementById("key-form"), tbody = document.querySelector("#keys-table tbody");
  async function refresh() {
    let keys;
    try { ({ keys } = await api("GET", "/v1/api_keys")); }
    catch (e) { tbody.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, e.status === 403 ? "API keys need an admin key." : e.message))); return; }
    tbody.replaceChildren(...keys.map((k) => h("tr", { id: `key-${k.prefix}` },
      h("th", { scope: "row" }, k.prefix), h("td", {}, k.name || "—"), h("td", {}, k.type), h("td", {}, fmtTime(k.created_at)), h("td", {}, fmtTime(k.last_used_at)),
      h("td", {}, h("button", { type: "button", class: "danger", onclick: async () => {
        if (!(await confirmDialog(`Revoke key ${k.prefix}${k.name ? ` (${k.name})` : ""}? Whatever uses it stops working at once.`))) return;
        if (await act(`Revoke ${k.prefix}`, () => api("DELETE", `/v1/api_keys/${enc(k.prefix)}`))) refresh();
      } }, "Revoke")))));
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = { type: form.elements.type.value };
    if (form.elements.name.value.trim()) body.name = form.elements.name.value.trim();
    try {
      const r = await api("POST", "/v1/api_keys", body);
      document.getElementById("new-key").hidden = false;
      document.getElementById("new-key-value").textContent = r.api_key;
      form.elements.name.value = "";
      refresh();
    } catch (e) { showFieldError(form, e.message); }
  });
  refresh();
}

const pages = { models: modelsPage, model: modelPage, deployment: deploymentPage, nodes: nodesPage, usage: usagePage, keys: keysPage };
if (pages[B.page]) pages[B.page]();
