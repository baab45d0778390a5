"use strict";
/* 方案测算: pick or upload a candidate policy, see it against what was paid. */

const $ = id => document.getElementById(id);
const charts = {};
let me = null;

function esc(text) {
  return String(text == null ? "" : text).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
/* "1234567.50" → "1,234,567.50" without passing through binary floating point */
function money(text) {
  if (text == null) return "—";
  const negative = text.startsWith("-");
  const [whole, fraction] = (negative ? text.slice(1) : text).split(".");
  return (negative ? "-" : "") + whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (fraction !== undefined ? "." + fraction : "");
}
const pct = text => (text == null ? "—" : text + "%");
const chart = id => charts[id] || (charts[id] = echarts.init($(id), null, { renderer: "canvas" }));
window.addEventListener("resize", () => Object.values(charts).forEach(c => c.resize()));

/* JSON from the dashboard; a refusal becomes an Error with the server's message and details */
async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...(options || {}) });
  if (response.status === 401) window.location.href = "/login";
  const body = await response.json().catch(() => ({}));
  if (response.ok) return body;
  throw Object.assign(new Error(body.error || `HTTP ${response.status}`), { details: body.details || [] });
}

function showError(error) {
  $("error").hidden = false;
  $("error-message").textContent = error.message;
  $("error-details").innerHTML = (error.details || []).map(d => `<li>${esc(d)}</li>`).join("");
}

function choice() {
  const [region, year] = $("claims-of").value.split("/");
  return { region, year: Number(year), threshold: $("threshold").value.trim() || "100" };
}

async function run(path, body) {
  $("error").hidden = true;
  $("status").textContent = "测算中……（逐人重算该年度全部单据）";
  $("run").disabled = $("upload-run").disabled = true;
  const started = performance.now();
  try {
    const report = await api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    show(report);
    $("status").textContent = `测算完成：${report.claims} 笔单据，用时 ${((performance.now() - started) / 1000).toFixed(1)} 秒`;
  } catch (error) {
    showError(error);
    $("status").textContent = "测算未完成";
  } finally {
    $("run").disabled = $("upload-run").disabled = false;
  }
}

function show(r) {
  $("results").hidden = false;
  $("result-title").textContent = `${r.candidate.policy} ${r.candidate.name}，用 ${r.region} ${r.year} 年结算数据（在用方案 ${r.live_policy || "未加载"}）`;
  $("kpi-claims").textContent = String(r.claims);
  $("kpi-claims-sub").textContent = `撤销 ${r.reversals} 笔，有效 ${r.claims_in_force} 笔`;
  $("kpi-persons").textContent = String(r.persons);
  $("ratio-actual").textContent = pct(r.compensation_ratio.actual);
  $("ratio-simulated").textContent = pct(r.compensation_ratio.simulated);
  $("si-actual").textContent = String(r.serious_illness_threshold_reached.actual);
  $("si-simulated").textContent = String(r.serious_illness_threshold_reached.simulated);
  const codes = Object.keys(r.funds);
  $("fund-rows").innerHTML = codes.map(code => {
    const f = r.funds[code];
    const trend = f.change.startsWith("-") ? "down" : (/^0\.00$/.test(f.change) ? "" : "up");
    return `<tr data-fund="${code}"><td>${code} ${esc(f.name)}</td><td class="num" data-figure="actual">${money(f.actual)}</td>` +
      `<td class="num" data-figure="simulated">${money(f.simulated)}</td><td class="num ${trend}" data-figure="change">${money(f.change)}</td>` +
      `<td class="num" data-figure="change-percent">${pct(f.change_percent)}</td></tr>`;
  }).join("") + `<tr data-fund="all"><td>合计</td><td class="num" data-figure="actual">${money(r.fund_total.actual)}</td>` +
    `<td class="num" data-figure="simulated">${money(r.fund_total.simulated)}</td><td class="num" data-figure="change">${money(r.fund_total.change)}</td><td></td></tr>`;
  const ratioRows = (rows, attr) => rows.map(row =>
    `<tr data-${attr}="${row.key}"><td>${esc(row.name)}</td><td class="num">${money(row.total)}</td>` +
    `<td class="num" data-figure="actual">${pct(row.actual)}</td><td class="num" data-figure="simulated">${pct(row.simulated)}</td></tr>`).join("");
  $("level-rows").innerHTML = ratioRows(r.by_level, "level");
  $("category-rows").innerHTML = ratioRows(r.by_category, "category");
  chart("chart-funds").setOption({
    tooltip: { trigger: "axis" }, legend: { data: ["实际", "测算"] },
    xAxis: { type: "category", data: codes.map(c => `${c}`) }, yAxis: { type: "value", name: "元" },
    series: [{ name: "实际", type: "bar", data: codes.map(c => Number(r.funds[c].actual)) },
             { name: "测算", type: "bar", data: codes.map(c => Number(r.funds[c].simulated)) }],
  }, true);
  const budgeted = codes.filter(c => r.budget_use[c].budget !== null);
  $("budget-note").textContent = budgeted.length ? "实线：测算；虚线：实际。" + codes.filter(c => !budgeted.includes(c)).map(c => `${c} 未设年度预算`).join("，")
    : "候选方案未设年度预算（budgets），无法计算预算执行";
  chart("chart-budget").setOption({
    tooltip: { trigger: "axis" }, legend: { type: "scroll" },
    xAxis: { type: "category", data: Array.from({ length: 12 }, (_, i) => `${i + 1}月`) }, yAxis: { type: "value", name: "%" },
    series: budgeted.flatMap(c => [
      { name: `${c} 测算`, type: "line", data: r.budget_use[c].months.map(m => Number(m.simulated_share)) },
      { name: `${c} 实际`, type: "line", lineStyle: { type: "dashed" }, data: r.budget_use[c].months.map(m => Number(m.actual_share)) }]),
  }, true);
  chart("chart-buckets").setOption({
    tooltip: { trigger: "axis" }, legend: { data: ["实际", "测算"] },
    xAxis: { type: "category", data: r.payout_buckets.map(b => b.bucket) }, yAxis: { type: "value", name: "人" },
    series: [{ name: "实际", type: "bar", data: r.payout_buckets.map(b => b.actual) },
             { name: "测算", type: "bar", data: r.payout_buckets.map(b => b.simulated) }],
  }, true);
  const change = r.personal_change;
  $("pay-more").textContent = String(change.pay_more);
  $("pay-less").textContent = String(change.pay_less);
  $("change-threshold").textContent = money(change.threshold);
  $("change-rows").innerHTML = [...change.largest_increases, ...change.largest_decreases].map(p =>
    `<tr><td>${esc(p.person)}</td><td class="num">${money(p.actual)}</td><td class="num">${money(p.simulated)}</td>` +
    `<td class="num ${p.change.startsWith("-") ? "down" : "up"}">${money(p.change)}</td></tr>`).join("");
}

async function start() {
  me = await api("/api/me");
  $("who-name").textContent = me.user;
  $("who-role").textContent = me.role === "operator" ? "经办员" : "只读";
  $("upload-bar").hidden = me.role !== "operator";
  const options = await api("/api/simulation/options");
  $("folder").textContent = `候选方案目录：${options.folder}`;
  $("candidate").innerHTML = options.candidates.map(c =>
    `<option value="${esc(c.file)}">${esc(c.file)}${c.error ? "（校验未通过）" : " " + esc(c.name)}</option>`).join("");
  $("claims-of").innerHTML = options.claims_of.map(p =>
    `<option value="${esc(p.region)}/${p.year}">${esc(p.region)} ${p.year} 年（在用方案 ${esc(p.policy)}）</option>`).join("");
  $("run").addEventListener("click", () => run("/api/simulation/run", Object.assign({ file: $("candidate").value }, choice())));
  $("upload-run").addEventListener("click", async () => {
    const file = $("upload-file").files[0];
    if (!file) { showError(new Error("请先选择要上传的方案文件")); return; }
    run("/api/simulation/upload", Object.assign({ filename: file.name, content: await file.text() }, choice()));
  });
}

start();
